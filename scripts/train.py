"""Train a bundle: ``python -m monai.bundle run`` with its train.yaml, metadata and logging filled in.

Weights go to the bundle's ``models/model.pt`` (best validation Dice), TensorBoard logs to ``logs/``.

Every other ``--KEY VALUE`` is a config override, checked against the bundle's configs; the bundle's
``docs/README.md`` lists its settings, and :mod:`monai_unets.scripts.bundle_run` says how they are passed on.

Example::

    monai-unets train egeunet_skin_lesion --dataset_dir /data/isic2018
"""

from __future__ import annotations

import sys

from .bundle_run import make_command
from .cli import run_tool

__all__ = ["ACCEPTS_OVERRIDES", "add_arguments", "main", "run"]

ACCEPTS_OVERRIDES = True
add_arguments, run = make_command("train")


def main(argv: list[str] | None = None) -> int:
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
