"""Print the table of networks (paper, dimensions, parameters, multiply-accumulates), or write it into the README.

The figures are measured on the networks themselves: ``count_parameters`` and ``count_macs`` (torch's
FlopCounterMode, one MAC per multiply-accumulate of convolutions and matrix products, on the meta device).

Example::

    monai-unets model-table                     # print the markdown table
    monai-unets model-table --write README.md   # replace the table between the README's markers
    monai-unets model-table --check README.md   # exit 1 if the README's table is out of date
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from monai_unets.networks import AttentionGateUNet, ClassicUNet, EGEUNet, UNetV2, count_macs, count_parameters
from torch import nn

from ..data.atomic import atomic_open
from .cli import path_option, run_tool

__all__ = ["MODEL_ROWS", "ModelRow", "add_arguments", "main", "model_table", "run"]

START = "<!-- model-table:start -->"
END = "<!-- model-table:end -->"


@dataclass(frozen=True)
class ModelRow:
    """One row of the model table: a network configuration and the input it is measured at."""

    name: str
    paper: str
    config: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]


MODEL_ROWS: tuple[ModelRow, ...] = (
    ModelRow("EGEUNet", "Ruan et al., MICCAI 2023", "2D, 3 -> 1", lambda: EGEUNet(2, 3, 1), (1, 3, 256, 256)),
    ModelRow("EGEUNet", "Ruan et al., MICCAI 2023", "3D, 1 -> 1", lambda: EGEUNet(3, 1, 1), (1, 1, 96, 96, 96)),
    ModelRow(
        "ClassicUNet",
        "Ronneberger et al., MICCAI 2015",
        "2D, 1 -> 1, valid convs",
        lambda: ClassicUNet(2, 1, 1, padding="valid"),
        (1, 1, 572, 572),
    ),
    ModelRow(
        "ClassicUNet", "Ronneberger et al., MICCAI 2015", "2D, 3 -> 1", lambda: ClassicUNet(2, 3, 1), (1, 3, 256, 256)
    ),
    ModelRow(
        "AttentionGateUNet",
        "Oktay et al., MIDL 2018",
        "3D, 1 -> 2",
        lambda: AttentionGateUNet(3, 1, 2),
        (1, 1, 96, 96, 96),
    ),
    ModelRow(
        "AttentionGateUNet",
        "Oktay et al., MIDL 2018",
        "2D, 3 -> 1",
        lambda: AttentionGateUNet(2, 3, 1),
        (1, 3, 256, 256),
    ),
    ModelRow(
        "UNetV2", "Peng et al., arXiv 2311.17791", "2D, 3 -> 1, PVTv2-b2", lambda: UNetV2(2, 3, 1), (1, 3, 352, 352)
    ),
    ModelRow(
        "UNetV2",
        "Peng et al., arXiv 2311.17791",
        "3D, 1 -> 2, conv encoder",
        lambda: UNetV2(3, 1, 2, encoder="conv"),
        (1, 1, 96, 96, 96),
    ),
)


def model_table(rows: tuple[ModelRow, ...] = MODEL_ROWS) -> str:
    """The markdown table of ``rows``, measured now.

    Example::

        >>> print(model_table(MODEL_ROWS[:1]))  # doctest: +NORMALIZE_WHITESPACE
        | network | paper | configuration | parameters | input | GMACs |
        |---|---|---|---:|---|---:|
        | `EGEUNet` | Ruan et al., MICCAI 2023 | 2D, 3 -> 1 | 53,374 | 1x3x256x256 | 0.072 |
    """
    lines = ["| network | paper | configuration | parameters | input | GMACs |", "|---|---|---|---:|---|---:|"]
    for row in rows:
        net = row.build()
        shape = "x".join(str(s) for s in row.input_shape)
        macs = count_macs(net, row.input_shape) / 1e9
        lines.append(
            f"| `{row.name}` | {row.paper} | {row.config} | {count_parameters(net):,} | {shape} | {macs:,.3f} |"
        )
    return "\n".join(lines)


def _replace_table(text: str, table: str, path: Path) -> str:
    if START not in text or END not in text:
        raise ValueError(f"{path} has no {START} ... {END} markers for the model table.")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--write", type=path_option, metavar="FILE", help="replace the table between the markers of FILE"
    )
    group.add_argument(
        "--check", type=path_option, metavar="FILE", help="exit with status 1 if FILE's table differs from a new one"
    )


def run(args: argparse.Namespace) -> int:
    table = model_table()
    target = args.write or args.check
    if not target:
        print(table)
        return 0
    path = Path(target)
    text = path.read_text()
    updated = _replace_table(text, table, path)
    if args.check:
        if updated != text:
            print(
                f"{path}: the model table is out of date; run `monai-unets model-table --write {path}`.",
                file=sys.stderr,
            )
            return 1
        return 0
    with atomic_open(path) as f:
        f.write(updated)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
