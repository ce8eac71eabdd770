"""Train, run and evaluate the EGE-UNet skin-lesion bundle on generated demo data, end to end.

The steps are the commands a user runs on real data, printed before they run:

1. ``monai-unets demo-data`` writes synthetic dermoscopy images, masks and a datalist;
2. the bundle is copied next to the data, so that its weights and logs are written there;
3. ``python -m monai.bundle run`` with its train.yaml trains it;
4. ``python -m monai.bundle run`` with inference.yaml writes one PNG mask per test image, at the image's size;
5. the same with train.yaml + evaluate.yaml computes Dice, IoU, accuracy, sensitivity and specificity per case
   and writes an HTML report with an overlay picture of each case.

Example::

    monai-unets quickstart --output-dir demo_run
"""

from __future__ import annotations

import argparse
import csv
import shlex
import shutil
import sys
from pathlib import Path

from monai_unets.bundles import bundle_dir
from monai_unets.handlers.case_metrics import PER_CASE_NAME, SUMMARY_NAME
from monai_unets.handlers.evaluation_report import REPORT_NAME

from .bundle_run import bundle_command, run_bundle_process
from .cli import at_least, device_option, path_option, run_tool
from .demo_data import generate_demo_dataset

__all__ = ["add_arguments", "main", "run"]

BUNDLE = "egeunet_skin_lesion"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # checked as the other commands check theirs: a count out of range or a device this machine does not have is a
    # usage error before any data is made, not a failure of the training step after it
    parser.add_argument(
        "--output-dir", type=path_option, default="demo_run", help="folder for data, bundle, weights and outputs"
    )
    parser.add_argument("--num-images", type=at_least(int, 3), default=40, help="number of demo images, 3 or more")
    parser.add_argument("--epochs", type=at_least(int, 1), default=30, help="training epochs")
    parser.add_argument("--val-interval", type=at_least(int, 1), default=5, help="validate every N epochs")
    parser.add_argument("--batch-size", type=at_least(int, 1), default=8, help="training batch size")
    parser.add_argument(
        "--device",
        type=device_option,
        default=None,
        help="torch device, e.g. cpu or cuda:0 (default: the bundle's)",
    )


# the monai-unets command each step of the demo is
_TASKS = {"training": "train", "inference": "infer", "evaluation": "evaluate"}


def _run(step: str, command: list[str]) -> None:
    print(f"\n== {step}\n$ {shlex.join(command)}", flush=True)
    # as monai-unets train, infer and evaluate run it: signals passed on, a reader of the output that stops early
    # ends the output, not the run
    status = run_bundle_process(command, task=_TASKS[step])
    if status:
        # the workflow has printed its own error above; say which step it was
        raise ValueError(f"the {step} step failed with exit status {status}; see its log above.")


def run(args: argparse.Namespace) -> int:
    out = Path(args.output_dir).resolve()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--output-dir {out}: an existing file; give a folder.")
    data = out / "data"
    bundle = out / BUNDLE
    print(f"== demo data: {args.num_images} images in {data}", flush=True)
    generate_demo_dataset(data, num_images=args.num_images)

    if bundle.exists():
        shutil.rmtree(bundle)
    shutil.copytree(bundle_dir(BUNDLE), bundle, ignore=shutil.ignore_patterns("models", "logs", "eval"))
    common: dict[str, object] = {"dataset_dir": data}
    if args.device:
        common["device"] = f"$torch.device('{args.device}')"

    train = ["train.yaml"]
    _run(
        "training",
        bundle_command(
            bundle,
            train,
            {
                **common,
                "max_epochs": args.epochs,
                # the best checkpoint is saved at validation: validate at least once, at the last epoch
                "val_interval": min(args.val_interval, args.epochs),
                "batch_size": args.batch_size,
            },
        ),
    )
    predictions = out / "predictions"
    _run("inference", bundle_command(bundle, ["inference.yaml"], {**common, "output_dir": predictions}))
    eval_dir = out / "evaluation"
    _run(
        "evaluation",
        bundle_command(bundle, train + ["evaluate.yaml"], {**common, "eval_dir": eval_dir}),
    )

    print("\n== results")
    with open(eval_dir / SUMMARY_NAME, newline="") as f:
        for row in csv.DictReader(f):
            mean, std = float(row["mean"]), float(row["std"])
            print(f"{row['metric']:<20} mean {mean:.4f}  (std {std:.4f}, {row['cases']} cases)")
    print(f"\nweights:       {bundle / 'models' / 'model.pt'}")
    print(f"training logs: {bundle / 'logs'}  (tensorboard --logdir {bundle / 'logs'})")
    print(f"test masks:    {predictions}  (one PNG per test image, at the image's size)")
    print(f"metrics:       {eval_dir / PER_CASE_NAME} and {eval_dir / SUMMARY_NAME}")
    print(f"report:        {eval_dir / REPORT_NAME}  (figures, best and worst cases with their overlays)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
