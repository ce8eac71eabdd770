"""Override keys are checked against the bundle configs, by the commands and in plain monai.bundle runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from monai_unets.bundles import bundle_dir
from monai_unets.bundles.overrides import check_command_line, check_overrides, parse_overrides, path_argument
from monai_unets.scripts.bundle_run import bundle_command

SKIN = "egeunet_skin_lesion"
MONAI_RUN = str(Path("/env/lib/monai/bundle/__main__.py"))


def _train_configs(name: str = SKIN) -> list[Path]:
    return [bundle_dir(name) / "configs" / "train.yaml"]


def test_parse_overrides():
    tokens = ["--max_epochs", "2", "--amp=false", "--intensity_min", "-87", "--patch_size", "[32, 32, 32]", "--x"]
    assert parse_overrides(tokens) == [
        ("max_epochs", "2"),
        ("amp", "false"),
        ("intensity_min", "-87"),
        ("patch_size", "[32, 32, 32]"),
        ("x", "True"),
    ]
    with pytest.raises(ValueError, match="'2'"):
        parse_overrides(["2"])


def test_a_typo_names_the_closest_key():
    with pytest.raises(ValueError, match=r"unknown key 'max_epoch' \(train.yaml\); did you mean 'max_epochs'\?"):
        check_overrides(_train_configs(), ["max_epoch"])
    with pytest.raises(ValueError, match="did you mean 'train#trainer#max_epochs'"):
        check_overrides(_train_configs(), ["train#trainer#max_epoch"])
    with pytest.raises(ValueError, match="did you mean 'network_def#deep_supervision'"):
        check_overrides(_train_configs(), ["network_def#deep_supervison"])
    with pytest.raises(ValueError, match="unknown key 'zzzz'"):
        check_overrides(_train_configs(), ["zzzz"])


def test_known_keys_pass():
    keys = ["max_epochs", "dataset_dir", "train#dataloader#num_workers", "train::trainer::amp", "run_id", "quiet"]
    check_overrides(_train_configs(), keys)
    # a constructor argument the config leaves at its default
    check_overrides(_train_configs(), ["train#trainer#epoch_length", "network_def#spatial_dims"])
    # evaluate.yaml's own keys, on top of train.yaml
    check_overrides(_train_configs() + [bundle_dir(SKIN) / "configs" / "evaluate.yaml"], ["eval_dir"])


def test_tracking_settings_are_keys_only_with_tracking():
    with pytest.raises(ValueError, match="tracking_uri"):
        check_overrides(_train_configs(), ["tracking_uri"])
    check_overrides(_train_configs(), ["tracking_uri", "experiment_name"], tracking=True)


def test_the_command_line_of_a_bundle_run_is_checked():
    configs = bundle_dir(SKIN) / "configs"
    merged = str([str(configs / "train.yaml"), str(configs / "evaluate.yaml")])
    with pytest.raises(SystemExit, match="unknown key 'max_epoch' \\(train.yaml\\); did you mean 'max_epochs'"):
        check_command_line(
            [MONAI_RUN, "run", "training", "--config_file", str(configs / "train.yaml"), "--max_epoch", "2"]
        )
    with pytest.raises(SystemExit, match="did you mean 'eval_dir'"):
        check_command_line([MONAI_RUN, "run", "--config_file", merged, "--eval_dirr", "x"])
    # comma-separated files, metadata keys and known keys pass
    check_command_line([MONAI_RUN, "run", "--config_file", f"{configs / 'train.yaml'},{configs / 'evaluate.yaml'}",
                        "--eval_dir", "x", "--_meta_#version", "9"])  # fmt: skip


def test_other_programs_and_args_files_are_left_alone():
    check_command_line(["/usr/bin/monailabel", "start_server", "--max_epoch", "2"])
    check_command_line([MONAI_RUN, "run", "--args_file", "args.json", "--max_epoch", "2"])


def test_a_plain_monai_bundle_run_stops_on_a_typo(tmp_path):
    configs = bundle_dir(SKIN) / "configs"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(configs / "train.yaml")]
    command += ["--bundle_root", str(tmp_path), "--dataset_dir", str(tmp_path), "--max_epoch", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == "python -m monai.bundle run: error: unknown key 'max_epoch' (train.yaml); did you mean 'max_epochs'?"


@pytest.mark.parametrize("folder", ["2024", "1e3", "out,x", "-scans", '"quoted"', "True", "None", "[1]", "/data/ct 1"])
def test_a_path_reaches_the_config_as_typed(folder):
    import fire

    # the monai-unets commands' overrides, read the way `python -m monai.bundle run` reads its arguments
    overrides = {"output_dir": folder, "network_def#cache_dir": folder, "max_epochs": "2"}
    command = bundle_command(Path("b"), ["inference.yaml"], overrides)
    received = fire.Fire(lambda **kwargs: kwargs, command=command[command.index("run") + 1 :])
    assert received["output_dir"] == folder and received["network_def#cache_dir"] == folder
    assert received["max_epochs"] == 2  # other values keep their Python reading
    assert path_argument("output_dir", "scans") == "scans"  # plain names stay as typed


@pytest.mark.parametrize(
    "value, problem",
    [
        ("2024", "read as the int 2024, not as a path"),
        ("a,b", "read as the tuple"),
        ("-scans", "a value starting with '-' is taken for an option"),
    ],
)
def test_a_plain_run_names_a_path_it_would_misread(value, problem):
    configs = bundle_dir(SKIN) / "configs"
    argv = [MONAI_RUN, "run", "--config_file", str(configs / "inference.yaml"), "--output_dir", value]
    with pytest.raises(SystemExit, match=f"--output_dir {value}: {problem}.*--output_dir \"'"):
        check_command_line(argv)
    check_command_line(argv[:-1] + [repr(value)])  # quoted for Python, as the message says
