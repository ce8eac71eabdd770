"""Evaluate a bundle's weights: ``python -m monai.bundle run`` with train.yaml + evaluate.yaml filled in.

Per-case metrics, one overlay PNG per case, label volumes and an HTML report go to ``--eval_dir`` (default: the
bundle's ``eval/``).

Every other ``--KEY VALUE`` is a config override, checked against the bundle's configs; the bundle's
``docs/README.md`` lists its settings, and :mod:`monai_unets.scripts.bundle_run` says how they are passed on.

Example::

    monai-unets evaluate egeunet_skin_lesion --dataset_dir /data/isic2018
"""

from __future__ import annotations

import sys

from .bundle_run import make_command
from .cli import run_tool

__all__ = ["ACCEPTS_OVERRIDES", "add_arguments", "main", "run"]

ACCEPTS_OVERRIDES = True
add_arguments, run = make_command("evaluate")


def main(argv: list[str] | None = None) -> int:
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
