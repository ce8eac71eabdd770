"""Time a bundle's sliding-window inference on a full-size volume and report its peak memory.

The network, window size, overlap and window batch come from the bundle's ``inference.yaml`` (random weights:
speed does not depend on them); the volume is random, of ``--shape`` voxels, one channel, as the network sees
it after preprocessing. Peak memory is the process's peak resident size (and the CUDA allocator's peak on a
GPU), measured around the inference alone.

Example::

    monai-unets benchmark --bundle attention_unet_pancreas_ct --shape 512 512 300
    monai-unets benchmark --bundle egeunet3d_pancreas_ct --device cuda:0 --stitch-device cpu
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer
from monai_unets.bundles import bundle_dir

from .cli import run_tool

__all__ = ["add_arguments", "benchmark_sliding_window", "main", "run"]


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def benchmark_sliding_window(
    bundle: str,
    shape: tuple[int, ...] = (512, 512, 300),
    device: str = "cpu",
    stitch_device: str | None = None,
    overlap: float | None = None,
    sw_batch_size: int | None = None,
    repeats: int = 1,
) -> dict:
    """Run the bundle's sliding-window inference on a random volume and measure it.

    Args:
        bundle: name of a shipped bundle whose inference config has ``network_def`` and ``inferer``.
        shape: spatial size of the volume.
        device: where the windows run.
        stitch_device: where the whole-volume output is assembled (default: ``device``).
        overlap: window overlap (default: the bundle's).
        sw_batch_size: windows per forward pass (default: the bundle's).
        repeats: timed runs (the median is reported); one untimed warm-up run comes first on a GPU.

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
    inferer = parser.get_parsed_content("inferer")
    if not isinstance(inferer, SlidingWindowInferer):
        raise ValueError(f"the inferer of bundle {bundle} is {type(inferer).__name__}, not a sliding-window inferer.")
    network = parser.get_parsed_content("network_def").to(device).eval()
    volume = torch.rand(1, 1, *shape)
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda:
        with torch.inference_mode():
            inferer(volume[..., : min(shape[-1], 2 * inferer.roi_size[-1])], network)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = _peak_rss_mib()
    times = []
    with torch.inference_mode():
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
        "threads": torch.get_num_threads(),
        "windows": int(torch.tensor(scan).prod()),
        "seconds": round(times[len(times) // 2], 2),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "rss_before_mib": round(rss_before, 1),
        "output_shape": list(output.shape),
    }
    if on_cuda:
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", default="attention_unet_pancreas_ct", help="bundle name (default: %(default)s)")
    parser.add_argument(
        "--shape", type=int, nargs="+", default=[512, 512, 300], help="volume size (default: %(default)s)"
    )
    parser.add_argument("--device", default="cpu", help="device of the windows (default: %(default)s)")
    parser.add_argument("--stitch-device", default=None, help="device of the whole-volume output (default: --device)")
    parser.add_argument("--overlap", type=float, default=None, help="window overlap (default: the bundle's)")
    parser.add_argument("--sw-batch-size", type=int, default=None, help="windows per pass (default: the bundle's)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs, median reported (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    result = benchmark_sliding_window(
        args.bundle, tuple(args.shape), args.device, args.stitch_device, args.overlap, args.sw_batch_size, args.repeats
    )
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the tool as ``python -m monai_unets.scripts.benchmark``; returns the exit status."""
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
