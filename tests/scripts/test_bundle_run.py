"""The bundle commands: monai-unets list, train, infer, evaluate (their checks and the command they run)."""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import subprocess
import sys
import time

import pytest
from monai_unets.bundles import bundle_dir, list_bundles
from monai_unets.scripts.bundle_run import resolve_bundle, run_bundle_process
from monai_unets.scripts.cli import COMMANDS, main

from tests.conftest import run_with_closed_stdout

SKIN = "egeunet_skin_lesion"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: monai-unets {command}")


def test_a_shipped_bundle_runs_from_a_copy_that_is_reused(tmp_path):
    copy = resolve_bundle(SKIN, str(tmp_path / "run"))
    assert (copy / "configs" / "train.yaml").read_bytes() == (bundle_dir(SKIN) / "configs" / "train.yaml").read_bytes()
    (copy / "configs" / "marker").write_text("user edit")
    assert resolve_bundle(SKIN, str(tmp_path / "run")) == copy
    assert (copy / "configs" / "marker").is_file()
    # a bundle folder is used in place
    assert resolve_bundle(str(copy)) == copy


def test_workdir_is_taken_though_a_folder_of_the_bundles_name_is_in_the_current_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    default = resolve_bundle(SKIN)
    assert default == tmp_path / SKIN
    # the user asks for another copy: ./<name> had been used instead, without a word
    assert resolve_bundle(SKIN, "second") == tmp_path / "second"
    assert (tmp_path / "second" / "configs" / "train.yaml").is_file()
    assert resolve_bundle(SKIN) == default


