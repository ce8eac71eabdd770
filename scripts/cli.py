"""The ``monai-unets`` command line: one subcommand per tool module.

Every tool module exposes ``add_arguments(parser)`` and ``run(args) -> int``; its docstring is the
subcommand's description and the docstring's first line its help. A module with ``ACCEPTS_OVERRIDES = True``
also takes any other ``--key value`` pairs (bundle config overrides) as ``args.overrides``; its options are
then matched in full only, so that an override is never taken for an abbreviated option. A new subcommand is
one more entry in :data:`COMMANDS`; cli imports the tool modules only when it builds the parser, so they can import cli.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

import monai_unets

from ..handlers.errors import escape_unencodable_output, printable, printable_records, quiet_closed_stdout

__all__ = [
    "COMMANDS",
    "UsageError",
    "at_least",
    "build_parser",
    "device_option",
    "key_value",
    "main",
    "path_option",
    "run_tool",
]

#: Subcommand name -> module (relative to ``monai_unets.scripts``) implementing it.
COMMANDS: dict[str, str] = {
    "prepare-isic": ".prepare_isic",
    "demo-data": ".demo_data",
    "demo-ct": ".demo_ct",
    "demo-mr": ".demo_mr",
    "plan": ".plan",
    "quickstart": ".quickstart",
    "prepare-polyp": ".prepare_polyp",
    "model-table": ".model_table",
    "benchmark": ".benchmark",
    "check-data": ".check_data",
    "benchmark-pipeline": ".benchmark_pipeline",
    "list": ".list_bundles",
    "train": ".train",
    "infer": ".infer",
    "evaluate": ".evaluate",
    "report": ".report",
    "benchmark-quality": ".benchmark_quality",
}


class UsageError(ValueError):
    """Options that do not go together (``--max-size`` not above ``--min-size``): a usage error, exit status 2, as
    argparse gives for an option out of range."""


def at_least(
    kind: type[int] | type[float], low: float, above: bool = False, below: float = math.inf
) -> Callable[[str], float]:
    """An argparse type: a finite number of ``kind`` that is at least ``low`` (more than it, with ``above``) and
    less than ``below``.

    A value out of range is a usage error of argparse (exit status 2), before the tool does anything.

    Example::

        >>> parser = argparse.ArgumentParser()
        >>> _ = parser.add_argument("--epochs", type=at_least(int, 1))
        >>> parser.parse_args(["--epochs", "3"]).epochs
        3
        >>> _ = parser.add_argument("--fraction", type=at_least(float, 0, above=True, below=1))
        >>> parser.parse_args(["--fraction", "0.7"]).fraction
        0.7
    """
    wanted = f"{'an integer' if kind is int else 'a number'} {'>' if above else '>='} {low}"
    wanted += f" and < {below}" if below < math.inf else ""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        # NaN fails every comparison, so it is refused with the values out of range
        if not (math.isfinite(value) and (value > low if above else value >= low) and value < below):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    return parse


def path_option(text: str) -> str:
    """An argparse type: a path, with a leading ``~`` expanded (as a shell does, also where it is quoted).

    An empty path is a usage error: an unset shell variable (``--output-dir "$OUT"``) would read or write the
    current folder.

    Example::

        >>> path_option("~/data") == os.path.expanduser("~/data")
        True
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a path")
    return os.path.expanduser(text)


def device_option(text: str) -> str:
    """An argparse type: a torch device of this machine (``cpu``, ``cuda``, ``cuda:1``).

    Example::

        >>> device_option("cpu")
        'cpu'
    """
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; give e.g. cpu, cuda or cuda:1") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA devices")
    return text


def key_value(text: str) -> tuple[str, object]:
    """An argparse type: ``KEY=VALUE``, a config override whose value is read as YAML (a number, a list, ...).

    Args:
        text: the option's argument.

    Example::

        >>> key_value("patch_size=[64, 64, 32]")
        ('patch_size', [64, 64, 32])
    """
    import yaml

    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def _load(module_name: str) -> ModuleType:
    return importlib.import_module(module_name, package=__package__)


def _summary(module: ModuleType) -> str:
    return _plain(module.__doc__ or "").strip().partition("\n")[0]


def _plain(text: str) -> str:
    """A docstring as a terminal shows help: its reStructuredText marks (``code``, :mod:`name`, ``Example::``)
    left out."""
    text = re.sub(r":(?:mod|func|class|meth|data|attr):`~?([^`]+)`", r"\1", text)
    return text.replace("``", "`").replace("::\n", ":\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the ``monai-unets`` argument parser with every subcommand of :data:`COMMANDS`.

    Returns:
        The parser; a parsed namespace carries the chosen module's ``run`` as ``args.run``.

    Example::

        >>> args = build_parser().parse_args(["demo-data", "--output-dir", "demo"])
        >>> args.command
        'demo-data'
    """
    parser = argparse.ArgumentParser(
        prog="monai-unets", description="Tools of monai_unets: data preparation and the bundle quick start."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {monai_unets.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = _load(module_name)
        overrides = getattr(module, "ACCEPTS_OVERRIDES", False)
        subparser = subparsers.add_parser(
            name,
            help=_summary(module),
            description=_plain(module.__doc__ or ""),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=not overrides,
        )
        module.add_arguments(subparser)
        subparser.set_defaults(run=module.run, accepts_overrides=overrides)
    return parser


def _configure_logging() -> None:
    escape_unencodable_output()
    # `| head` ends the output, not the work: a tool's status is that of its work
    quiet_closed_stdout()
    # Progress and warnings go to stderr so that stdout holds only the tools' summaries.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.setLogRecordFactory(printable_records(logging.getLogRecordFactory()))


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    args, extras = parser.parse_known_args(argv)
    if extras and not args.accepts_overrides:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    args.overrides = extras
    return args


def _invoke(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    _configure_logging()
    try:
        return args.run(args)
    except UsageError as error:
        print(f"{parser.prog}: error: {printable(str(error), indented=True)}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:
        # Bad folders, files or options are user errors: a one-line message, not a traceback.
        print(f"{parser.prog}: error: {printable(str(error), indented=True)}", file=sys.stderr)
        return 1


def run_tool(module: ModuleType, argv: Sequence[str] | None = None) -> int:
    """Run one tool module as a stand-alone program (``python -m monai_unets.scripts.<tool>``).

    Args:
        module: the tool module (``sys.modules[__name__]`` from inside it).
        argv: the arguments, without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status.

    Example::

        >>> from monai_unets.scripts import demo_data
        >>> run_tool(demo_data, ["--output-dir", "demo"])  # doctest: +SKIP
        0
    """
    # Under ``python -m`` the module is called __main__; its spec still has the importable name.
    name = module.__spec__.name if module.__spec__ is not None else module.__name__
    overrides = getattr(module, "ACCEPTS_OVERRIDES", False)
    parser = argparse.ArgumentParser(
        prog=f"python -m {name}",
        description=module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=not overrides,
    )
    module.add_arguments(parser)
    parser.set_defaults(run=module.run, accepts_overrides=overrides)
    return _invoke(parser, _parse(parser, argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``monai-unets`` console script.

    Args:
        argv: the arguments, without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status: 0 on success, 1 on a data or file error, 2 on a usage error (from argparse).

    Example::

        >>> main(["demo-data", "--output-dir", "demo", "--num-images", "10"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    return _invoke(parser, _parse(parser, argv))


if __name__ == "__main__":
    sys.exit(main())
