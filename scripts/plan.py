"""Plan a bundle's preprocessing and patches for a dataset from its fingerprint; writes plan.json.

Reads an MSD ``dataset.json`` (or a MONAI datalist) and its labelled cases, measures spacings, shapes, foreground
intensities, class frequencies and the modality (the ``modality`` field, else CT when the intensities look like
Hounsfield units), and writes ``plan.json``: target spacing, normalisation (CT: clip to the foreground's 0.5 /
99.5 percentiles, z-score with its mean and std; MR and others: per-image z-score on non-zero voxels), patch and
batch size for the device, number of classes, label names and post-processing. The 3D bundles' configs read
``<dataset_dir>/plan.json`` (``plan_file``), so a new dataset needs this command and then ``train``.

Example::

    monai-unets plan --dataset-dir /data/Task04_Hippocampus
    python -m monai.bundle run --config_file configs/train.yaml --bundle_root . --dataset_dir /data/Task04_Hippocampus
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.plan import plan_dataset, save_plan
from .cli import device_option, path_option, run_tool

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset-dir", type=path_option, required=True, metavar="DIR", help="the dataset folder")
    parser.add_argument(
        "--datalist",
        type=path_option,
        default=None,
        metavar="JSON",
        help="MSD dataset.json or datalist (default: DIR/dataset.json)",
    )
    parser.add_argument(
        "--output", type=path_option, default=None, metavar="JSON", help="plan file (default: DIR/plan.json)"
    )
    parser.add_argument(
        "--device",
        type=device_option,
        default=None,
        help="device the patch size is planned for, e.g. cpu or cuda:0 (default: this one)",
    )


def run(args: argparse.Namespace) -> int:
    plan = plan_dataset(args.dataset_dir, args.datalist, args.device)
    path = save_plan(plan, args.output or Path(args.dataset_dir) / "plan.json")
    channels = f" of {plan['in_channels']} channels" if plan["in_channels"] > 1 else ""
    print(
        f"{path}: {plan['modality']}{channels}, {plan['num_classes']} classes (background, "
        f"{', '.join(plan['class_names'])}), "
        f"spacing {plan['spacing']} mm, patch {plan['patch_size']} x {plan['batch_size']}, "
        f"normalisation {plan['normalization']['scheme']}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the tool as ``python -m monai_unets.scripts.plan``; returns the exit status."""
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
