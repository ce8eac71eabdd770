"""Write the HTML report of an evaluation folder: metrics, their distribution, training curves and overlays.

Evaluations (``monai-unets evaluate`` or ``python -m monai.bundle run`` with evaluate.yaml) write the report
themselves, as ``<eval_dir>/report.html``; this command rebuilds it, e.g. after the folder was copied or when the
training logs are elsewhere. It reads ``metrics_per_case.csv``, ``metrics_summary.csv``,
``volumes_per_case.csv``, ``overlays/``, ``failures.csv`` and ``run.json`` of the folder and the TensorBoard
logs of the training. The report is one HTML file with its figures embedded: it can be mailed or archived.

Example::

    monai-unets report egeunet_skin_lesion/eval --log-dir egeunet_skin_lesion/logs
"""

from __future__ import annotations

import argparse
import sys

from monai_unets.handlers import write_report

from .cli import at_least, path_option, run_tool

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("eval_dir", type=path_option, help="the evaluation folder (with metrics_per_case.csv)")
    parser.add_argument(
        "--log-dir",
        type=path_option,
        default=None,
        help="TensorBoard folder of the training (default: the one in run.json)",
    )
    parser.add_argument(
        "--output", type=path_option, default=None, help="the HTML file (default: <eval_dir>/report.html)"
    )
    parser.add_argument(
        "--cases", type=at_least(int, 0), default=3, help="how many best and worst cases to show (default: 3)"
    )


def run(args: argparse.Namespace) -> int:
    path = write_report(args.eval_dir, log_dir=args.log_dir, output=args.output, num_extreme_cases=args.cases)
    print(f"report: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