def test_a_copy_of_an_earlier_version_says_so_however_it_is_reached(tmp_path, monkeypatch, caplog):
    import json
    import logging

    monkeypatch.chdir(tmp_path)
    copy = resolve_bundle(SKIN)
    metadata = copy / "configs" / "metadata.json"
    metadata.write_text(json.dumps({**json.loads(metadata.read_text()), "version": "0.0.1"}))
    shipped = json.loads((bundle_dir(SKIN) / "configs" / "metadata.json").read_text())["version"]
    said = f"the bundle copy in {copy} is version 0.0.1, the installed bundle is {shipped}: this run uses the copy's"
    # by name after an upgrade, the copy in ./<name> (the README's way) had been reused without a word
    for workdir in (None, str(copy)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert resolve_bundle(SKIN, workdir) == copy
        assert said in caplog.text and "copy into its models/ the weights to keep" in caplog.text


def test_bad_bundle_arguments_are_errors(tmp_path):
    with pytest.raises(ValueError, match="no bundle folder or shipped bundle named 'nope'"):
        resolve_bundle("nope")
    with pytest.raises(ValueError, match="is not a bundle"):
        resolve_bundle(str(tmp_path))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a bundle"):
        resolve_bundle(SKIN, str(tmp_path / "taken"))


def _dry_run(capsys, *argv: str) -> list[str]:
    assert main([*argv, "--dry-run"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("$ ")
    return shlex.split(line[2:])


@pytest.mark.parametrize(
    "command, configs",
    [("train", ["train.yaml"]), ("infer", ["inference.yaml"]), ("evaluate", ["train.yaml", "evaluate.yaml"])],
)
def test_commands_fill_in_the_bundle_files(command, configs, tmp_path, capsys):
    work = tmp_path / "skin"
    argv = _dry_run(capsys, command, SKIN, "--workdir", str(work), "--dataset_dir", "/data/isic", "--quiet")
    assert argv[:4] == [sys.executable, "-m", "monai.bundle", "run"]
    options = dict(zip(argv[4::2], argv[5::2]))
    files = [str(work / "configs" / name) for name in configs]
    assert options["--config_file"] == (files[0] if len(files) == 1 else json.dumps(files))
    assert options["--meta_file"] == str(work / "configs" / "metadata.json")
    assert options["--logging_file"] == str(work / "configs" / "logging.conf")
    assert options["--bundle_root"] == str(work)
    assert options["--dataset_dir"] == "/data/isic" and options["--quiet"] == "True"


def test_a_dry_run_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = _dry_run(capsys, "train", SKIN, "--workdir", "wd/bund", "--dataset_dir", "/data/isic")
    # the command names the copy it would run from, but the shipped bundle had been copied there
    assert argv[argv.index("--bundle_root") + 1] == str(tmp_path / "wd" / "bund")
    assert list(tmp_path.iterdir()) == []
    # its overrides are still checked, against the shipped bundle's configs
    assert main(["train", SKIN, "--workdir", "wd/bund", "--max_epoch", "2", "--dry-run"]) == 1
    assert list(tmp_path.iterdir()) == []


def test_paths_are_passed_as_typed_with_a_leading_tilde_expanded(tmp_path, capsys, monkeypatch):
    from monai.bundle import ConfigParser

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    work = tmp_path / "runs#1" / "@skin"
    argv = _dry_run(capsys, "infer", SKIN, "--workdir", str(work), "--input_dir=~/scans", "--output_dir", "res#1")
    options = dict(zip(argv[4::2], argv[5::2]))
    # MONAI's config parser had read '#' as '::' (outputs and weights went to res::1) and '@skin' as a reference
    parser = ConfigParser({key[2:]: value for key, value in options.items()})
    assert parser.get_parsed_content("bundle_root") == str(work)
    assert parser.get_parsed_content("output_dir") == "res#1"
    assert parser.get_parsed_content("input_dir") == str(tmp_path / "home" / "scans")


@pytest.mark.parametrize("given", [["--output_dir"], ["--output_dir", ""], ["--output_dir", "--quiet"]])
def test_a_path_key_without_a_path_stops_the_command(given, tmp_path, capsys):
    assert main(["infer", SKIN, "--workdir", str(tmp_path / "w"), *given, "--dry-run"]) == 1
    assert "error: --output_dir needs a path." in capsys.readouterr().err


def test_mlflow_tracking_defaults_to_a_sqlite_file_in_the_bundle(tmp_path, capsys):
    work = tmp_path / "skin"
    argv = _dry_run(capsys, "train", SKIN, "--workdir", str(work), "--tracking", "mlflow")
    options = dict(zip(argv[4::2], argv[5::2]))
    assert options["--tracking"] == "mlflow" and options["--tracking_uri"] == f"sqlite:///{work / 'mlruns.db'}"


def test_the_default_mlflow_store_of_a_bundle_with_a_hash_in_its_path_stays_in_that_bundle(tmp_path, capsys):
    from monai.bundle import ConfigParser

    work = tmp_path / "trk#1"
    argv = _dry_run(capsys, "train", SKIN, "--workdir", str(work), "--tracking", "mlflow")
    options = dict(zip(argv[4::2], argv[5::2]))
    # made from the bundle's path, it had been read with '::' for '#': the store went to a folder trk::1
    parser = ConfigParser({"tracking_uri": options["--tracking_uri"]})
    assert parser.get_parsed_content("tracking_uri") == f"sqlite:///{work / 'mlruns.db'}"


def test_the_command_line_reports_a_typo(tmp_path, capsys):
    assert main(["train", SKIN, "--workdir", str(tmp_path / "w"), "--max_epoch", "2", "--dry-run"]) == 1
    assert "unknown key 'max_epoch' (train.yaml); did you mean 'max_epochs'?" in capsys.readouterr().err


def test_files_the_command_sets_cannot_be_overridden(capsys):
    assert main(["train", SKIN, "--bundle_root", "/elsewhere", "--dry-run"]) == 1
    assert "--bundle_root: set by `monai-unets train`" in capsys.readouterr().err


def test_other_commands_still_reject_unknown_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo-data", "--output-dir", "x", "--max_epochs", "2"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --max_epochs 2" in capsys.readouterr().err


def test_list_shows_every_bundle(capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [b["bundle"] for b in listing["bundles"]] == list_bundles()
    skin = next(b for b in listing["bundles"] if b["bundle"] == SKIN)
    assert skin["network"] == "EGEUNet 2D" and "ISIC" in skin["data"]
    assert {n["network"] for n in listing["networks"]} >= {"EGEUNet", "ClassicUNet", "AttentionGateUNet", "UNetV2"}
    assert list(listing["tasks"]) == ["train", "infer", "evaluate"]


def test_a_bundle_process_killed_by_a_signal_is_reported(capfd):
    status = run_bundle_process([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    # the negative status had reached sys.exit as 247, with no word of what happened
    assert status == 137
    assert "stopped by SIGKILL (as the system's out-of-memory killer does)" in capfd.readouterr().err
    # a training's is no inference's: its last saved epoch is where the same command goes on
    training = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"]
    assert run_bundle_process(training, task="train") == 143
    assert capfd.readouterr().err.strip() == (
        "the bundle process was stopped by SIGTERM: the training goes on after its last saved epoch when the same "
        "command runs again."
    )


def _wrapped_child(tmp_path, body: str, grace_s: float = 10.0) -> tuple[subprocess.Popen, os.PathLike]:
    """A command running a bundle process whose Python ``body`` runs once it has written its pid to the marker
    file, returned with that file once it is there."""
    marker = tmp_path / "child.pid"
    child = f"import os, time\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\n{body}"
    # interrupts as a terminal's foreground job takes them: a shell's background job (a test run started with `&`)
    # ignores SIGINT, and its processes with it
    wrapper = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from monai_unets.scripts.bundle_run import run_bundle_process; "
        f"sys.exit(run_bundle_process([sys.executable, '-c', {child!r}], grace_s={grace_s}))"
    )
    process = subprocess.Popen([sys.executable, "-c", wrapper], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (marker.is_file() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return process, marker


def test_a_stop_signal_reaches_the_bundle_process(tmp_path):
    process, marker = _wrapped_child(tmp_path, "time.sleep(120)")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    # the bundle process had gone on writing outputs after the command was stopped
    assert "stopped by SIGTERM" in process.stderr.read()
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent's end reaches a child on Linux only")
def test_a_killed_command_takes_its_bundle_process_with_it(tmp_path):
    # `kill -9` of `monai-unets infer`: the bundle process had gone on writing, holding the output folder's lock
    # against the run started again
    process, marker = _wrapped_child(tmp_path, "time.sleep(120)")
    pid = int(marker.read_text())
    process.kill()
    process.wait(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the bundle process outlived its killed command")


def test_a_second_interrupt_is_passed_on_and_the_command_ends_with_the_bundle_process(tmp_path):
    # interrupts sent to the command alone (a job runner's, a notebook's): the second had ended the command with a
    # traceback while the bundle process, orphaned, went on with the whole batch
    done = tmp_path / "child.done"
    body = (
        f"try:\n    time.sleep(120)\nexcept KeyboardInterrupt:\n    open({str(done)!r}, 'w').write('stopped')\n"
        "    raise\n"
    )
    process, marker = _wrapped_child(tmp_path, body, grace_s=600)
    process.send_signal(signal.SIGINT)
    # the second interrupt once the first has been handled: two pending ones would be one signal
    assert select.select([process.stderr], [], [], 120)[0], "no word of the first interrupt"
    first_said = process.stderr.readline()
    assert first_said.startswith("interrupted: the bundle process has 600 s to stop"), first_said
    assert process.poll() is None  # the bundle process has its grace period to stop on its own
    process.send_signal(signal.SIGINT)
    status = process.wait(timeout=120)
    assert done.read_text() == "stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(int(marker.read_text()), 0)
    said = process.stderr.read()
    # the command's own word, not a traceback of its wait (the bundle process's own report comes before it)
    assert status == 130 and "subprocess.py" not in said and said.strip().endswith("failures.csv does not list them.")


def test_a_reader_that_stops_early_ends_the_output_not_the_bundle_process(tmp_path):
    # `monai-unets infer ... | head -1`: the bundle process's log lines before its config's initialize (MONAI's
    # own) had each printed a "--- Logging error ---" traceback
    marker = tmp_path / "outputs.txt"
    child = (
        "import logging, sys; logging.basicConfig(stream=sys.stdout); "
        "[logging.warning('case %d written', case) for case in range(2000)]; "
        f"open({str(marker)!r}, 'w').write('all cases')"
    )
    wrapper = (
        "import sys; from monai_unets.scripts.bundle_run import run_bundle_process; "
        f"sys.exit(run_bundle_process([sys.executable, '-c', {child!r}]))"
    )
    result = run_with_closed_stdout([sys.executable, "-c", wrapper])
    assert (result.returncode, result.stderr) == (0, "")
    assert marker.read_text() == "all cases"


def test_a_finished_run_keeps_its_status_when_the_reader_of_its_output_has_gone(tmp_path):
    # the line saying where the results are had ended a successful run with
    # "monai-unets: error: [Errno 32] Broken pipe" and exit status 1
    script = (
        "import sys\n"
        "from monai_unets.scripts import bundle_run\n"
        "from monai_unets.scripts.cli import main\n"
        "bundle_run.run_bundle_process = lambda command, **_: 0\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["infer", SKIN, "--workdir", str(tmp_path / "skin"), "--input_dir", "in", "--output_dir", "out"]
    result = run_with_closed_stdout([sys.executable, "-c", script, *argv])
    assert result.returncode == 0 and "Broken pipe" not in result.stderr
