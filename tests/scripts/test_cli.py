"""Tests of the ``monai-unets`` command line."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
from monai_unets.scripts.cli import COMMANDS, main
from PIL import Image

import monai_unets
from tests.conftest import run_with_closed_stdout


def make_isic_folders(root: Path, count: int) -> tuple[Path, Path]:
    """A minimal ISIC 2018-style download with ``count`` pairs and one superpixel file."""
    images, masks = root / "ISIC2018_Task1-2_Training_Input", root / "ISIC2018_Task1_Training_GroundTruth"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for number in range(count):
        Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(images / f"ISIC_{number:07d}.jpg")
        Image.fromarray(np.zeros((4, 6), np.uint8)).save(masks / f"ISIC_{number:07d}_segmentation.png")
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(images / "ISIC_0000000_superpixels.png")
    return images, masks


def test_console_script_points_at_main() -> None:
    (script,) = [entry for entry in entry_points(group="console_scripts") if entry.name == "monai-unets"]
    assert script.value == "monai_unets.scripts.cli:main"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"monai-unets {monai_unets.__version__}"


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_every_command_module_has_the_plugin_interface() -> None:
    for module_name in COMMANDS.values():
        module = importlib.import_module(module_name, package="monai_unets.scripts")
        assert callable(module.add_arguments) and callable(module.run) and callable(module.main)


def test_demo_data_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output_dir = tmp_path / "demo"
    assert main(["demo-data", "--output-dir", str(output_dir), "--num-images", "10", "--seed", "3"]) == 0
    assert "10 synthetic images -> training 6, validation 1, test 3" in capsys.readouterr().out
    content = json.loads((output_dir / "datalist.json").read_text())
    assert content["seed"] == 3 and len(list((output_dir / "images").glob("demo_*.jpg"))) == 10


def test_prepare_isic_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, masks = make_isic_folders(tmp_path, 20)
    output = tmp_path / "datalist.json"
    argv = ["prepare-isic", "--images", str(images), "--masks", str(masks), "--output", str(output)]
    assert main([*argv, "--val-fraction", "0", "--seed", "1"]) == 0
    assert "20 ISIC pairs -> training 14, validation 6, test 6" in capsys.readouterr().out
    content = json.loads(output.read_text())
    assert content["seed"] == 1 and content["validation"] == content["test"]


def test_prepare_isic_reports_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "ISIC2018_Task1-2_Training_Input"
    assert main(["prepare-isic", "--images", str(missing), "--masks", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("monai-unets: error:") and str(missing) in err


def test_usage_errors_exit_with_status_2() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare-isic", "--images", "somewhere"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "eval", "--cases", "-1"])  # had listed all but one case as the best ones
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo-data", "--train-fraction", "2"], "--train-fraction: must be a number > 0 and < 1, got '2'"),
        (["demo-data", "--val-fraction", "-0.1"], "--val-fraction: must be a number >= 0 and < 1, got '-0.1'"),
        (["prepare-isic", "--images", "i", "--masks", "m", "--val-fraction", "1"], "got '1'"),
        (["prepare-polyp", "--kvasir", "k", "--val-fraction", "1.5"], "got '1.5'"),
    ],
)
def test_split_fractions_out_of_range_are_usage_errors(argv, message, tmp_path, capsys, monkeypatch):
    # they had been refused by the split, with exit status 1, after demo-data had written its images
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--output-dir" if argv[0] == "demo-data" else "--output", "out"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_tool_module_runs_with_python_m(tmp_path: Path) -> None:
    images, masks = make_isic_folders(tmp_path, 10)
    output = tmp_path / "lists" / "isic.json"
    command = [sys.executable, "-m", "monai_unets.scripts.prepare_isic", "--images", str(images), "--masks", str(masks)]
    result = subprocess.run(
        [*command, "--output", str(output), "--val-fraction", "0"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "10 ISIC pairs -> training 7, validation 3, test 3" in result.stdout
    # Warnings go to stderr, leaving stdout to the summary line.
    assert "validation list is the test list" in result.stderr and "WARNING" not in result.stdout
    assert json.loads(output.read_text())["counts"] == {"training": 7, "validation": 3, "test": 3}


def test_a_tool_reports_a_file_whose_name_is_not_utf8_on_a_strict_output(tmp_path):
    # bytes of an old Latin-1 archive, held by Python as surrogates; a strict standard output, as Python opens it
    # in a UTF-8 locale other than C.UTF-8
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(tmp_path / "images" / "good.png")
    (tmp_path / "images" / "bad_\udce9.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(tmp_path / "mask.png")
    cases = [{"image": f"images/{name}", "label": "mask.png"} for name in ("good.png", "bad_\udce9.png")]
    (tmp_path / "datalist.json").write_text(json.dumps({"training": cases[:1], "validation": cases}))
    command = [sys.executable, "-m", "monai_unets.scripts.cli", "check-data", "--bundle", "egeunet_skin_lesion"]
    result = subprocess.run(
        [*command, "--dataset-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
    )
    assert result.returncode == 1, result.stderr
    bad = f"BAD  {tmp_path}/images/bad_\\udce9.png"
    assert f"{bad}: cannot read the image file: UnidentifiedImageError" in result.stdout
    assert "1 of 3 cases are bad" in result.stdout


def test_a_tool_whose_reader_stops_early_finishes_its_work_with_its_own_status(tmp_path):
    # `monai-unets demo-data ... | head -0`: the summary line had failed the finished tool ("Exception ignored ...
    # BrokenPipeError", exit status 120)
    output_dir = tmp_path / "demo"
    argv = ["demo-data", "--output-dir", str(output_dir), "--num-images", "3", "--min-size", "32", "--max-size", "40"]
    result = run_with_closed_stdout([sys.executable, "-m", "monai_unets.scripts.cli", *argv])
    assert result.returncode == 0 and "BrokenPipeError" not in result.stderr and "Broken pipe" not in result.stderr
    assert len(json.loads((output_dir / "datalist.json").read_text())["training"]) > 0


def test_every_path_argument_expands_a_tilde_and_refuses_an_empty_path() -> None:
    import argparse
    import re

    from monai_unets.scripts.cli import build_parser, path_option

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    # arguments that name a file or folder, by their metavar or name: "~/data" had made a folder named "~", and ""
    # had written into the current folder
    named = re.compile(r"(^|_)(dir|output|workdir|datalist|models|json|data|write|check)$")
    paths = []
    for command, parser in commands.items():
        for action in parser._actions:
            shipped_or_folder = action.dest == "bundle" and command in ("train", "infer", "evaluate")
            path_like = action.metavar in ("DIR", "FILE", "PATH", "JSON") or named.search(action.dest)
            if action.nargs != 0 and (path_like or shipped_or_folder):
                paths.append((command, action.dest, action.type))
    assert len(paths) >= 25
    assert [(command, name) for command, name, kind in paths if kind is not path_option] == []


def test_help_shows_docstrings_without_their_markup(capsys):
    # the help had shown ``code``, :mod:`names` and ``Example::`` as written for Sphinx
    for command in ("train", "infer", "evaluate", "plan", "check-data"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown = capsys.readouterr().out
        assert "``" not in shown and ":mod:" not in shown and "::\n" not in shown, command
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "``" not in capsys.readouterr().out


def test_an_error_naming_a_path_with_a_line_break_stays_on_its_line(capsys):
    # the name's line break had begun a line that read as the tool's own
    assert main(["plan", "--dataset-dir", "/no/such\nINFO: 9 ok, 0 failed"]) == 1
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "/no/such\\nINFO: 9 ok, 0 failed" in said
