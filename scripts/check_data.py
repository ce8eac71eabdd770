"""Check a dataset against a bundle before a long training: one line per bad case, then a summary.

Every case of the bundle's training and validation lists is read and checked with the bundle's own
``load_transforms`` (the same checks its training runs before the first epoch): readable files, the bundle's spatial
dimensions and channel count, no NaN/Inf voxels (unless ``nan_policy=replace``), label on its image's grid
(shape, and affine within ``affine_tolerance`` mm), label values within ``0 .. num_classes - 1``; and the
datalist itself (valid JSON, the lists and keys the bundle reads, existing files). Labels without foreground are
counted in a warning (images without a lesion have them), and refused where they are every training label; 2D
masks whose foreground covers nearly all their border (as a mask drawn dark on light does, which the bundles read
inverted) are counted in a warning.

The exit status is 0 when every case is fine, 1 when any case is bad, every training label is empty, or the
datalist cannot be read.

Example::

    monai-unets check-data --bundle attention_unet_pancreas_ct --dataset-dir /data/Task07_Pancreas
    monai-unets check-data --bundle ./my_bundle --dataset-dir /data/isic --set num_classes=1 --set nan_policy=replace
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monai.bundle import ConfigParser
from monai_unets.bundles import bundle_dir
from monai_unets.bundles.overrides import literal_path
from monai_unets.data import absent_classes, border_filling_labels, empty_labels, scan_cases
from monai_unets.handlers.errors import check_settings, explain, printable

from .cli import key_value, path_option, run_tool

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, type=path_option, help="a shipped bundle's name or a bundle folder")
    parser.add_argument("--dataset-dir", "--dataset_dir", required=True, type=path_option, help="the dataset folder")
    parser.add_argument(
        "--datalist",
        default=None,
        type=path_option,
        help="datalist JSON (default: the bundle's, in the dataset folder)",
    )
    parser.add_argument(
        "--set",
        # not "overrides": the command line keeps the arguments it does not know there
        dest="settings",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the bundle's train.yaml, as for training (e.g. nan_policy=replace); repeatable",
    )


def _bundle_folder(bundle: str) -> Path:
    folder = Path(bundle)
    if (folder / "configs" / "train.yaml").is_file():
        return folder
    if folder.exists() or "/" in bundle:
        raise FileNotFoundError(f"{folder} is not a bundle folder: it has no configs/train.yaml.")
    try:
        return bundle_dir(bundle)
    except KeyError as error:
        raise ValueError(error.args[0]) from None


def run(args: argparse.Namespace) -> int:
    folder = _bundle_folder(args.bundle)
    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "train.yaml"))
    # as the paths were typed: MONAI's config parser would read '#', '@', '$' and '%' in them
    parser["bundle_root"] = literal_path(str(folder))
    parser["dataset_dir"] = literal_path(args.dataset_dir)
    if args.datalist:
        parser["datalist"] = literal_path(args.datalist)
    for key, value in args.settings:
        if key not in parser:
            raise ValueError(f"--set {key}: the bundle's train.yaml has no setting {key!r}.")
        parser[key] = value
    try:
        if "settings" in parser:
            # as training's initialize does: a wrong value is named before any data is read
            check_settings(parser.get_parsed_content("settings"))
        groups = parser.get_parsed_content("case_groups")
        cases = [case for group in groups for case in group]
        loading = parser.get_parsed_content("load_transforms")
        num_workers = parser.get_parsed_content("num_workers")
        class_names = parser.get_parsed_content("class_names") if "class_names" in parser else None
    except Exception as error:  # noqa: BLE001 - a datalist or setting problem is one message, as in training
        raise ValueError(explain(error)) from error

    def report(case: dict, problem: object) -> None:
        if problem is not None:
            print(f"BAD  {printable(str(problem))}", flush=True)

    scan = scan_cases(cases, loading, num_workers=num_workers, on_result=report)
    warning, refusal = empty_labels(groups, scan)
    if refusal:
        print(f"BAD  {printable(refusal)}", flush=True)
    elif warning:
        print(f"WARNING  {printable(warning)}", flush=True)
    for warning in (border_filling_labels(groups, scan), absent_classes(groups, scan, class_names)):
        if warning:
            print(f"WARNING  {printable(warning)}", flush=True)
    if scan.bad:
        print(f"{len(scan.bad)} of {len(cases)} cases are bad (listed above); training would stop on them.")
        return 1
    if refusal:
        print("training would stop on its labels (above).")
        return 1
    print(f"all {len(cases)} cases are fine for {folder.name}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the tool as ``python -m monai_unets.scripts.check_data``; returns the exit status."""
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
