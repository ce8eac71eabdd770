"""Override keys are checked against the bundle configs, by the commands and in plain monai.bundle runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from monai.bundle import ConfigParser
from monai_unets.bundles import bundle_dir
from monai_unets.bundles.overrides import (
    check_command_line,
    check_overrides,
    expand_path,
    literal_path,
    parse_overrides,
    path_argument,
)
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
    # a handler's flag ending in _log is not a path: it still takes no value, and False stays the boolean
    assert path_argument("handlers#3#iteration_log", "False") == "False"
    assert parse_overrides(["--handlers#3#iteration_log", "--flag="]) == [
        ("handlers#3#iteration_log", "True"),
        ("flag", ""),
    ]


@pytest.mark.parametrize(
    "tokens",
    [["--output_dir"], ["--output_dir", "--quiet"], ["--output_dir", ""], ["--output_dir="], ["--input_dir", " "]],
)
def test_a_path_key_without_a_path_is_an_error(tokens):
    # `--output_dir "$OUT"` with OUT unset: the run had written into a folder named True, or the current one
    with pytest.raises(ValueError, match=f"^{tokens[0].partition('=')[0]} needs a path.$"):
        parse_overrides(tokens)


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
    train = str(bundle_dir(SKIN) / "configs" / "train.yaml")
    typo = ["--config_file", train, "--max_epoch", "2"]
    # the typo is refused where the check applies, so each call below passes for the reason named
    with pytest.raises(SystemExit, match="unknown key 'max_epoch'"):
        check_command_line([MONAI_RUN, "run", *typo])
    check_command_line(["/usr/bin/monailabel", "run", *typo])
    check_command_line([MONAI_RUN, "verify_metadata", *typo])
    # an args file may hold keys the command line completes: MONAI merges them, the check cannot see them
    check_command_line([MONAI_RUN, "run", "--args_file", "args.json", *typo])


def test_a_plain_monai_bundle_run_stops_on_a_typo(tmp_path):
    configs = bundle_dir(SKIN) / "configs"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(configs / "train.yaml")]
    command += ["--bundle_root", str(tmp_path), "--dataset_dir", str(tmp_path), "--max_epoch", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == "python -m monai.bundle run: error: unknown key 'max_epoch' (train.yaml); did you mean 'max_epochs'?"


def test_an_override_of_none_reaches_the_config(tmp_path):
    import fire

    # MONAI's run leaves out an override that reads as None: --cpu_threads None had kept the config's 1, and a
    # threshold set to None had stayed, merging a multi-class mask's classes
    overrides = {"cpu_threads": "None", "postprocessing#transforms#2#threshold": "None", "output_dir": "None"}
    command = bundle_command(Path("b"), ["inference.yaml"], overrides)
    received = fire.Fire(lambda **kwargs: kwargs, command=command[command.index("run") + 1 :])
    parser = ConfigParser(ConfigParser.load_config_files(str(bundle_dir(SKIN) / "configs" / "inference.yaml")))
    parser.update({k: v for k, v in received.items() if k not in ("meta_file", "config_file", "logging_file")})
    assert parser.get_parsed_content("cpu_threads") is None
    assert parser.get_parsed_content("postprocessing#transforms#2#threshold") is None
    assert parser.get_parsed_content("output_dir") == "None"  # a path: a folder of that name
    # a plain run would drop it: it stops, saying how to give it
    configs = bundle_dir(SKIN) / "configs"
    argv = [MONAI_RUN, "run", "--config_file", str(configs / "inference.yaml"), "--cpu_threads", "None"]
    with pytest.raises(SystemExit, match=r"--cpu_threads None: python -m monai.bundle run leaves out an override of"):
        check_command_line(argv)
    check_command_line(argv[:-1] + ["$None"])


FOLDERS = ["2024", "1e3", "out,x", "-scans", '"quoted"', "True", "None", "[1]", "/data/ct 1", "res#1", "@eaDir",
           "$out", "%out", "a@::b", "it's #\\", "ct é 中文 😀 @x %y"]  # fmt: skip


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_path_reaches_the_config_as_typed(folder):
    import fire

    # the monai-unets commands' overrides, read the way `python -m monai.bundle run` reads its arguments, and then
    # its config parser (MONAI's ConfigWorkflow updates the config with them)
    overrides = {"output_dir": folder, "network_def#cache_dir": folder, "max_epochs": "2"}
    command = bundle_command(Path("b") / folder, ["inference.yaml"], overrides)
    received = fire.Fire(lambda **kwargs: kwargs, command=command[command.index("run") + 1 :])
    parser = ConfigParser(ConfigParser.load_config_files(str(bundle_dir(SKIN) / "configs" / "inference.yaml")))
    parser.update({k: v for k, v in received.items() if k not in ("meta_file", "config_file", "logging_file")})
    assert parser.get_parsed_content("output_dir") == folder
    assert parser.get_parsed_content("network_def#cache_dir") == folder
    # made absolute once, as every output of the run
    assert parser.get_parsed_content("failure_log") == os.path.abspath(os.path.join(folder, "failures.csv"))
    assert parser.get_parsed_content("onnx_path") == os.path.join("b", folder, "models", "model.onnx")
    assert received["max_epochs"] == 2  # other values keep their Python reading
    assert path_argument("output_dir", "scans") == "scans"  # plain names stay as typed
    assert literal_path("/data/ct 1") == "/data/ct 1"


def test_a_leading_tilde_of_a_path_is_the_home_folder():
    assert expand_path("input_dir", "~/scans") == os.path.join(os.path.expanduser("~"), "scans")
    assert expand_path("datalist", "a/~b") == "a/~b" and expand_path("run_name", "~x") == "~x"


@pytest.mark.parametrize(
    "value, problem, given",
    [
        ("2024", "read as the int 2024, not as a path", "\"'2024'\""),
        ("a,b", "read as the tuple", "\"'a,b'\""),
        ("-scans", "a value starting with '-' is taken for an option", "\"'-scans'\""),
        (
            "res#1",
            "MONAI's config parser reads '#' as its id separator, and the path would be res::1",
            "'$\"res\\x231\"'",
        ),
        ("~/scans", "'~' is not expanded here", os.path.expanduser("~/scans")),
        # a relative id after the first character: MONAI had made the path a%b without a word
        (
            "a%::b",
            "MONAI's config parser reads '%::' and '@::' as relative ids, and the path would be a%b",
            "'$\"a\\x25::b\"'",
        ),
        ("a@::b", "MONAI's config parser reads '%::' and '@::' as relative ids, and the path would be a@b", None),
        # '#' first becomes '::', which after '%' is a relative id too (the message had named a%::b)
        ("a%#b", "MONAI's config parser reads '#' as its id separator, and the path would be a%b", None),
        (
            "@in",
            "MONAI's config parser reads '@in' as a reference to a config key, and there is no key 'in'",
            "'$\"\\x40in\"'",
        ),
        (
            "$in",
            "MONAI's config parser reads a value starting with '$' as a Python expression, and this one is not Python "
            "(invalid syntax)",
            "'$\"$in\"'",
        ),
        (
            "$scans",
            "MONAI's config parser reads a value starting with '$' as a Python expression, and this one uses 'scans', "
            "which is not defined",
            "'$\"$scans\"'",
        ),
        (
            "$os.path.join(@dataset_dirr, 'x')",
            "MONAI's config parser reads '@dataset_dirr' as a reference to a config key, and there is no key "
            "'dataset_dirr'",
            None,
        ),
    ],
)
def test_a_plain_run_names_a_path_it_would_misread(value, problem, given):
    configs = bundle_dir(SKIN) / "configs"
    argv = [MONAI_RUN, "run", "--config_file", str(configs / "inference.yaml"), "--output_dir", value]
    with pytest.raises(SystemExit) as stop:
        check_command_line(argv)
    assert str(stop.value).startswith(f"python -m monai.bundle run: error: --output_dir {value}: {problem}")
    if given is not None:
        assert f"; give it as --output_dir {given} (the monai-unets commands" in str(stop.value)
    check_command_line(argv[:-1] + [path_argument("output_dir", expand_path("output_dir", value))])  # as it says


@pytest.mark.parametrize("folder, read", [("res#1", "res::1"), ("a%::b", "a%b"), ("a@::b", "a@b"), ("a%#b", "a%b")])
def test_the_path_a_plain_run_names_is_the_one_monai_would_use(folder, read):
    parser = ConfigParser(ConfigParser.load_config_files(str(bundle_dir(SKIN) / "configs" / "inference.yaml")))
    parser.update({"output_dir": folder})
    assert parser.get_parsed_content("output_dir") == read
    argv = [MONAI_RUN, "run", "--config_file", str(bundle_dir(SKIN) / "configs" / "inference.yaml")]
    with pytest.raises(SystemExit, match=f"the path would be {read};"):
        check_command_line(argv + ["--output_dir", folder])


def test_a_plain_run_stops_on_a_path_key_without_a_path():
    argv = [MONAI_RUN, "run", "--config_file", str(bundle_dir(SKIN) / "configs" / "inference.yaml"), "--output_dir"]
    for tail in ([], [""], ["--quiet"]):
        with pytest.raises(SystemExit, match="^python -m monai.bundle run: error: --output_dir needs a path.$"):
            check_command_line(argv + tail)
    # MONAI's own references and expressions that the configs resolve stay what they are
    check_command_line(argv + ["@bundle_root"])
    check_command_line(argv + ["$os.path.join(@bundle_root, 'out')"])
    check_command_line(argv + ["$os.path.join(@bundle_root, @_meta_#version)"])
