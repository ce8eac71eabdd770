"""Benchmark suite: networks beside MONAI's, runtime paths, 3D inference, readers; Markdown and JSON reports.

Each section measures one thing and returns a table; the runner describes the machine (CPU, threads, load
average before and after, library versions) and writes ``benchmark.md`` and ``benchmark.json`` to
``--output-dir``. Sections are registered in :data:`SECTIONS` by module and function name; a section whose
module is not installed is skipped.

- ``networks``: every network of the README's model table at its reference input, at each batch size:
  parameters, MACs, inference latency and throughput, training step time, peak memory, and MONAI's ``UNet``
  (16..256), ``BasicUNet`` and ``AttentionUnet`` on the same input as ratios (their time / ours: above 1 means
  ours is faster);
- ``runtimes``: each network through eager PyTorch, inference mode (eval-time constants cached), channels_last,
  TorchScript (scripted and frozen), ONNX Runtime and, with ``--compile``, torch.compile: latency, speed-up over
  eager and the largest difference of the outputs from eager's;
- ``sliding-window``: a bundle's own sliding-window inference on a full-size random volume (``--bundle``,
  ``--shape``): seconds and peak memory;
- ``readers``: a 300-slice DICOM series and a NIfTI volume read by the bundles' reader, MONAI's ITKReader and
  SimpleITK (:mod:`.benchmark_readers`);
- ``pipeline``: a 3D bundle end to end on full-size DICOM CTs against its network time, and the bundles'
  training epochs against their pure compute, 2D ones included (``--bundle``; :mod:`.benchmark_pipeline`).

Timings are medians over ``--repeats`` rounds in which the compared variants run alternately, and ratios are
medians of the per-round ratios, so that load changes on a shared machine hit both sides of a ratio alike.
``--quick`` runs every section on tiny inputs with one round: a check that the suite works, not a measurement.

Example::

    monai-unets benchmark --output-dir bench                    # every section
    monai-unets benchmark --sections networks runtimes --networks EGEUNet --threads 1
    monai-unets benchmark --sections sliding-window --bundle egeunet3d_pancreas_ct --shape 512 512 300
    monai-unets benchmark --sections pipeline --bundle egeunet3d_pancreas_ct egeunet_skin_lesion
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import io
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer
from monai_unets.bundles import bundle_dir, bundle_spatial_dims, list_bundles
from monai_unets.data.atomic import atomic_open
from monai_unets.data.dataset import one_line
from monai_unets.networks import (
    OnnxRuntimeNetwork,
    count_macs,
    count_parameters,
    cpu_bf16_default,
    input_shape_problem,
    reuse_freed_memory,
)
from torch import nn

from .cli import at_least, device_option, path_option, run_tool
from .model_table import MODEL_ROWS, ModelRow

__all__ = [
    "SECTIONS",
    "BenchmarkOptions",
    "BenchmarkSection",
    "add_arguments",
    "benchmark_sliding_window",
    "machine_description",
    "main",
    "network_section",
    "paired_times",
    "run",
    "run_suite",
    "runtime_section",
    "sliding_window_section",
]

#: Section name -> ``"module:function"`` (module relative to ``monai_unets.scripts``). The function takes
#: :class:`BenchmarkOptions` and returns a :class:`BenchmarkSection`; a module that is not there is skipped.
SECTIONS: dict[str, str] = {
    "networks": ".benchmark:network_section",
    "runtimes": ".benchmark:runtime_section",
    "sliding-window": ".benchmark:sliding_window_section",
    "readers": ".benchmark_readers:readers_section",
    "pipeline": ".benchmark_pipeline:pipeline_section",
}

QUICK_SIZES = (32, 64, 128, 188)  # --quick takes the first side a network accepts (188: U-Net's valid convs)


@dataclass
class BenchmarkOptions:
    """What the sections measure and how often.

    Args:
        quick: tiny inputs and one round, to check that everything runs.
        repeats: timed rounds (medians are reported).
        batch_sizes: batch sizes of the network and runtime sections.
        networks: model-table networks to include (all when empty): a name (``EGEUNet``) or a name and the start
            of its configuration (``EGEUNet 2D``).
        compile: also time torch.compile (slow to compile).
        device: where the networks run.
        extra: section-specific settings (the sliding-window and pipeline sections read ``bundles``, the
            sliding-window section also ``shape``, ``overlap``, ``sw_batch_size`` and ``stitch_device``).
    """

    quick: bool = False
    repeats: int = 10
    batch_sizes: tuple[int, ...] = (1, 8)
    networks: tuple[str, ...] = ()
    compile: bool = False
    device: str = "cpu"
    extra: dict = field(default_factory=dict)


@dataclass
class BenchmarkSection:
    """One table of the report: rows of the same keys, and notes printed under it."""

    title: str
    rows: list[dict]
    notes: list[str] = field(default_factory=list)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def _load_average() -> list[float]:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


def machine_description() -> dict:
    """CPU model, logical CPUs and those this process may use, the instruction set PyTorch's kernels use and whether
    the CPU has bfloat16 tiles (AMX: the CT bundles' bf16 default), torch threads, load average, GPU and library
    versions of this machine."""
    description = {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        # fewer than logical_cpus under taskset or a container's cpuset; the figures depend on them
        "usable_cpus": usable_cpus(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_tiles": cpu_bf16_default("cpu"),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15min": _load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    description.update({name: _version(name) for name in ("torch", "monai", "onnxruntime", "numpy", "monai-unets")})
    if torch.cuda.is_available():
        description["gpu"] = torch.cuda.get_device_name()
    return description


def paired_times(candidates: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each candidate per round; in every round the candidates run one after the other.

    Args:
        candidates: name -> a call to time (it must finish its work before returning, e.g. synchronise CUDA).
        repeats: timed rounds.
        warmup: untimed rounds first (allocations, caches, lazy initialisation).
    """
    for _ in range(warmup):
        for call in candidates.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, call in candidates.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def _median_ratio(numerator: list[float], denominator: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def _reset_peak_rss() -> bool:
    # Linux: writing 5 to clear_refs resets the peak resident size (VmHWM) of this process
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def usable_cpus() -> int:
    """The number of CPUs this process may run on, which a CPU affinity (taskset, a container's cpuset) restricts."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def peak_rss_mib() -> float:
    """The peak resident memory of this process so far, in MiB."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _synchronise(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _selected_rows(options: BenchmarkOptions) -> list[ModelRow]:
    # a name selects every configuration of that network; "EGEUNet 2D" only the configurations starting so
    rows = [
        r
        for r in MODEL_ROWS
        if not options.networks or any(f"{r.name} {r.config}".startswith(n) for n in options.networks)
    ]
    if not rows:
        raise ValueError(f"no network of the model table is called {', '.join(options.networks)}.")
    return rows


def _input_shape(row: ModelRow, net: nn.Module, batch: int, quick: bool) -> tuple[int, ...]:
    spatial = row.input_shape[2:]
    if quick:
        for side in QUICK_SIZES:
            if input_shape_problem(net, (1, row.input_shape[1]) + (side,) * len(spatial), (False, True)) is None:
                spatial = (side,) * len(spatial)
                break
    return (batch, row.input_shape[1], *spatial)


def _monai_baselines(spatial_dims: int, in_channels: int, out_channels: int) -> dict[str, Callable[[], nn.Module]]:
    from monai.networks.nets import AttentionUnet, BasicUNet, UNet

    widths = (16, 32, 64, 128, 256)
    return {
        "UNet": lambda: UNet(spatial_dims, in_channels, out_channels, widths, (2, 2, 2, 2)),
        "BasicUNet": lambda: BasicUNet(spatial_dims, in_channels, out_channels),
        "AttentionUnet": lambda: AttentionUnet(spatial_dims, in_channels, out_channels, widths, (2, 2, 2, 2)),
    }


def _training_step(net: nn.Module, x: torch.Tensor, optimiser: torch.optim.Optimizer) -> Callable[[], None]:
    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        output = net(x)
        outputs = output if isinstance(output, (list, tuple)) else [output]
        sum(o.float().mean() for o in outputs).backward()
        optimiser.step()

    return step


def _inference(net: nn.Module, x: torch.Tensor, device: str) -> Callable[[], torch.Tensor]:
    def infer() -> torch.Tensor:
        with torch.inference_mode():
            y = net(x)
        _synchronise(device)
        return y

    return infer


def _cases(options: BenchmarkOptions) -> Iterator[tuple[ModelRow, nn.Module, torch.Tensor]]:
    """Each selected network (in eval mode) with a random input of each batch size."""
    for row in _selected_rows(options):
        net = row.build().to(options.device)
        for batch in (1,) if options.quick else options.batch_sizes:
            shape = _input_shape(row, net, batch, options.quick)
            yield row, net.eval(), torch.rand(*shape, device=options.device)


def network_section(options: BenchmarkOptions) -> BenchmarkSection:
    """Every model-table network at its reference input beside MONAI's UNet, BasicUNet and AttentionUnet."""
    rows = []
    repeats = 1 if options.quick else options.repeats
    for row, net, x in _cases(options):
        shape, batch = tuple(x.shape), x.shape[0]
        out_channels = _inference(net, x, options.device)().shape[1]
        baselines = {}
        for name, build in _monai_baselines(len(shape) - 2, shape[1], out_channels).items():
            baseline = build().to(options.device).eval()
            # e.g. MONAI's UNet needs sizes divisible by 16
            reason = input_shape_problem(baseline, shape, (False, True))
            if reason is not None:
                print(
                    f"benchmark: {row.name} {row.config}: {name} does not take {list(shape)}: {reason}", file=sys.stderr
                )
                continue
            baselines[name] = baseline
        candidates = {"ours": _inference(net, x, options.device)}
        candidates.update({name: _inference(b, x, options.device) for name, b in baselines.items()})
        # the peak of this network's inference alone: the paired rounds run the baselines too, and the rows before
        # this one other networks
        on_cuda = torch.device(options.device).type == "cuda"
        if on_cuda:
            torch.cuda.reset_peak_memory_stats()
        _reset_peak_rss()
        candidates["ours"]()
        peak = torch.cuda.max_memory_allocated() if on_cuda else None
        peak_rss = peak_rss_mib()
        infer_times = paired_times(candidates, repeats)
        # training: each network's own step (forward, a mean over its outputs, backward, SGD step)
        steps = {}
        for name, model in [("ours", net)] + list(baselines.items()):
            model.train()
            steps[name] = _training_step(model, x, torch.optim.SGD(model.parameters(), lr=1e-6))
        train_times = paired_times(steps, max(1, repeats // 2))
        latency = statistics.median(infer_times["ours"])
        result = {
            "network": row.name,
            "config": row.config,
            "input": "x".join(map(str, shape)),
            "parameters": count_parameters(net),
            "GMACs": round(count_macs(net, shape) / 1e9, 3),
            "latency_ms": round(latency * 1e3, 2),
            "images_per_s": round(batch / latency, 1),
            "train_step_ms": round(statistics.median(train_times["ours"]) * 1e3, 1),
        }
        if peak is not None:
            result["peak_cuda_mib"] = round(peak / 2**20, 1)
        else:
            result["peak_rss_mib"] = round(peak_rss, 1)
        for name in _monai_baselines(1, 1, 1):
            key = f"MONAI {name} / ours"
            result[f"{key} (inference)"] = (
                round(_median_ratio(infer_times[name], infer_times["ours"]), 2) if name in baselines else None
            )
            result[f"{key} (training)"] = (
                round(_median_ratio(train_times[name], train_times["ours"]), 2) if name in baselines else None
            )
        rows.append(result)
    return BenchmarkSection(
        "Networks beside MONAI's",
        rows,
        [
            "MONAI UNet: channels (16, 32, 64, 128, 256), strides 2; BasicUNet: its defaults; AttentionUnet: the "
            "UNet's channels. Ratios are their time over ours (above 1: ours is faster), medians of paired rounds.",
            "Latency: inference mode, eval; training step: forward, mean of the outputs, backward, SGD step.",
            "Peak memory: of one inference of the row's network, before the paired rounds. On the CPU the "
            "process's peak resident size, which holds what earlier rows left resident (the allocator keeps freed "
            "blocks for reuse): a network's own figure comes from running it alone (--networks). On a GPU the CUDA "
            "allocator's peak.",
        ],
    )


def _export_onnx(net: nn.Module, x: torch.Tensor, path: Path) -> None:
    # as the bundles' onnx_export makes it (MONAI's convert_to_onnx with its defaults, so PyTorch's default exporter)
    # and for one image at the timed size: OnnxRuntimeNetwork then runs a batch image by image, as the bundles do
    from monai.networks import convert_to_onnx

    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
        convert_to_onnx(net, [x[:1]], input_names=["image"], filename=str(path), use_trace=False)


def _runtime_paths(
    net: nn.Module, x: torch.Tensor, options: BenchmarkOptions, workdir: Path
) -> dict[str, Callable[[], Callable[[], torch.Tensor]]]:
    """Runtime path name -> a builder of its timed call (built lazily: a failing path is reported, not fatal)."""
    device = options.device
    memory_format = torch.channels_last if x.dim() == 4 else torch.channels_last_3d

    def eager() -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            y = net(x)
            _synchronise(device)
            return y.detach()

        return call

    def torchscript() -> Callable[[], torch.Tensor]:
        return _inference(torch.jit.freeze(torch.jit.script(_copy_of(net))), x, device)

    def onnxruntime() -> Callable[[], torch.Tensor]:
        import onnxruntime as ort

        if on_cuda and "CUDAExecutionProvider" not in ort.get_available_providers():
            # timing ONNX Runtime's CPU fallback in a GPU table would compare two machines
            raise RuntimeError("ONNX Runtime has no CUDA execution provider here (pip install onnxruntime-gpu)")
        path = workdir / "model.onnx"
        _export_onnx(net, x, path)
        return _inference(OnnxRuntimeNetwork(path, device), x, device)

    def variant(dtype: torch.dtype | None = None, layout: bool = False, compiled: str | None = None):
        """Inference mode on a copy in channels-last ``layout``, ``compiled`` in that torch.compile mode, or under
        autocast to ``dtype``."""

        def build() -> Callable[[], torch.Tensor]:
            model = _copy_of(net).to(memory_format=memory_format) if layout else net
            if compiled is not None:
                model = torch.compile(_copy_of(model), mode=compiled)
            inputs = x.contiguous(memory_format=memory_format) if layout else x
            call = _inference(model, inputs, device)
            if dtype is None:
                return call

            def mixed() -> torch.Tensor:
                with torch.autocast(torch.device(device).type, dtype=dtype):
                    return call()

            return mixed

        return build

    def cuda_graph() -> Callable[[], torch.Tensor]:
        # the whole inference-mode call captured once and replayed: one launch instead of hundreds
        static = x.clone()

        def call() -> torch.Tensor:  # no synchronisation: not allowed while capturing
            with torch.inference_mode():
                return net(static)

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up outside the capture: cuDNN's choices, allocator pools
                call()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = call()

        def replay() -> torch.Tensor:
            graph.replay()
            _synchronise(device)
            return output

        return replay

    on_cuda = torch.device(device).type == "cuda"
    paths = {
        "eager": eager,
        "eager, inference mode": lambda: _inference(net, x, device),
        "channels_last": variant(layout=True),
        "TorchScript (frozen)": torchscript,
        "ONNX Runtime": onnxruntime,
        # the bundles' mixed precision: float16 autocast on a GPU (amp), bfloat16 on the CPU (bf16)
        "AMP bfloat16": variant(torch.bfloat16),
    }
    if on_cuda:
        paths["AMP float16"] = variant(torch.float16)
        paths["channels_last, AMP float16"] = variant(torch.float16, layout=True)
        paths["CUDA graph"] = cuda_graph
    if options.compile:
        paths["torch.compile"] = variant(compiled="default")
        if on_cuda:
            paths["torch.compile, AMP float16"] = variant(torch.float16, compiled="default")
            # CUDA graphs replay the whole network as one launch: what a small network needs at small batches
            paths["torch.compile CUDA graphs, AMP float16"] = variant(torch.float16, compiled="reduce-overhead")
    return paths


def _copy_of(net: nn.Module) -> nn.Module:
    return copy.deepcopy(net).eval()


def runtime_section(options: BenchmarkOptions) -> BenchmarkSection:
    """Every model-table network through each runtime path: latency, speed-up over eager, output difference."""
    rows = []
    repeats = 1 if options.quick else options.repeats
    for row, net, x in _cases(options):
        batch = x.shape[0]
        with tempfile.TemporaryDirectory() as workdir:
            calls, failures = {}, {}
            for name, build in _runtime_paths(net, x, options, Path(workdir)).items():
                try:
                    calls[name] = build()
                    calls[name]()
                except Exception as error:  # a runtime that cannot take this network is a finding, not a crash
                    calls.pop(name, None)
                    failures[name] = f"{type(error).__name__}: {one_line(str(error))}"
            reference = calls["eager"]().float()
            scale = max(1.0, reference.abs().max().item())
            diffs = {name: (call().float() - reference).abs().max().item() for name, call in calls.items()}
            times = paired_times(calls, repeats)
        for name in list(calls) + list(failures):
            result = {"network": row.name, "config": row.config, "input": "x".join(map(str, x.shape))}
            result["runtime"] = name
            if name in failures:
                result["error"] = failures[name]
            else:
                latency = statistics.median(times[name])
                result["latency_ms"] = round(latency * 1e3, 2)
                result["images_per_s"] = round(batch / latency, 1)
                result["speed-up over eager"] = round(_median_ratio(times["eager"], times[name]), 2)
                result["max abs diff from eager"] = float(f"{diffs[name]:.2e}")
                result["max abs diff / max(1, max abs eager)"] = float(f"{diffs[name] / scale:.2e}")
            rows.append(result)
    return BenchmarkSection(
        "Runtime paths",
        rows,
        [
            "eager: the network in eval mode with autograd on, every operation recomputed on each call; "
            "inference mode: torch.inference_mode(), where EGE-UNet reuses its attention maps per input size; "
            "channels_last, TorchScript (scripted, frozen) and torch.compile run in inference mode; CUDA graph: "
            "the inference-mode call captured once and replayed; AMP: autocast to the named type.",
            "ONNX Runtime: exported as the bundles' onnx_export makes it (MONAI's convert_to_onnx, PyTorch's default "
            "exporter) for one image of the timed size, a batch run image by image as the bundles run it; all graph "
            "optimisations, as many threads as torch; its own kernels give float32 differences of about 1e-5 "
            "relative.",
        ],
    )


def benchmark_sliding_window(
    bundle: str,
    shape: tuple[int, ...] = (512, 512, 300),
    device: str = "cpu",
    stitch_device: str | None = None,
    overlap: float | None = None,
    sw_batch_size: int | None = None,
    repeats: int = 1,
    amp: bool | None = None,
    bf16: bool | None = None,
) -> dict:
    """Run the bundle's sliding-window inference on a random volume and measure it.

    The network, window size, overlap, window batch and autocast come from the bundle's ``inference.yaml``
    (random weights: speed does not depend on them); the volume is random, of ``shape`` voxels, one channel, as
    the network sees it after preprocessing. Peak memory is the process's peak resident size during the inference
    (and the CUDA allocator's peak on a GPU): it includes what the process held before, which an earlier row's
    inference may leave it (``rss_before_mib``; the bundles keep freed memory for reuse).

    Args:
        bundle: name of a shipped bundle whose inference config has ``network_def`` and ``window_inferer`` (or
            a sliding-window ``inferer``).
        shape: spatial size of the volume.
        device: where the windows run.
        stitch_device: where the whole-volume output is assembled (default: ``device``).
        overlap: window overlap (default: the bundle's).
        sw_batch_size: windows per forward pass (default: the bundle's).
        repeats: timed runs (the median is reported); one untimed warm-up run comes first on a GPU.
        amp: float16 autocast on a GPU (default: the bundle's ``amp``); ignored on the CPU.
        bf16: bfloat16 autocast on the CPU (default: the bundle's ``bf16``, on a CPU with AMX tiles for the
            Attention U-Net); ignored on a GPU.

    Returns:
        the settings and figures: seconds, windows, peak resident memory (MiB) and, on CUDA, peak GPU memory.
    """
    parser = ConfigParser()
    parser.read_config(str(bundle_dir(bundle) / "configs" / "inference.yaml"))
    # the bundle's own inferer, with only the devices and the asked-for settings overridden
    parser["sw_device"] = device
    parser["stitch_device"] = stitch_device or device
    if overlap is not None:
        parser["overlap"] = overlap
    if sw_batch_size is not None:
        parser["sw_batch_size"] = sw_batch_size
    # the sliding window that the bundle's inferer (TTA / ensemble wrapper, when there is one) runs
    inferer = parser.get_parsed_content("window_inferer" if "window_inferer" in parser else "inferer")
    if not isinstance(inferer, SlidingWindowInferer):
        raise ValueError(f"the inferer of bundle {bundle} is {type(inferer).__name__}, not a sliding-window inferer.")
    parser["device"] = device
    # as the bundle builds it: channels-last where its config says so
    network = parser.get_parsed_content("network").eval()
    # where the bundle's evaluator puts the study before the sliding window
    volume = torch.rand(1, 1, *shape, device=device)
    on_cuda = torch.device(device).type == "cuda"
    # the evaluator's float16 autocast (the bundle's `amp`, on by default on a GPU)
    amp = on_cuda and bool(parser.get_parsed_content("amp") if amp is None else amp)
    # on the CPU, the bfloat16 autocast the bundle's inferer wraps its sliding window in
    bundle_bf16 = "bf16" in parser and bool(parser.get_parsed_content("bf16"))
    bf16 = not on_cuda and (bundle_bf16 if bf16 is None else bool(bf16))
    if on_cuda:
        autocast = torch.autocast("cuda", enabled=amp)
    else:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    if on_cuda:
        with torch.inference_mode(), autocast:
            inferer(volume[..., : min(shape[-1], 2 * inferer.roi_size[-1])], network)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    _reset_peak_rss()
    rss_before = peak_rss_mib()
    times = []
    with torch.inference_mode(), autocast:
        for _ in range(repeats):
            start = time.perf_counter()
            output = inferer(volume, network)
            if on_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    times.sort()
    scan = [max(1, -(-(s - r) // max(1, int(r * (1 - inferer.overlap)))) + 1) for s, r in zip(shape, inferer.roi_size)]
    result = {
        "bundle": bundle,
        "network": type(network).__name__,
        "shape": list(shape),
        "roi_size": list(inferer.roi_size),
        "overlap": inferer.overlap,
        "sw_batch_size": inferer.sw_batch_size,
        "device": device,
        "stitch_device": str(stitch_device or device),
        "amp": amp,
        "bf16": bf16,
        "threads": torch.get_num_threads(),
        "windows": int(torch.tensor(scan).prod()),
        "seconds": round(times[len(times) // 2], 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_before_mib": round(rss_before, 1),
        "output_shape": list(output.shape),
    }
    if on_cuda:
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def sliding_window_section(options: BenchmarkOptions) -> BenchmarkSection:
    """The sliding-window inference of one or more CT bundles on a full-size random volume."""
    extra = options.extra
    shape = (100, 96, 40) if options.quick else tuple(extra.get("shape", (512, 512, 300)))
    asked = extra.get("bundles") or ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"]
    # a 2D bundle runs its network on whole images (the pipeline section times its training)
    bundles = [bundle for bundle in asked if bundle_spatial_dims(bundle) == 3]
    if not bundles:
        return BenchmarkSection("Sliding-window inference of the CT bundles", [], ["no 3D bundle among --bundle"])
    rows = [
        benchmark_sliding_window(
            bundle,
            shape,
            options.device,
            extra.get("stitch_device"),
            extra.get("overlap"),
            extra.get("sw_batch_size"),
            1 if options.quick else max(1, options.repeats // 5),
        )
        for bundle in bundles
    ]
    notes = []
    if len(rows) > 1:
        notes.append(
            "peak_rss_mib is the process's peak during each row, which includes what earlier rows left it "
            "(rss_before_mib): a bundle's own peak comes from a run of that bundle alone (--bundle NAME)"
        )
    return BenchmarkSection("Sliding-window inference of the CT bundles", rows, notes)


def _load_section(spec: str) -> Callable[[BenchmarkOptions], BenchmarkSection] | None:
    module_name, _, function = spec.partition(":")
    try:
        module = importlib.import_module(module_name, package=__package__)
    except ModuleNotFoundError as error:
        if error.name and module_name.lstrip(".") in error.name:
            return None  # a section whose module is not part of this installation
        raise
    return getattr(module, function)


def run_suite(sections: list[str], options: BenchmarkOptions) -> dict:
    """Run the named sections (all registered ones when empty) and return the report as a dictionary.

    A section that fails is reported as such (``"failed"``: the error) and the others still run.

    Example::

        >>> report = run_suite(["networks"], BenchmarkOptions(quick=True, networks=("EGEUNet",)))  # doctest: +SKIP
    """
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown benchmark sections {unknown}; the sections are {', '.join(SECTIONS)}.")
    report: dict = {"machine": machine_description(), "quick": options.quick, "sections": []}
    for name in sections or list(SECTIONS):
        section_function = _load_section(SECTIONS[name])
        if section_function is None:
            report["sections"].append({"name": name, "skipped": "its module is not installed"})
            continue
        print(f"benchmark: {name} ...", file=sys.stderr)
        start = time.perf_counter()
        try:
            section = section_function(options)
        except Exception as error:  # noqa: BLE001 - one section's failure must not lose the others' figures
            message = f"{type(error).__name__}: {one_line(str(error))}"
            print(f"benchmark: {name} failed: {message}", file=sys.stderr)
            report["sections"].append({"name": name, "failed": message})
            continue
        report["sections"].append(
            {
                "name": name,
                "title": section.title,
                "seconds": round(time.perf_counter() - start, 1),
                "rows": section.rows,
                "notes": section.notes,
            }
        )
    report["machine"]["load_average_after"] = _load_average()
    return report


def _markdown_table(rows: list[dict]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = ["" if row.get(c) is None else str(row[c]).replace("|", "/") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report_markdown(report: dict) -> str:
    """The report as Markdown: the machine, then one table per section."""
    machine = report["machine"]
    lines = ["# monai-unets benchmark", ""]
    if report["quick"]:
        lines += ["Quick run: tiny inputs, one round. The figures check that the suite runs; they measure nothing.", ""]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    for section in report["sections"]:
        lines += ["", f"## {section.get('title', section['name'])}", ""]
        if "skipped" in section:
            lines.append(f"Skipped: {section['skipped']}.")
            continue
        if "failed" in section:
            lines.append(f"Failed: {section['failed']}")
            continue
        lines += _markdown_table(section["rows"]) if section["rows"] else ["(no rows)"]
        lines += [""] + [f"- {note}" for note in section["notes"]] + [f"- section time: {section['seconds']} s"]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sections", nargs="+", default=[], metavar="NAME", help=f"sections to run: {', '.join(SECTIONS)} (all)"
    )
    parser.add_argument(
        "--output-dir", type=path_option, default=".", help="where benchmark.md and benchmark.json go (default: .)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny inputs, one round: checks that the suite runs")
    parser.add_argument(
        "--repeats", type=at_least(int, 1), default=10, help="timed rounds, medians reported (default: 10)"
    )
    parser.add_argument(
        "--batch-sizes", type=at_least(int, 1), nargs="+", default=[1, 8], help="batch sizes (default: 1 8)"
    )
    parser.add_argument(
        "--networks",
        nargs="+",
        default=[],
        help='model-table networks (EGEUNet) or configurations ("EGEUNet 2D"); default: all',
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes to compile)")
    parser.add_argument(
        "--threads", type=at_least(int, 1), default=None, help="torch threads (default: torch's own choice)"
    )
    parser.add_argument(
        "--device", type=device_option, default="cpu", help="device of the networks (default: %(default)s)"
    )
    parser.add_argument(
        "--default-allocator",
        action="store_true",
        help="keep glibc's allocator settings instead of reusing freed blocks as the bundles do",
    )
    parser.add_argument(
        "--bundle",
        nargs="+",
        default=None,
        choices=list_bundles(),
        help="bundles of the sliding-window (3D ones) and pipeline sections (a 2D one: its training epoch)",
    )
    parser.add_argument(
        "--shape", type=at_least(int, 1), nargs="+", default=[512, 512, 300], help="sliding-window volume size"
    )
    parser.add_argument(
        "--stitch-device", type=device_option, default=None, help="sliding-window output device (default: --device)"
    )
    parser.add_argument("--overlap", type=float, default=None, help="window overlap (default: the bundle's)")
    parser.add_argument(
        "--sw-batch-size", type=at_least(int, 1), default=None, help="windows per pass (default: the bundle's)"
    )


def run(args: argparse.Namespace) -> int:
    # the output folder first: a long suite must not end by failing to write its figures
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(output_dir, os.W_OK):
        raise SystemExit(f"--output-dir {output_dir}: cannot write there")
    if len(args.shape) != 3:
        raise SystemExit(f"--shape takes the 3 sizes of a volume, got {len(args.shape)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # the allocator of the bundles' runs (their `initialize`), so that the figures are theirs
    reused = False if args.default_allocator else reuse_freed_memory()
    sections = list(args.sections)
    if args.bundle and not sections:
        # the former form of the command: the 3D bundles' sliding-window figures, the 2D ones' training epochs
        dims = {bundle_spatial_dims(bundle) for bundle in args.bundle}
        sections = ["sliding-window"] * (3 in dims) + ["pipeline"] * (2 in dims)
    options = BenchmarkOptions(
        quick=args.quick,
        repeats=args.repeats,
        batch_sizes=tuple(args.batch_sizes),
        networks=tuple(args.networks),
        compile=args.compile,
        device=args.device,
        extra={
            "bundles": args.bundle,
            "shape": args.shape,
            "stitch_device": args.stitch_device,
            "overlap": args.overlap,
            "sw_batch_size": args.sw_batch_size,
        },
    )
    report = run_suite(sections, options)
    report["machine"]["freed_memory_reused"] = reused
    with atomic_open(output_dir / "benchmark.json") as f:
        f.write(json.dumps(report, indent=1) + "\n")
    markdown = report_markdown(report)
    with atomic_open(output_dir / "benchmark.md") as f:
        f.write(markdown)
    print(markdown)
    return 1 if any("failed" in section for section in report["sections"]) else 0


def main(argv: list[str] | None = None) -> int:
    """Run the tool as ``python -m monai_unets.scripts.benchmark``; returns the exit status."""
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
