"""Time to quality: train a 3D bundle (plan + recipe) and MONAI's plain UNet for the same minutes, compare Dice.

The dataset is a folder with an MSD ``dataset.json``, or synthetic data made on the fly: ``mr`` (brain-like MR
with thin folded grey matter, :mod:`monai_unets.scripts.demo_mr`) or ``ct`` (the CT phantoms of
:mod:`monai_unets.scripts.demo_ct`). The last ``--num-test`` labelled cases are held out. The bundle is planned
(``monai-unets plan``) on the rest, trained by its own ``train.yaml`` for ``--minutes`` of this process's CPU
time (``max_minutes`` with ``max_minutes_clock: cpu``, validation included) and run by its ``inference.yaml``
on the held-out studies; the baseline is MONAI's ``UNet``
(channels 16-32-64-128, 2 residual units) trained in a plain loop (per-image z-score, 64^3 patches centred on
foreground and background alike, Dice + cross-entropy, AdamW lr 2e-3, 2 patches of each of 2 volumes a step) for
the same minutes on all the training cases, then run by sliding window on the held-out studies. Both are scored
by Dice per class against the held-out labels in the studies' own voxel grids. Both run in the same process with
the same threads, back to back; budgets in CPU time keep other processes' load on a shared machine from
shortening either run.

Example::

    monai-unets benchmark-quality --bundle egeunet3d_pancreas_ct --data mr --minutes 10 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from ..data.atomic import atomic_open
from ..data.cases import case_output_names
from ..handlers.postprocessing import binary_dice
from .cli import path_option, run_tool

__all__ = ["add_arguments", "dice_per_class", "hold_out", "main", "run", "train_baseline", "train_bundle"]

_BASELINE_PATCH = (64, 64, 64)


def dice_per_class(prediction: np.ndarray, label: np.ndarray, num_classes: int) -> list[float]:
    """Dice of each foreground class (1..K-1); NaN where the class is in neither map.

    Example::

        >>> dice_per_class(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
        [0.6666666666666666, 0.6666666666666666]
    """
    return [binary_dice(prediction == c, label == c) for c in range(1, num_classes)]


def hold_out(dataset_dir: str | os.PathLike, num_test: int, output: str | os.PathLike) -> Path:
    """Write a datalist whose ``test`` list is the last ``num_test`` labelled cases and ``training`` the rest.

    The other entries of ``dataset.json`` (labels, modality) are kept, its counts set to the lists as split, and
    its paths left as they are: relative ones are read against ``dataset_dir``.

    Args:
        dataset_dir: the folder of the MSD ``dataset.json`` whose ``training`` list is split.
        num_test: labelled cases held out, at least 1; at least 3 must be left to train.
        output: the datalist file to write (atomically; its folder is created where missing).

    Returns:
        the path of the datalist written.

    Raises:
        ValueError: ``num_test`` is below 1, or leaves fewer than 3 cases to train.

    Example::

        >>> hold_out("data/demo_mr", 2, "benchmark_quality/benchmark_datalist.json")  # doctest: +SKIP
        PosixPath('benchmark_quality/benchmark_datalist.json')
    """
    dataset = json.loads((Path(dataset_dir) / "dataset.json").read_text())
    labelled = dataset["training"]
    if num_test < 1 or len(labelled) - num_test < 3:
        raise ValueError(
            f"{dataset_dir}: {len(labelled)} labelled cases cannot give {num_test} held out and 3 to train"
        )
    split = {
        **dataset,
        "training": labelled[:-num_test],
        "test": labelled[-num_test:],
        # the counts of the lists as split: the bundles warn of a datalist whose counts differ from its lists
        "numTraining": len(labelled) - num_test,
        "numTest": num_test,
    }
    path = Path(output)
    with atomic_open(path) as f:
        f.write(json.dumps(split, indent=2))
    return path


def _held_out(dataset_dir: Path, datalist: Path) -> list[dict[str, str]]:
    from monai.data import load_decathlon_datalist

    return load_decathlon_datalist(datalist, is_segmentation=True, data_list_key="test", base_dir=dataset_dir)


def _score(predictions: Sequence[np.ndarray], cases: Sequence[dict[str, str]], num_classes: int) -> list[float]:
    scores = []
    for prediction, case in zip(predictions, cases):
        label = np.asarray(nib.load(case["label"]).dataobj).astype(np.int64)
        if prediction.shape != label.shape:
            raise ValueError(f"prediction of {case['image']} has shape {prediction.shape}, label {label.shape}")
        scores.append(dice_per_class(prediction, label, num_classes))
    return np.nanmean(np.asarray(scores, dtype=float), axis=0).tolist()


def train_bundle(
    bundle: str, dataset_dir: Path, datalist: Path, work_dir: Path, minutes: float, overrides: dict | None = None
) -> dict[str, Any]:
    """Plan, train for ``minutes`` and infer on the held-out cases with a bundle's own configs; Dice per class.

    Args:
        bundle: a shipped 3D bundle (:func:`~monai_unets.bundles.list_bundles`).
        dataset_dir: the folder that relative paths of ``datalist`` are read against.
        datalist: the split of :func:`hold_out`: its ``training`` cases are planned and trained on, its ``test``
            cases inferred and scored.
        work_dir: the bundle is copied to ``work_dir/<bundle>`` (files of a copy there replaced), which then holds
            the plan (``dataset_plan.json``), the weights and plan of the training (``models/``) and the
            predictions (``predictions/``).
        minutes: training time in minutes of this process's CPU time, validation included (``max_minutes``
            with ``max_minutes_clock: cpu``).
        overrides: more keys of ``train.yaml`` to set (``{"val_interval": 1}``); not those set here
            (``bundle_root``, ``dataset_dir``, ``datalist``, ``num_workers``, ``plan_file``, ``max_minutes``,
            ``max_minutes_clock``, ``max_epochs``).

    Returns:
        ``dice``: the mean Dice of each foreground class over the held-out cases (a case whose label and
        prediction both lack the class left out); ``iterations``: the training's iterations; ``seconds``: the
        CPU seconds of the training, its set-up and end included; ``plan``: the trained plan's modality,
        spacing, patch size, batch size and post-processing.

    Example::

        >>> data = Path("data/demo_mr")  # labels: background, CSF, grey and white matter
        >>> split = hold_out(data, 2, "work/split.json")  # doctest: +SKIP
        >>> result = train_bundle("egeunet3d_pancreas_ct", data, split, Path("work"), 10)  # doctest: +SKIP
        >>> len(result["dice"])  # doctest: +SKIP
        3
    """
    from monai.bundle import ConfigWorkflow

    from ..bundles import bundle_dir
    from ..data.plan import plan_dataset, save_plan

    # a copy of the bundle, whose training records its classes and input size in its own configs/metadata.json
    root = Path(shutil.copytree(bundle_dir(bundle), work_dir / bundle, dirs_exist_ok=True))
    configs = root / "configs"
    plan_file = save_plan(plan_dataset(dataset_dir, datalist), root / "dataset_plan.json")
    common = dict(bundle_root=str(root), dataset_dir=str(dataset_dir), datalist=str(datalist), num_workers=0)
    start = time.process_time()
    train = ConfigWorkflow(
        config_file=str(configs / "train.yaml"),
        workflow_type="train",
        plan_file=plan_file,
        max_minutes=minutes,
        max_minutes_clock="cpu",
        max_epochs=10**6,
        **common,
        **(overrides or {}),
    )
    train.initialize()
    train.run()
    iterations = train.trainer.state.iteration
    train.finalize()
    trained_s = time.process_time() - start
    output_dir = root / "predictions"
    infer = ConfigWorkflow(
        config_file=str(configs / "inference.yaml"),
        workflow_type="infer",
        datalist_key="test",
        output_dir=str(output_dir),
        **common,
    )
    infer.initialize()
    infer.run()
    infer.finalize()
    cases = _held_out(dataset_dir, datalist)
    plan = json.loads((root / "models" / "plan.json").read_text())
    # named as the bundle names its outputs: a case "case.01.nii.gz" is "case.01"
    predictions = [
        np.asarray(nib.load(output_dir / f"{name}_seg.nii.gz").dataobj)
        for name in case_output_names([c["image"] for c in cases])
    ]
    return {
        "dice": _score(predictions, cases, plan["num_classes"]),
        "iterations": iterations,
        "seconds": trained_s,
        "plan": {k: plan[k] for k in ("modality", "spacing", "patch_size", "batch_size", "postprocessing")},
    }


def train_baseline(dataset_dir: Path, datalist: Path, minutes: float, num_classes: int, seed: int = 0) -> dict:
    """MONAI's plain ``UNet`` in a short training loop for ``minutes``; Dice per class on the held-out cases.

    Args:
        dataset_dir: the folder that relative paths of ``datalist`` are read against.
        datalist: the split of :func:`hold_out`: its ``training`` cases are trained on, its ``test`` cases scored.
        minutes: training time in minutes of this process's CPU time, checked after each step (the last step
            ends past it).
        num_classes: classes, the background included: the network's output channels.
        seed: ``torch``'s seed, which sets the initial weights, the order of the cases and (through MONAI's
            ``DataLoader``) the crops.

    Returns:
        ``dice``: the mean Dice of each foreground class over the held-out cases (a case whose label and
        prediction both lack the class left out); ``iterations``: the training's steps; ``seconds``: the CPU
        seconds of the training loop.

    Example::

        >>> data = Path("data/demo_mr")  # labels: background, CSF, grey and white matter
        >>> split = hold_out(data, 2, "work/split.json")  # doctest: +SKIP
        >>> len(train_baseline(data, split, 10, num_classes=4)["dice"])  # doctest: +SKIP
        3
    """
    from monai.data import CacheDataset, DataLoader, load_decathlon_datalist
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        NormalizeIntensityd,
        RandCropByPosNegLabeld,
        SpatialPadd,
    )

    torch.manual_seed(seed)
    keys = ["image", "label"]
    # each channel of a multi-modal image z-scored on its own, as the bundles' plans do
    normalise = NormalizeIntensityd("image", nonzero=True, channel_wise=True)
    load = [LoadImaged(keys, image_only=True), EnsureChannelFirstd(keys), normalise]
    crop = [
        SpatialPadd(keys, _BASELINE_PATCH),
        RandCropByPosNegLabeld(keys, "label", _BASELINE_PATCH, pos=1, neg=1, num_samples=2),
    ]
    training = load_decathlon_datalist(datalist, True, "training", dataset_dir)
    loader = DataLoader(CacheDataset(training, Compose(load + crop), progress=False), batch_size=2, shuffle=True)
    # the channels of a cached case's crops: the first image is not read again
    in_channels = int(loader.dataset[0][0]["image"].shape[0])
    net = UNet(3, in_channels, num_classes, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3)
    start, iterations = time.process_time(), 0
    while time.process_time() - start < 60 * minutes:
        for batch in loader:
            optimizer.zero_grad()
            loss = loss_fn(net(batch["image"]), batch["label"])
            loss.backward()
            optimizer.step()
            iterations += 1
            if time.process_time() - start >= 60 * minutes:
                break
    trained_s = time.process_time() - start
    net.eval()
    cases = _held_out(dataset_dir, datalist)
    predictions = []
    with torch.no_grad():
        for case in cases:
            image = Compose(load)(case)["image"][None]
            logits = sliding_window_inference(image, _BASELINE_PATCH, 2, net, overlap=0.5, mode="gaussian")
            predictions.append(logits.argmax(1)[0].numpy())
    return {"dice": _score(predictions, cases, num_classes), "iterations": iterations, "seconds": trained_s}


def _synthetic(kind: str, folder: Path, num_cases: int, quick: bool) -> Path:
    if kind == "mr":
        from .demo_mr import generate_demo_mr

        shape = (40, 40, 36) if quick else (80, 80, 72)
        generate_demo_mr(folder, num_cases=num_cases, num_test=0, shape=shape)
    else:
        from .demo_ct import generate_demo_ct

        shape = (48, 40, 24) if quick else (96, 80, 48)
        generate_demo_ct(folder, num_cases=num_cases, num_test=0, shape=shape)
    return folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bundle",
        nargs="*",
        default=["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"],
        help="3D bundles to train",
    )
    parser.add_argument(
        "--data", type=path_option, default="mr", help="'mr', 'ct' (synthetic) or a folder with dataset.json"
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="training time of each model")
    parser.add_argument("--num-cases", type=int, default=10, help="synthetic labelled cases (default: %(default)s)")
    parser.add_argument("--num-test", type=int, default=2, help="labelled cases held out (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--work-dir", type=path_option, default="benchmark_quality", help="folder for data, weights and predictions"
    )
    parser.add_argument("--no-baseline", action="store_true", help="train only the bundles")
    parser.add_argument("--quick", action="store_true", help="tiny data and seconds of training: a correctness run")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    minutes = 0.05 if args.quick else args.minutes
    if args.data in ("mr", "ct"):
        num_cases = 5 if args.quick else args.num_cases
        dataset_dir = _synthetic(args.data, work / f"data_{args.data}", num_cases, args.quick)
    else:
        dataset_dir = Path(args.data)
    num_test = 1 if args.quick else args.num_test
    datalist = hold_out(dataset_dir, num_test, work / "benchmark_datalist.json")
    overrides = {"val_interval": 1} if args.quick else {}
    results: dict[str, Any] = {
        "data": str(args.data),
        "minutes": minutes,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
    }
    for bundle in args.bundle:
        results[bundle] = train_bundle(bundle, dataset_dir, datalist, work, minutes, overrides)
    if not args.no_baseline:
        num_classes = len(json.loads(datalist.read_text())["labels"])
        results["baseline_unet"] = train_baseline(dataset_dir, datalist, minutes, num_classes)
    results["load_average_end"] = os.getloadavg()[0]
    with atomic_open(work / "results.json") as f:
        f.write(json.dumps(results, indent=2))
    print(
        f"data {args.data}, {minutes} min per model, {results['threads']} threads, load {results['load_average']:.1f}"
    )
    for name, result in results.items():
        if isinstance(result, dict) and "dice" in result:
            dice = ", ".join(f"{d:.3f}" for d in result["dice"])
            print(
                f"{name:32s} Dice per class [{dice}]  mean {np.nanmean(result['dice']):.3f}  {result['iterations']} it"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the tool as ``python -m monai_unets.scripts.benchmark_quality``; returns the exit status."""
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
