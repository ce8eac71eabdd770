"""Time a 3D bundle end to end on a full-size CT, and a training epoch against its pure compute time.

Inference: a CT-like phantom (512 x 512 x 300 voxels of 0.8 x 0.8 x 1.0 mm by default) is written as a DICOM
series, and the bundle's own ``inference.yaml`` runs on it in a fresh Python process (random weights saved as
the bundle's checkpoint, so loading them is timed too), exactly as ``python -m monai.bundle run`` would: imports,
reading, preprocessing, sliding window, inverting, writing the NIfTI label map and the DICOM SEG. Reported:
the process's wall time, the time inside the sliding-window inferer alone (the network), their ratio, the time
of each post-processing step, the CPU time of the network, of the rest of the process and of its DataLoader
workers (their sum over the cores, against the network's time, is about the ratio the machine allows), and the
process's peak resident memory. With ``--cases N`` the bundle reads N such series in one run, as a folder of
studies is processed: the per-case figures after the first case (the time from one finished case to the next,
and its network time) leave out what a run pays once (starting Python, imports, the first read before any
network runs). The weights are random unless ``--models`` gives a trained bundle's ``models`` folder: random
weights label far more voxels than a trained model, and the writers take longer for it (``foreground_fraction``
reports how much was labelled). ``--stand-in-network SECONDS`` replaces the network by a wait that uses no CPU
and a compact label map, to time the rest of the pipeline as it runs with the network on a GPU.

Training: the bundle's ``train.yaml`` trainer runs one epoch on phantom cases or demo images (validation off),
and the epoch's own batches then go through the network's forward, loss, backward and optimiser step once more,
from memory. Their ratio says how much an epoch costs beyond the compute, and the time the trainer waited for its
loader's batches says how much of that is the data pipeline.

Example::

    monai-unets benchmark-pipeline --bundle egeunet3d_pancreas_ct
    monai-unets benchmark-pipeline --cases 3 --epochs 2
    monai-unets benchmark-pipeline --cases 3 --models bundles/egeunet3d_pancreas_ct/models
    monai-unets benchmark-pipeline --cases 4 --inference-only --stand-in-network 1.0
    monai-unets benchmark-pipeline --quick --json figures.json

From Python, :func:`pipeline_rows` gives the same figures as rows for a report table; the benchmark suite runs
them as its ``pipeline`` section (:func:`pipeline_section`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from monai_unets.bundles import bundle_dir, bundle_spatial_dims, list_bundles
from monai_unets.bundles.overrides import check_overrides

from ..data.atomic import atomic_open
from .cli import key_value, path_option, run_tool

if TYPE_CHECKING:
    from .benchmark import BenchmarkOptions, BenchmarkSection

__all__ = [
    "add_arguments",
    "benchmark_inference",
    "benchmark_training",
    "main",
    "pipeline_rows",
    "pipeline_section",
    "run",
]

CT_BUNDLES = ("egeunet3d_pancreas_ct", "attention_unet_pancreas_ct")
# the suite's default: the 3D EGE-UNet end to end and in training, and the lightest network's training epoch,
# where a slow data pipeline shows most
SUITE_BUNDLES = ("egeunet3d_pancreas_ct", "egeunet_skin_lesion")
FULL_SHAPE, FULL_SPACING = (512, 512, 300), (0.8, 0.8, 1.0)
INPUT_FORMATS = ("dicom", "nifti")
# the key of steps_s that times the writers run side by side, beside each writer's own time
SIDE_BY_SIDE = "side by side"
# small enough for a test: a few windows of a 32-voxel patch
QUICK_SHAPE, QUICK_SPACING, QUICK_PATCH = (56, 48, 24), (1.5, 1.5, 2.0), (32, 32, 32)


def _install_weights(bundle: str, bundle_root: Path, overrides: dict, models: str | os.PathLike | None) -> None:
    """Give the bundle copy at ``bundle_root`` its weights: a trained model's, or random ones (seeded).

    ``models`` is a trained bundle's ``models`` folder: its ``model.pt`` and, when there is one, the ``plan.json``
    it was trained with (spacing, patch size, classes) are copied.
    """
    import shutil

    target = bundle_root / "models"
    target.mkdir(parents=True, exist_ok=True)
    if models is not None:
        source = Path(models)
        if not (source / "model.pt").is_file():
            raise FileNotFoundError(f"{source}: no model.pt there (give a trained bundle's models folder).")
        for name in ("model.pt", "plan.json"):
            if (source / name).is_file():
                shutil.copyfile(source / name, target / name)
        return
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle_dir(bundle) / "configs" / "inference.yaml"))
    parser.update(overrides)
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), target / "model.pt")


def _foreground_fraction(label_maps: Sequence[Path]) -> float:
    """The share of voxels that the label maps give a class other than background (all maps together)."""
    import nibabel as nib
    import numpy as np

    foreground = total = 0
    for path in label_maps:
        values = np.asarray(nib.load(path).dataobj)
        foreground, total = foreground + int(np.count_nonzero(values)), total + values.size
    return foreground / total if total else 0.0


def benchmark_inference(
    bundle: str = "egeunet3d_pancreas_ct",
    shape: Sequence[int] = FULL_SHAPE,
    spacing: Sequence[float] = FULL_SPACING,
    quick: bool = False,
    workdir: str | os.PathLike | None = None,
    cases: int = 1,
    models: str | os.PathLike | None = None,
    input_format: str = "dicom",
    settings: dict | None = None,
    stand_in_network_s: float | None = None,
) -> dict:
    """Run a CT bundle's inference on phantom studies in a fresh process and measure it.

    With random weights (the default) the label maps are far denser than a trained model's, which makes the
    writers slower than in real use (the DICOM SEG stores a frame per slice and segment that has foreground);
    ``models`` times a trained model instead, and ``foreground_fraction`` says how dense the outputs were.

    Args:
        bundle: a shipped 3D bundle.
        shape: voxels of the phantom (x, y, z).
        spacing: its voxel size in mm.
        quick: a small phantom and a small patch, for checking that everything runs (figures mean little).
        workdir: where the phantoms, checkpoint and outputs go (a temporary folder by default).
        cases: phantom series read in the one run (different phantoms of the same size).
        models: a trained bundle's ``models`` folder (``model.pt``, and ``plan.json`` when it has one); default:
            random weights.
        input_format: ``"dicom"`` (a DICOM series per study, which also gets a DICOM SEG) or ``"nifti"`` (one
            ``.nii.gz`` per study, a NIfTI label map only).
        settings: keys of the bundle's ``inference.yaml`` to override (``{"sw_batch_size": 4}``), as on the
            command line of ``monai.bundle run``.
        stand_in_network_s: instead of the bundle's network, wait this many seconds per case without using the
            CPU, then give a compact organ-like label map (about 1% of the voxels): the rest of the pipeline as it
            runs when the network is on a GPU, on a machine without one.

    Returns:
        the settings and figures: ``wall_s`` (the whole process), ``network_s`` (inside the sliding-window
        inferer, all cases), ``ratio``, ``steps_s`` (each post-processing step, all cases, and as
        ``"side by side"`` the time of the steps that ``ConcurrentCompose`` runs together), ``cpu_s`` (CPU
        seconds of the run, all cases: the network, the rest of the bundle process, its DataLoader workers; with
        background postprocessing the network's share also holds the inverting and writing done beside it),
        ``cores`` (the CPUs the process may use), ``cpu_floor_ratio`` (the whole run's CPU seconds over ``cores``
        times the network's time: about the ``per_case_ratio`` this work allows with every core busy all the
        time; first-use costs, which later cases do not pay, are counted in it), ``peak_rss_mib`` (the bundle
        process), ``workers_peak_rss_mib`` (its largest DataLoader worker), the output files,
        ``foreground_fraction`` (the share of voxels labelled other than background), ``weights`` (``random``
        or ``trained``) and ``background_postprocessing`` (cases inverted and written beside the next one's
        network). With two cases or
        more also ``per_case_s`` (median time from one finished case to the next, after the first),
        ``per_case_network_s`` (median network time of those cases) and ``per_case_ratio``.
    """
    from monai_unets.scripts.demo_ct import lps_geometry_affine, make_ct_phantom, write_dicom_series

    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {', '.join(INPUT_FORMATS)}; got {input_format!r}.")
    if quick:
        shape, spacing = QUICK_SHAPE, QUICK_SPACING
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir or tmp)
        origin = [-(shape[0] - 1) * spacing[0] / 2, -(shape[1] - 1) * spacing[1] / 2, 100.0]
        (root / "studies").mkdir(parents=True, exist_ok=True)
        for case in range(cases):
            image, _ = make_ct_phantom(shape, spacing, seed=case)
            if input_format == "dicom":
                write_dicom_series(image, root / "studies" / f"ct_{case:03d}", spacing, origin)
            else:
                import nibabel as nib
                import numpy as np

                affine = lps_geometry_affine(spacing, origin, np.eye(3))
                nib.save(nib.Nifti1Image(image, affine), root / "studies" / f"ct_{case:03d}.nii.gz")
            del image
        overrides = {"patch_size": list(QUICK_PATCH)} if quick else {}
        overrides.update(settings or {})
        _install_weights(bundle, root / "bundle", overrides, models)
        job = {
            "bundle": bundle,
            "bundle_root": str(root / "bundle"),
            "input_dir": str(root / "studies"),
            "output_dir": str(root / "out"),
            "overrides": overrides,
            "stand_in_network_s": stand_in_network_s,
        }
        job["launched"] = time.time()
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "monai_unets.scripts.benchmark_pipeline", "--child", json.dumps(job)],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            # the bundle's own last word (its one-line error, or the summary of its failed cases); the folder of its
            # error.log goes with this function
            said = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
            raise RuntimeError(
                f"{bundle}'s inference failed (exit status {proc.returncode}): {said[-1] if said else 'no output'}"
            )
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        outputs = sorted(p.name for p in (root / "out").iterdir())
        foreground = _foreground_fraction(sorted((root / "out").glob("*_seg.nii.gz")))
    result = {
        "bundle": bundle,
        "shape": list(shape),
        "spacing": list(spacing),
        "input": "DICOM series" if input_format == "dicom" else "NIfTI (.nii.gz)",
        "settings": settings or {},
        "device": child["device"],
        "threads": child["threads"],
        "background_postprocessing": child["background_postprocessing"],
        "wall_s": round(wall, 2),
        "network_s": round(child["network_s"], 2),
        "ratio": round(wall / child["network_s"], 2) if child["network_s"] > 0 else None,
        "imports_s": round(child["imports_s"], 2),
        "first_case_s": round(child["first_case_s"], 2),
        "steps_s": {k: round(v, 2) for k, v in child["steps_s"].items()},
        "cpu_s": {k: round(v, 2) for k, v in child["cpu_s"].items()},
        "cores": child["cores"],
        # about the ratio this much work allows with every core busy all the time: a ratio near it means the run
        # is short of cores, not waiting on something
        "cpu_floor_ratio": round(sum(child["cpu_s"].values()) / (child["cores"] * child["network_s"]), 2)
        if child["network_s"] > 0
        else None,
        "peak_rss_mib": round(child["peak_rss_mib"], 1),
        "workers_peak_rss_mib": round(child["workers_peak_rss_mib"], 1),
        "outputs": outputs,
        "foreground_fraction": round(foreground, 4),
        "weights": "trained" if models is not None else "random",
        "cases": cases,
        "network": "the bundle's" if stand_in_network_s is None else f"stand-in, {stand_in_network_s} s without CPU",
    }
    # cases after the first: DataLoader workers read each one while the network runs on the one before
    cycles, networks = child["case_s"], child["case_network_s"]
    if cycles:
        cycle, network = statistics.median(cycles), statistics.median(networks)
        result["per_case_s"] = round(cycle, 2)
        result["per_case_network_s"] = round(network, 2)
        # of the medians as measured: a stand-in of 0 s, or a network of milliseconds, rounds to 0.00
        result["per_case_ratio"] = round(cycle / network, 2) if network > 0 else None
    return result


class _Timed:
    """Calls ``inner`` and adds the seconds it took to ``times[name]`` (and the process's CPU seconds to ``cpu``)."""

    def __init__(self, inner, name: str, times: dict, cpu: dict | None = None) -> None:
        self.inner, self.name, self.times, self.cpu = inner, name, times, cpu

    def __call__(self, *args, **kwargs):
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.times[self.name] = self.times.get(self.name, 0.0) + time.perf_counter() - start
            if self.cpu is not None:
                self.cpu[self.name] = self.cpu.get(self.name, 0.0) + time.process_time() - cpu_start

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    @property  # type: ignore[misc]
    def __class__(self):
        # the chain treats a timed step as the step (ConcurrentCompose runs the writers side by side by class)
        return type(self.inner)


class _StandInInferer:
    """Stands in for a network on an accelerator: the time passes without CPU work, then a compact label map.

    The logits pick class 1 in a box around the volume's centre (an eighth of each side's length on each side of
    it) and the last class in one corner of that box: about 1% of a CT's voxels after inversion, as a trained
    model labels, where random weights label most of the volume.
    """

    def __init__(self, seconds: float, num_classes: int) -> None:
        self.seconds, self.num_classes = seconds, num_classes

    def __call__(self, inputs, network=None, *args, **kwargs):
        import torch

        time.sleep(self.seconds)
        logits = torch.zeros(inputs.shape[0], self.num_classes, *inputs.shape[2:])
        logits[:, 0] = 1.0
        centre, radius = [n // 2 for n in inputs.shape[2:]], [max(1, n // 8) for n in inputs.shape[2:]]
        logits[(slice(None), 1, *(slice(c - r, c + r) for c, r in zip(centre, radius)))] = 2.0
        logits[(slice(None), self.num_classes - 1, *(slice(c, c + r // 2 + 1) for c, r in zip(centre, radius)))] = 3.0
        return logits


def _child(job: dict) -> int:
    # runs in its own process: starting Python and importing torch and MONAI are part of what a bundle run pays
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow
    from monai_unets.transforms import ConcurrentCompose

    imports = time.time() - job["launched"]
    workflow = ConfigWorkflow(
        config_file=str(bundle_dir(job["bundle"]) / "configs" / "inference.yaml"),
        workflow_type="infer",
        bundle_root=job["bundle_root"],
        input_dir=job["input_dir"],
        output_dir=job["output_dir"],
        **job["overrides"],
    )
    workflow.initialize()
    steps: dict[str, float] = {}
    parser = workflow.parser
    # one parse, so that Invertd keeps the very preprocessing object whose operations it undoes, and the run's
    # conclusion (failed cases, exit status) comes from the handler attached to the evaluator
    parser["case_isolation"] = parser.get_parsed_content("case_isolation")
    preprocessing = parser.get_parsed_content("preprocessing")
    postprocessing = parser.get_parsed_content("postprocessing")
    stand_in = job.get("stand_in_network_s")
    if stand_in is None:
        inferer = parser.get_parsed_content("inferer")
    else:
        inferer = _StandInInferer(stand_in, parser.get_parsed_content("num_classes"))
    postprocessing.transforms = tuple(_Timed(t, type(t).__name__, steps) for t in postprocessing.transforms)
    if isinstance(postprocessing, ConcurrentCompose):
        # the steps of a side-by-side run each take longer than alone, as they share the cores: the run's own time
        postprocessing._run_side_by_side = _Timed(postprocessing._run_side_by_side, SIDE_BY_SIDE, steps)
    parser["preprocessing"] = preprocessing
    parser["postprocessing"] = postprocessing
    # the process's CPU time while the network runs: the network's own, unless background postprocessing works
    # beside it (its seconds then count here too; the sum over the process stays right)
    cpu: dict[str, float] = {}
    parser["inferer"] = _Timed(inferer, "network", steps, cpu)
    evaluator = parser.get_parsed_content("evaluator")
    parser["evaluator"] = evaluator
    finished: list[tuple[float, float]] = []  # (time, network seconds so far) as each case is done

    def case_done(_engine) -> None:
        finished.append((time.time(), steps.get("network", 0.0)))

    # added after the bundle's own handlers, so that it runs once the case's outputs are written
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, case_done)
    main_cpu = time.process_time()
    workflow.run()
    workflow.finalize()
    main_cpu = time.process_time() - main_cpu
    # the DataLoader's worker processes, ended and reaped with the run (they are this process's only children)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    network = steps.pop("network", 0.0)
    done = [t for t, _ in finished]
    network_so_far = [n for _, n in finished]
    # this process's own peak (VmHWM): ru_maxrss would also count the benchmark process it was forked from,
    # which held the phantom
    from .benchmark import peak_rss_mib, usable_cpus

    result = {
        "threads": torch.get_num_threads(),
        "device": str(parser.get_parsed_content("device")),
        # inverting and writing beside the next case's network (the bundle's default: with a GPU)
        "background_postprocessing": bool(parser.get_parsed_content("background_postprocessing")),
        "imports_s": imports,
        "network_s": network,
        "first_case_s": done[0] - job["launched"] if done else 0.0,
        "case_s": [b - a for a, b in zip(done, done[1:])],
        "case_network_s": [b - a for a, b in zip(network_so_far, network_so_far[1:])],
        "steps_s": steps,
        "cpu_s": {
            "network": cpu.get("network", 0.0),
            "rest_of_main": main_cpu - cpu.get("network", 0.0),
            "workers": workers.ru_utime + workers.ru_stime,
        },
        "cores": usable_cpus(),
        "peak_rss_mib": peak_rss_mib(),
        # DataLoader workers read and preprocess in their own processes
        "workers_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    print(json.dumps(result))
    return 0


def benchmark_training(
    bundle: str = "egeunet3d_pancreas_ct", num_cases: int | None = None, quick: bool = False, rounds: int = 3
) -> dict:
    """Training epochs of a bundle's ``train.yaml`` against the network's pure compute on the same batches.

    Each round runs one epoch of the bundle's trainer, then the epoch's own batches, kept in memory, through the
    trainer's forward, loss, backward and step once more; the ratio is the median of the rounds' ratios, so that
    load changes on a shared machine hit both sides alike.

    Args:
        bundle: a shipped bundle: a CT one trains on CT-like phantoms, a 2D one on demo dermoscopy-like images.
        num_cases: phantoms or images written (a CT phantom in five, and three 2D images in ten, go to validation,
            which does not run, or to testing); default 5 phantoms or 48 images.
        quick: a few small cases, small patches or images, one round, for checking that everything runs.
        rounds: epoch and compute rounds, alternating.

    Returns:
        ``epoch_s`` (median epoch of the trainer, data loading included, caching excluded), ``compute_s``
        (median time of the same batches through the step alone), ``ratio`` and ``data_s`` (median time the
        trainer waited for its batches in an epoch).
    """
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigParser
    from monai.engines import IterationEvents, SupervisedTrainer
    from monai.utils import CommonKeys
    from monai_unets.scripts.demo_ct import generate_demo_ct
    from monai_unets.scripts.demo_data import generate_demo_dataset

    ct = bundle_spatial_dims(bundle) == 3
    if num_cases is None:
        num_cases = 5 if ct else 48
    if quick:
        num_cases, rounds = (2, 1) if ct else (6, 1)
    with tempfile.TemporaryDirectory() as tmp:
        if ct:
            shape, spacing = (QUICK_SHAPE, QUICK_SPACING) if quick else ((192, 192, 96), (1.5, 1.5, 2.0))
            generate_demo_ct(tmp, num_cases=num_cases, num_test=0, shape=shape, spacing=spacing)
            overrides = {"patch_size": list(QUICK_PATCH)} if quick else {}
        else:
            generate_demo_dataset(tmp, num_images=num_cases, **({"min_size": 48, "max_size": 80} if quick else {}))
            overrides = {"image_size": [64, 64], "batch_size": 2} if quick else {}
        parser = ConfigParser()
        parser.read_config(str(bundle_dir(bundle) / "configs" / "train.yaml"))
        parser.update(
            {
                "bundle_root": tmp,
                "dataset_dir": tmp,
                "max_epochs": 1,
                "val_interval": 1000,
                # one epoch of the training loop alone: no validation, no progress bar, no TensorBoard
                "train#handlers": [],
                **overrides,
            }
        )
        parser.get_parsed_content("initialize")
        # building the trainer fills the dataset's cache: once per run, while the epoch is what repeats
        trainer: SupervisedTrainer = parser.get_parsed_content("train#trainer")
        network, loss_fn, optimizer = trainer.network, trainer.loss_function, trainer.optimizer
        # each step's network input and target as the trainer's prepare_batch gave them (on its device, at the
        # scale a multi-scale batch drew), taken once the forward pass has put them in the engine's output
        steps: list = []
        trainer.add_event_handler(
            IterationEvents.FORWARD_COMPLETED,
            lambda engine: steps.append((engine.state.output[CommonKeys.IMAGE], engine.state.output[CommonKeys.LABEL])),
        )
        # the time the trainer waits for its loader's batches: what a starved network would show, apart from
        # the costs of an epoch's first step at a new input size that the replay no longer pays
        # (a request that ends the data, with no batch, is left out)
        requested: list = []
        waits: list = []
        trainer.add_event_handler(Events.GET_BATCH_STARTED, lambda _: requested.append(time.perf_counter()))
        trainer.add_event_handler(
            Events.GET_BATCH_COMPLETED, lambda _: waits.append(time.perf_counter() - requested.pop())
        )
        epochs, computes, data = [], [], []
        for _ in range(max(1, rounds)):
            steps.clear()
            requested.clear()
            waits.clear()
            start = time.perf_counter()
            trainer.run()  # a finished engine starts a new one-epoch run
            epochs.append(time.perf_counter() - start)
            data.append(sum(waits))
            network.train()
            start = time.perf_counter()
            for images, labels in steps:
                optimizer.zero_grad(set_to_none=True)
                # through the trainer's inferer, so that the step runs in the same precision (bf16 autocast or not)
                loss = loss_fn(trainer.inferer(images, network), labels)
                loss.backward()
                optimizer.step()
            computes.append(time.perf_counter() - start)
    return {
        "bundle": bundle,
        "cases": num_cases,
        "rounds": len(epochs),
        "iterations": len(steps),
        "batch_shape": list(steps[0][0].shape),
        "num_workers": trainer.data_loader.num_workers,
        "threads": torch.get_num_threads(),
        "epoch_s": round(statistics.median(epochs), 2),
        "compute_s": round(statistics.median(computes), 2),
        "ratio": round(statistics.median(e / c for e, c in zip(epochs, computes)), 2),
        "data_s": round(statistics.median(data), 3),
    }


def pipeline_rows(
    bundles: Sequence[str] = CT_BUNDLES[:1],
    quick: bool = False,
    cases: int = 1,
    train_cases: int | None = None,
    rounds: int = 3,
    models: str | os.PathLike | None = None,
    input_format: str = "dicom",
    settings: dict | None = None,
    training: bool = True,
    stand_in_network_s: float | None = None,
) -> list[dict]:
    """The 3D pipeline figures: one row per measurement, ready for a table.

    Each row has ``section`` (``"3D inference"`` or ``"training epoch"``), ``bundle`` and the figures of
    :func:`benchmark_inference` (``cases`` studies in ``input_format`` in one run, with the weights in ``models``
    or random ones, the bundle's ``settings`` overridden, its network replaced by a CPU-free wait of
    ``stand_in_network_s`` when given; CT bundles only) or :func:`benchmark_training`
    (``train_cases`` phantoms or images, by default the function's; ``rounds`` epochs; left out when ``training``
    is false).
    """
    rows = []
    for bundle in bundles:
        if bundle_spatial_dims(bundle) == 3:
            inference = benchmark_inference(
                bundle,
                quick=quick,
                cases=cases,
                models=models,
                input_format=input_format,
                settings=settings,
                stand_in_network_s=stand_in_network_s,
            )
            rows.append({"section": "3D inference", **inference})
        if training:
            training_row = benchmark_training(bundle, num_cases=train_cases, quick=quick, rounds=rounds)
            rows.append({"section": "training epoch", **training_row})
    return rows


def pipeline_section(options: BenchmarkOptions) -> BenchmarkSection:
    """The benchmark suite's ``pipeline`` section: :func:`pipeline_rows` for the bundles of ``--bundle``.

    A 3D bundle gets its end-to-end inference and its training epoch, a 2D one its training epoch; without
    ``--bundle``, the 3D EGE-UNet bundle and the 2D EGE-UNet one.
    """
    from .benchmark import BenchmarkSection

    bundles = options.extra.get("bundles") or list(SUITE_BUNDLES)
    return BenchmarkSection(
        "3D bundle end to end and training epochs",
        pipeline_rows(bundles, quick=options.quick, cases=1 if options.quick else 2),
        [
            "3D inference: the bundle's inference.yaml in a fresh process on full-size CT-like DICOM series; "
            "ratio: the whole process over the network's time; per_case_ratio: a case after the first over its "
            "network time (start-up excluded); cpu_floor_ratio: about the per_case_ratio the run's CPU seconds "
            "allow on this many cores.",
            "training epoch: an epoch of the bundle's trainer against its own batches replayed from memory through "
            "the step alone, medians of alternating rounds; data_s: the time the trainer waited for its batches.",
        ],
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bundle",
        action="append",
        choices=list_bundles(),
        help="bundle (repeatable; default: the 3D EGE-UNet one); a 2D bundle times its training epoch only",
    )
    parser.add_argument("--cases", type=int, default=1, help="CT series read in the one inference run (default: 1)")
    parser.add_argument(
        "--train-cases", type=int, help="phantoms or 2D images of the training epoch (default: 5 phantoms, 48 images)"
    )
    parser.add_argument("--epochs", type=int, default=3, help="alternating epoch and compute rounds (default: 3)")
    parser.add_argument(
        "--models",
        type=path_option,
        metavar="DIR",
        help="a trained bundle's models folder (model.pt, plan.json) to time instead of random weights",
    )
    parser.add_argument(
        "--input", choices=INPUT_FORMATS, default="dicom", help="study format (default: dicom; nifti: .nii.gz)"
    )
    parser.add_argument(
        "--set",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="override a key of inference.yaml, the value read as YAML (repeatable): --set sw_batch_size=4",
    )
    parser.add_argument(
        "--stand-in-network",
        type=float,
        metavar="SECONDS",
        help="replace the network by a wait of SECONDS per case that uses no CPU, as a GPU's network would, and a "
        "compact label map: times the rest of the pipeline for a GPU machine",
    )
    parser.add_argument("--inference-only", action="store_true", help="leave out the training epoch")
    parser.add_argument("--quick", action="store_true", help="small volumes: checks that everything runs")
    parser.add_argument("--json", type=path_option, metavar="FILE", help="also write the rows as JSON to FILE")
    parser.add_argument("--child", metavar="JOB", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.child:
        return _child(json.loads(args.child))
    if args.cases < 1 or args.epochs < 1 or (args.train_cases is not None and args.train_cases < 3):
        raise SystemExit("--cases and --epochs must be at least 1, --train-cases at least 3")
    if args.stand_in_network is not None and args.stand_in_network < 0:
        raise SystemExit("--stand-in-network takes the seconds a case's network would take: 0 or more")
    if args.inference_only and all(bundle_spatial_dims(b) == 2 for b in args.bundle or CT_BUNDLES[:1]):
        raise SystemExit("--inference-only times a 3D bundle's inference: give a CT --bundle")
    if len(args.bundle or []) > 1 and args.models:
        raise SystemExit("--models holds one bundle's weights: give one --bundle with it")
    settings = dict(args.set)
    for bundle in args.bundle or CT_BUNDLES[:1]:
        if bundle_spatial_dims(bundle) == 3 and settings:
            try:
                check_overrides([bundle_dir(bundle) / "configs" / "inference.yaml"], settings)
            except ValueError as error:
                raise SystemExit(f"--set: {error}") from None
    try:
        rows = pipeline_rows(
            args.bundle or CT_BUNDLES[:1],
            args.quick,
            cases=args.cases,
            train_cases=args.train_cases,
            rounds=args.epochs,
            models=args.models,
            input_format=args.input,
            settings=settings,
            stand_in_network_s=args.stand_in_network,
            training=not args.inference_only,
        )
    except RuntimeError as error:
        raise SystemExit(str(error)) from None
    for row in rows:
        print(json.dumps(row))
    if args.json:
        with atomic_open(args.json) as f:
            f.write(json.dumps(rows, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the tool as ``python -m monai_unets.scripts.benchmark_pipeline``; returns the exit status."""
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
