"""What the bundle tests need per bundle: a way to make small data it trains and infers on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from monai_unets.scripts.demo_data import generate_demo_dataset


@dataclass(frozen=True)
class BundleCase:
    """How to test one bundle: make its data, and what its inference writes."""

    make_data: Callable[[Path], Path]  # writes a dataset with datalist.json into the folder, returns the folder
    output_ext: str  # extension of one prediction file
    bad_input_name: str  # a corrupt input file that inference must skip
    metrics: tuple[str, ...]  # the per-case metric columns of the evaluation, in order
    train_args: tuple[str, ...] = ()  # extra overrides that keep the one-epoch training short on a CPU


def _skin_lesion_data(root: Path) -> Path:
    generate_demo_dataset(root, num_images=12, seed=3, min_size=48, max_size=112)
    return root


# A new bundle gets an entry here; test_bundles.py fails for a bundle without one.
BUNDLE_CASES: dict[str, BundleCase] = {
    "egeunet_skin_lesion": BundleCase(
        make_data=_skin_lesion_data,
        output_ext=".png",
        bad_input_name="corrupt.jpg",
        metrics=("val_mean_dice", "val_mean_iou", "val_accuracy", "val_sensitivity", "val_specificity"),
    ),
    # RGB images with a darker blob and its mask stand in for colonoscopy frames
    "unetv2_polyp": BundleCase(
        make_data=_skin_lesion_data,
        output_ext=".png",
        bad_input_name="corrupt.png",
        metrics=("val_mean_dice", "val_mean_iou", "val_mae"),
        train_args=("--image_size", "[64, 64]"),
    ),
}
