"""pytest's view of the package's own modules: ``python -m pytest --doctest-modules networks/losses.py`` works."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> None:
    """Hands ``--doctest-modules`` the ``monai_unets`` module that a file of the checkout is.

    No package sits at the checkout's root, so pytest names ``networks/losses.py`` ``networks.losses`` and
    would import ``networks`` as a top-level package, whose imports of its sibling subpackages
    (``from ..handlers ...``) then reach beyond the top level and stop the collection. pytest takes a module
    already in ``sys.modules`` under the name it computes, so the ``monai_unets`` module of the same file is
    registered under that name: the examples run against the package as users import it, and each module is
    imported once.

    Args:
        file_path: a file that pytest collects.
        parent: the collector of its folder.
    """
    if not parent.config.getoption("doctestmodules") or file_path.suffix != ".py":
        return
    path = file_path.resolve()
    if not path.is_relative_to(ROOT):
        return
    parts = path.relative_to(ROOT).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    try:
        spec = importlib.util.find_spec(f"monai_unets.{name}")
    except ModuleNotFoundError:  # a folder that is no subpackage (tests/, .ci/)
        return
    if spec is not None and spec.origin is not None and Path(spec.origin).resolve() == path:
        sys.modules.setdefault(name, importlib.import_module(spec.name))
