"""Every example in the package's docstrings runs and shows what it prints, or is marked ``# doctest: +SKIP``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from tests.conftest import REPO_ROOT


def _subpackage_folders() -> list[str]:
    """The checkout's folders that are ``monai_unets`` subpackages (networks, data, ...), not tests/ or docs/."""
    return [
        folder.name
        for folder in sorted(REPO_ROOT.iterdir())
        if (folder / "__init__.py").is_file() and importlib.util.find_spec(f"monai_unets.{folder.name}") is not None
    ]


def test_every_docstring_example_runs():
    # run as a user checks the examples, `python -m pytest --doctest-modules networks data ...` from the checkout,
    # in its own process: an example may change a global setting, which must not leak into the other tests
    folders = _subpackage_folders()
    assert {"networks", "data", "handlers", "transforms", "scripts"} <= set(folders), folders
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--doctest-modules", *folders],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout, result.stdout[-3000:]
