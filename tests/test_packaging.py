"""The wheel holds the same modules and bundle files as the source tree, and a clone works under any folder name."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# top-level folders of the repository that become subpackages of monai_unets
SUBPACKAGES = ("bundles", "data", "handlers", "networks", "scripts", "transforms")


def _source_files() -> set[str]:
    """Paths inside the installed package of every module and bundle file in the checkout."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    expected = {f"monai_unets/{Path(p).name}" for p in tracked if p.startswith("monai_unets/")}
    for path in tracked:
        top = path.split("/", 1)[0]
        if top in SUBPACKAGES and (path.endswith(".py") or top == "bundles"):
            expected.add(f"monai_unets/{path}")
    return expected


def _copy_of_the_source(folder: Path) -> list[str]:
    """Copies the checkout's files, tracked or new but not ignored (no build outputs), to ``folder``; their names."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    for name in files:
        if (REPO_ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, folder / name)
    return files


def test_no_init_at_repository_root():
    # pytest would import the root as a package named after the clone's folder, which fails for "monai-unets"
    assert not (REPO_ROOT / "__init__.py").exists()


@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="needs a git checkout to list the tracked files")
def test_wheel_holds_every_module_and_bundle_file(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO_ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("monai_unets-*.whl")
    names = {n for n in zipfile.ZipFile(wheel).namelist() if not n.endswith("/")}
    missing = sorted(_source_files() - names)
    assert not missing, f"not in the wheel: {missing}"
    stray = sorted(
        n
        for n in names
        if n.startswith("monai_unets/") and n.split("/")[1] not in (*SUBPACKAGES, "__init__.py", "py.typed")
    )
    assert not stray, f"files in the wheel that the source tree does not map: {stray}"


@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="needs a git checkout to list the tracked files")
def test_sdist_holds_the_test_suite_and_the_docs(tmp_path):
    # it had held setuptools' default tests/test*.py alone, without the suites' folders and conftest files, and
    # not the failure catalogue the README links to
    # from a copy of the source files alone: the checkout's egg-info (an editable install's) lists files of its own
    source = tmp_path / "source"
    files = _copy_of_the_source(source)
    build = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", build, str(tmp_path)], cwd=source, check=True, capture_output=True)
    (sdist,) = tmp_path.glob("monai_unets-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    wanted = {name for name in files if name.split("/", 1)[0] in ("tests", "docs") or name == "conftest.py"}
    missing = sorted(wanted - names)
    assert not missing, f"not in the sdist: {missing}"
    assert not [name for name in names if "__pycache__" in name]


# .ci/run runs the whole default suite from a clone in such a folder; this check is for other checkouts
@pytest.mark.slow
@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="needs a git checkout to list the files")
def test_suite_runs_in_a_folder_named_monai_unets(tmp_path):
    # a test file run as the README's test command runs it, in a copy of the checkout named like the project
    # (a folder name that is not importable)
    clone = tmp_path / "monai-unets"
    _copy_of_the_source(clone)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/networks/test_losses.py"],
        cwd=clone,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # the copy's own code, not that of the checkout installed (in editable mode by the README's test command)
    modules = ("monai_unets", "monai_unets.data", "monai_unets.networks")
    code = f"import importlib\nfor name in {modules!r}: print(importlib.import_module(name).__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=clone, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(Path(f).is_relative_to(clone) for f in result.stdout.split()), result.stdout


def test_a_process_started_in_the_checkout_finds_every_subpackage():
    # after `pip install .` (no editable finder), a process started in the checkout, such as the `python -m
    # monai.bundle` steps of `monai-unets quickstart` run there, imports monai_unets/ from the checkout: its
    # subpackages are the folders beside it. `-S` leaves out the .pth files, as a non-editable install has none.
    site_packages = sysconfig.get_paths()["purelib"]
    code = (
        f"import sys; sys.path.append({site_packages!r}); "
        + "; ".join(f"import monai_unets.{name}" for name in SUBPACKAGES)
        + "; import monai_unets.networks.blocks; print(monai_unets.data.__file__)"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path(result.stdout.strip()) == REPO_ROOT / "data" / "__init__.py"
