"""A failing run ends with one line that names the problem; the traceback goes to the log file."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from monai_unets.data import DataCheckError
from monai_unets.handlers import explain

from tests.conftest import run_with_closed_stdout

SCRIPT = """
import sys

import pytest
from monai_unets.handlers import report_errors
from monai_unets.data import DataCheckError
report_errors(sys.argv[1])
try:
    raise DataCheckError("/data/x.nii.gz", "label values 3 are not classes 0..2")
except Exception as error:
    raise RuntimeError("Failed to evaluate ConfigExpression") from error
"""


def test_explain_finds_our_message_inside_the_config_wrappers():
    try:
        try:
            raise OSError("low-level read error")
        except OSError as low:
            raise DataCheckError("/data/x.nii.gz", "cannot be read") from low
    except DataCheckError as ours:
        wrapped = RuntimeError("Failed to evaluate ConfigExpression")
        wrapped.__cause__ = ours
    assert explain(wrapped) == "/data/x.nii.gz: cannot be read"
    assert explain(RuntimeError("outer")) == "RuntimeError: outer"


def test_explain_gives_itks_reason_not_its_source_line():
    error = RuntimeError(
        "/src/ITK/Modules/IO/ImageBase/include/itkImageFileReader.hxx:135:\n"
        "ITK ERROR: ImageFileReader(0x55d1c0): Could not create IO object for reading file /data/x.mha"
    )
    assert explain(error) == "RuntimeError: ImageFileReader: Could not create IO object for reading file /data/x.mha"


def test_explain_gives_a_message_of_many_lines_in_one_line_cut_at_its_end():
    # as the reasons of failures.csv and check-data: the whole of it is in the traceback's log
    keys = "\n".join(f"\tencoder.block{i}.weight" for i in range(100))
    line = explain(RuntimeError(f"Error(s) in loading state_dict for UNet:\n\tMissing key(s):\n{keys}"))
    assert line.startswith("RuntimeError: Error(s) in loading state_dict for UNet: Missing key(s): encoder.block0.")
    assert line.endswith(" ...") and len(line) < 600


def test_a_missing_package_of_an_optional_feature_is_named_with_its_extra():
    # `pip install monai-unets` leaves the extras out: its hint had sent a user without mlflow or onnx back to it
    from monai.utils import OptionalImportError, optional_import

    missing, _ = optional_import("a_module_not_installed")
    with pytest.raises(OptionalImportError) as raised:
        missing.start_run
    # what MONAI's MLFlowHandler raises without mlflow (installed here with the test extra)
    line = explain(OptionalImportError(str(raised.value).replace("a_module_not_installed", "mlflow.tracking")))
    # MONAI's message: its first line, without the link and the import's traceback that follow it
    assert line == (
        "OptionalImportError: import mlflow.tracking (No module named 'mlflow.tracking'). -- "
        "pip install 'monai-unets[mlflow]' (an optional feature's packages)."
    )
    wrapped = RuntimeError("Failed to evaluate ConfigExpression")
    wrapped.__cause__ = ModuleNotFoundError("No module named 'onnxscript'", name="onnxscript")
    assert explain(wrapped).endswith("-- pip install 'monai-unets[onnx]' (an optional feature's packages).")
    # a required package: installing the project again brings it
    assert explain(ModuleNotFoundError("No module named 'highdicom'", name="highdicom")).endswith(
        "-- install the missing package (pip install monai-unets brings every required one)."
    )


def test_an_uncaught_error_prints_one_last_line_and_logs_the_traceback(tmp_path):
    log = tmp_path / "logs" / "error.log"
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(log)], capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "ERROR: /data/x.nii.gz: label values 3 are not classes 0..2"
    assert "Traceback" not in result.stderr and len(lines) == 2
    logged = log.read_text()
    assert "Traceback" in logged and "Failed to evaluate ConfigExpression" in logged


def test_a_process_above_rank_zero_logs_its_traceback_to_its_own_file(tmp_path):
    # process 1 of a torchrun job (RANK, set by torchrun); in one shared file the tracebacks of processes failing at
    # once mixed; rank 0 keeps error.log (the test above, without RANK)
    log = tmp_path / "logs" / "error.log"
    environment = {**os.environ, "RANK": "1"}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(log)], capture_output=True, text=True, env=environment)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"full traceback in {log.parent / 'error.rank1.log'}",
        "ERROR: /data/x.nii.gz: label values 3 are not classes 0..2",
    ]
    assert [p.name for p in log.parent.iterdir()] == ["error.rank1.log"]
    assert "Failed to evaluate ConfigExpression" in (log.parent / "error.rank1.log").read_text()


def test_a_name_that_is_not_utf8_reaches_the_screen_and_the_log_escaped(tmp_path):
    # bytes of an old Latin-1 archive, held by Python as surrogates; a strict standard output, as Python opens it
    # in a UTF-8 locale other than C.UTF-8
    script = (
        "import logging, sys\n"
        "from monai_unets.handlers import report_errors\n"
        "report_errors(sys.argv[1])\n"
        "logging.basicConfig(stream=sys.stdout, format='%(message)s')\n"
        "logging.error('case bad_\\udce9 failed')\n"
        "raise ValueError('/in/bad_\\udce9.png: not an image')\n"
    )
    log = tmp_path / "error.log"
    environment = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    result = subprocess.run([sys.executable, "-c", script, str(log)], capture_output=True, text=True, env=environment)
    assert result.returncode == 1
    assert result.stdout == "case bad_\\udce9 failed\n"
    assert result.stderr.strip().splitlines()[-1] == "ERROR: ValueError: /in/bad_\\udce9.png: not an image"
    assert "ValueError: /in/bad_\\udce9.png: not an image" in log.read_text(encoding="utf-8")


def test_control_characters_of_a_name_reach_the_screen_escaped(tmp_path):
    # a name's escape sequence had coloured or cleared the terminal, and its line break had written a line that
    # read as the run's own summary
    script = (
        "import logging, sys\n"
        "from monai_unets.handlers import report_errors\n"
        "report_errors(sys.argv[1])\n"
        "logging.basicConfig(stream=sys.stdout, format='%(levelname)s %(message)s')\n"
        "name = '/in/a\\x1b[2J\\nINFO 9 ok, 0 failed\\u202egnp.png'\n"
        "logging.error('case %s failed:\\n  %s', name, ValueError(name + ': not an image'))\n"
        "raise ValueError(name + ': not an image')\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "error.log")], capture_output=True, text=True)
    assert result.returncode == 1
    name = "/in/a\\x1b[2J\\nINFO 9 ok, 0 failed\\u202egnp.png"
    # the message's own line break stays; the names' are escaped
    assert result.stdout.splitlines() == [
        f"ERROR case {name} failed:",
        f"  {name}: not an image",
    ]
    # the last line is one line, as every error's (explain)
    assert result.stderr.strip().splitlines()[-1] == (
        "ERROR: ValueError: /in/a\\x1b[2J INFO 9 ok, 0 failed\\u202egnp.png: not an image"
    )


def test_refusing_the_input_folder_as_output_writes_no_log_there(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    script = (
        "import sys\n"
        "from monai_unets.data import list_cases\n"
        "from monai_unets.handlers import report_errors\n"
        "report_errors(sys.argv[1] + '/error.log')\n"
        "list_cases('unused', input_dir=sys.argv[1], output_dir=sys.argv[1])\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"ERROR: output folder {tmp_path} is the input folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


ENGINE_SCRIPT = """
import logging
import sys

from ignite.engine import Engine, Events
from monai.handlers import StatsHandler
from monai_unets.handlers import report_errors

logging.basicConfig(level=logging.INFO, stream=sys.stdout)
report_errors(sys.argv[1])
engine = Engine(lambda engine, batch: None)
stats = StatsHandler(iteration_log=False)
print("StatsHandler's log handlers:", len(stats.logger.handlers))
stats.attach(engine)


@engine.on(Events.STARTED)
def load(_):
    raise ValueError("models/model.pt: does not fit the network")


engine.run([0])
"""


def test_an_error_ending_an_engine_run_is_logged_without_its_traceback(tmp_path):
    # MONAI's StatsHandler logs the error with its traceback before re-raising it; only the file keeps that
    log = tmp_path / "error.log"
    result = subprocess.run([sys.executable, "-c", ENGINE_SCRIPT, str(log)], capture_output=True, text=True)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    # MONAI set up StatsHandler's logger as usual (its other lines still print), and its error line stays
    assert "StatsHandler's log handlers: 1" in output
    assert "Exception: models/model.pt: does not fit the network" in output
    assert "Traceback" not in output
    assert result.stderr.strip().splitlines()[-1] == "ERROR: ValueError: models/model.pt: does not fit the network"
    assert "Traceback" in log.read_text()


def test_inference_settings_of_the_2d_bundles_are_checked_at_start():
    from monai.bundle import ConfigParser
    from monai_unets.bundles import bundle_dir
    from monai_unets.handlers.errors import SettingError, check_settings

    for bundle, key, value, message in (
        ("egeunet_skin_lesion", "cpu_threads", "abc", "cpu_threads must be an integer >= 1, or None"),
        ("egeunet_skin_lesion", "cpu_threads", 0, "cpu_threads must be an integer >= 1, or None"),
        ("unetv2_polyp", "runtime", "tensorrt", "runtime must be one of 'torch', 'onnx'"),
    ):
        parser = ConfigParser()
        parser.read_config(str(bundle_dir(bundle) / "configs" / "inference.yaml"))
        check_settings(parser.get_parsed_content("settings"))  # the shipped values pass
        parser[key] = value
        with pytest.raises(SettingError, match=message):
            check_settings(parser.get_parsed_content("settings", instantiate=True, lazy=False))
    check_settings({"cpu_threads": None, "runtime": "onnx"})


@pytest.mark.parametrize("bundle", ["egeunet_skin_lesion", "unetv2_polyp"])
@pytest.mark.parametrize("config", ["train.yaml", "inference.yaml"])
def test_the_2d_bundles_take_one_class_only(bundle, config):
    from monai.bundle import ConfigParser
    from monai_unets.bundles import bundle_dir
    from monai_unets.handlers.errors import SettingError, check_settings

    # binary from end to end: --num_classes 3 had failed every case of an inference, a training at its first step
    parser = ConfigParser()
    parser.read_config(str(bundle_dir(bundle) / "configs" / config))
    check_settings(parser.get_parsed_content("settings"))
    parser["num_classes"] = 3
    with pytest.raises(SettingError, match=r"^num_classes must be 1 in this bundle, got 3: it segments one class"):
        check_settings(parser.get_parsed_content("settings", instantiate=True, lazy=False))
    check_settings({"num_classes": 3})  # a bundle of several classes


@pytest.mark.parametrize("bundle", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_a_ct_training_checks_max_minutes_with_its_settings(bundle):
    from monai.bundle import ConfigParser
    from monai_unets.bundles import bundle_dir
    from monai_unets.handlers.errors import SettingError, check_settings

    parser = ConfigParser()
    parser.read_config(str(bundle_dir(bundle) / "configs" / "train.yaml"))
    for value, augment in ((None, True), (30, False), (60.5, True)):
        parser["max_minutes"] = value
        settings = parser.get_parsed_content("settings", instantiate=True, lazy=False)
        check_settings(settings)
        assert settings["augment"] is augment
    # augment is computed from max_minutes: a wrong value is named, not the comparison that it breaks
    for value, shown in (("null", "'null'"), (0, "0"), (True, "True")):
        parser["max_minutes"] = value
        with pytest.raises(
            SettingError, match=f"^max_minutes must be a number of minutes > 0, or None for no limit, got {shown}"
        ):
            check_settings(parser.get_parsed_content("settings", instantiate=True, lazy=False))
    parser["max_minutes"] = None
    parser["max_minutes_clock"] = "cpu time"
    with pytest.raises(SettingError, match="max_minutes_clock must be one of 'wall', 'cpu', got 'cpu time'"):
        check_settings(parser.get_parsed_content("settings", instantiate=True, lazy=False))


def test_class_names_name_each_class_after_the_background_once():
    from monai_unets.handlers.errors import SettingError, check_settings

    check_settings({"num_classes": 4, "class_names": ["organ", "lesion", "cyst"]})
    check_settings({"num_classes": 3, "class_names": ("organ", "lesion")})  # --class_names organ,lesion
    for names in ("organ", [], ["organ", "organ"], ["organ", ""], ["organ", 2]):
        with pytest.raises(SettingError, match="^class_names must be a list of distinct names, e.g. "):
            check_settings({"class_names": names})
    with pytest.raises(SettingError) as raised:
        check_settings({"num_classes": 4, "class_names": ["pancreas", "tumour"]})
    assert str(raised.value) == (
        "num_classes 4 and class_names ['pancreas', 'tumour'] do not fit: class_names names labels 1 to "
        "num_classes - 1 (0 is the background), 3 names for num_classes 4, got 2; set num_classes to 3 or give 3 "
        "class_names."
    )
    with pytest.raises(SettingError, match=r"0 names for num_classes 1, got 1; set num_classes to 2\.$"):
        check_settings({"num_classes": 1, "class_names": ["lesion"]})


@pytest.mark.parametrize("bundle", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
@pytest.mark.parametrize("configs", [["train.yaml"], ["train.yaml", "evaluate.yaml"]])
def test_a_ct_run_checks_its_classes_against_each_other_at_start(bundle, configs, tmp_path):
    # --num_classes alone had trained a network of 4 classes while the plan saved with its weights kept the
    # dataset's 3 classes and 2 names
    from monai.bundle import ConfigParser
    from monai_unets.bundles import bundle_dir
    from monai_unets.handlers.errors import SettingError, check_settings

    def settings(**overrides: object) -> dict:
        parser = ConfigParser()
        parser.read_config([str(bundle_dir(bundle) / "configs" / c) for c in configs])
        parser.update({"bundle_root": str(tmp_path), "dataset_dir": str(tmp_path), **overrides})
        return parser.get_parsed_content("settings", instantiate=True, lazy=False)

    for overrides, shown in (
        ({"num_classes": 4}, "num_classes 4 and class_names ['pancreas', 'tumour']"),
        ({"class_names": ["organ", "lesion", "cyst"]}, "num_classes 3 and class_names ['organ', 'lesion', 'cyst']"),
    ):
        with pytest.raises(SettingError, match=re.escape(f"{shown} do not fit")):
            check_settings(settings(**overrides))
    check_settings(settings(num_classes=4, class_names=["organ", "lesion", "cyst"]))


def test_explain_says_what_to_do_when_an_output_folder_is_a_file(tmp_path):
    (tmp_path / "out").write_text("x")
    try:
        try:
            os.makedirs(tmp_path / "out")
        except FileExistsError as error:
            raise RuntimeError("Failed to instantiate component 'CaseIsolationHandler'") from error
    except RuntimeError as error:
        message = explain(error)
    assert message.startswith("FileExistsError:") and str(tmp_path / "out") in message
    assert "is an existing file: give another path" in message


def test_a_log_to_a_stdout_without_reader_goes_quiet_and_the_run_goes_on(tmp_path):
    # the bundles' logging.conf logs to stdout; `| head -1` had printed a "--- Logging error ---" traceback for
    # each later line
    script = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO)\n"
        "from monai_unets.handlers import report_errors\n"
        "report_errors(sys.argv[1] + '/error.log')\n"
        "for case in range(20):\n"
        "    logging.info('case %d written', case)\n"
        "print('done', flush=True)\n"
        "logging.warning('last line')\n"
        "open(sys.argv[1] + '/output.txt', 'w').write('all cases')\n"
    )
    result = run_with_closed_stdout([sys.executable, "-c", script, str(tmp_path)])
    assert (result.returncode, result.stderr) == (0, "")
    assert (tmp_path / "output.txt").read_text() == "all cases"


def _fail_writing_to(folder: str) -> str:
    return (
        "import sys\n"
        "from monai_unets.handlers import report_errors\n"
        f"report_errors({folder!r} + '/error.log')\n"
        "try:\n"
        f"    open({folder!r} + '/prediction.png', 'w')\n"
        "except OSError as error:\n"
        "    raise RuntimeError('Failed to instantiate component') from error\n"
    )


def test_an_output_folder_that_is_a_file_gets_two_lines_and_its_traceback_a_spare_file(tmp_path):
    # the error log goes into that folder too: its traceback had been printed, 60 lines, before the line that
    # introduced it
    (tmp_path / "out").write_text("x")
    spare = tmp_path / "tmp"
    spare.mkdir()
    environment = {**os.environ, "TMPDIR": str(spare)}
    command = [sys.executable, "-c", _fail_writing_to(str(tmp_path / "out"))]
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    assert result.returncode == 1
    (saved,) = spare.iterdir()
    assert result.stderr.strip().splitlines() == [
        f"the traceback could not be written to {tmp_path / 'out' / 'error.log'} ([Errno 17] File exists: "
        f"'{tmp_path / 'out'}'); it is in {saved}",
        f"ERROR: NotADirectoryError: [Errno 20] Not a directory: '{tmp_path / 'out' / 'prediction.png'}'",
    ]
    assert "Traceback" in saved.read_text() and "Failed to instantiate component" in saved.read_text()
    # where no file can be written, the traceback is printed, after the line that says so
    no_spare = "import tempfile\ndef refuse(**_):\n    raise PermissionError('read-only')\ntempfile.mkstemp = refuse\n"
    command[2] = no_spare + command[2]
    lines = subprocess.run(command, capture_output=True, text=True, env=environment).stderr.strip().splitlines()
    assert lines[0].startswith("the traceback could not be written to") and lines[0].endswith("here it is:")
    assert lines[2] == "Traceback (most recent call last):" and lines[-1].startswith("ERROR: NotADirectoryError")


def test_an_error_of_a_background_thread_that_ends_the_run_is_reported_once(tmp_path):
    # a writer thread's error raised again by the thread that flushes it (TensorBoard's event writer in a
    # read-only folder): its traceback had followed the run's one-line message as "Exception in thread"
    script = (
        "import sys, threading\n"
        "from monai_unets.handlers import report_errors\n"
        "report_errors(sys.argv[1])\n"
        "failure = []\n"
        "def write():\n"
        "    try:\n"
        "        open('/nonexistent/events.out', 'w')\n"
        "    except OSError as error:\n"
        "        failure.append(error)\n"
        "        raise\n"
        "writer = threading.Thread(target=write, name='writer')\n"
        "writer.start()\n"
        "writer.join()\n"
        "if len(sys.argv) > 2:\n"
        "    raise failure[0]\n"
    )
    log = tmp_path / "error.log"
    result = subprocess.run([sys.executable, "-c", script, str(log), "raise"], capture_output=True, text=True)
    assert result.returncode == 1
    message = "FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/events.out'"
    hint = " -- check the path (dataset_dir, datalist, input_dir, bundle_root)."
    assert result.stderr.strip().splitlines() == [
        f"full traceback in {log}",
        f"ERROR in thread writer: {message}{hint}",
        f"ERROR: {message}{hint}",
    ]
    assert log.read_text().count("Traceback") == 1
    # a thread's error that the run does not end on is reported as it happens, its traceback in the log
    result = subprocess.run([sys.executable, "-c", script, str(log)], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stderr.strip().splitlines() == [
        f"full traceback in {log}",
        f"ERROR in thread writer: {message}{hint}",
    ]


def test_a_process_of_a_job_that_stops_because_rank_zero_did_says_so(tmp_path):
    from tests.distributed import run_script_in_two_processes

    # rank 0 refuses an input while rank 1 waits for it in a collective (as for the output folder's lock): rank 1 had
    # ended on gloo's "Connection closed by peer [127.0.0.1]:4784. This is typically caused by a remote worker
    # crashing. ... GLHF!"
    log = tmp_path / "logs" / "error.log"
    returncodes, outputs = run_script_in_two_processes(
        "import os\nfrom monai_unets.handlers import report_errors\nsys.stderr = sys.stdout\n"
        f"os.environ['RANK'] = str(rank)\nreport_errors({str(log)!r})\n"
        "if rank == 0:\n    raise FileNotFoundError('input folder /data/x does not exist')\ndist.barrier()"
    )
    assert returncodes == [1, 1]
    assert outputs[0].splitlines()[-1].startswith("ERROR: FileNotFoundError: input folder /data/x does not exist")
    assert outputs[1].splitlines()[-1] == (
        "ERROR: another process of this job stopped, and this one with it: that process's ERROR line says why, or, "
        "where it wrote none, torchrun's summary (exitcode -9: it was killed, e.g. for want of memory)."
    )


def test_ctrl_c_ends_with_one_line_and_the_status_of_sigint(tmp_path):
    script = (
        "from monai_unets.handlers import report_errors\n"
        f"report_errors({str(tmp_path / 'error.log')!r})\n"
        "raise KeyboardInterrupt\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    # killed by its own SIGINT, as Python ends on an uncaught KeyboardInterrupt: a shell sees 130
    assert result.returncode == -2
    assert result.stderr.strip() == (
        "stopped (Ctrl-C): every file written so far is complete, none is left half-written."
    )


def test_an_error_raised_while_another_was_handled_is_named_not_the_other():
    # pathlib's mkdir of an output folder under a read-only one first meets FileNotFoundError, then raises
    # PermissionError: the line had named the first, with the hint to check the input paths
    try:
        try:
            raise FileNotFoundError(2, "No such file or directory", "/ro/sub/out")
        except FileNotFoundError:
            raise PermissionError(13, "Permission denied", "/ro/sub")  # noqa: B904 - as pathlib raises it
    except PermissionError as error:
        line = explain(error)
    assert line.startswith("PermissionError: [Errno 13] Permission denied: '/ro/sub'")
    assert "write the output folders" in line


def test_an_output_folder_that_links_to_nothing_is_named_so_and_not_created(tmp_path):
    # a share not mounted: the error log had been written at the link's target, creating its folders
    (tmp_path / "out").symlink_to(tmp_path / "not_mounted" / "predictions")
    spare = tmp_path / "tmp"
    spare.mkdir()
    command = [sys.executable, "-c", _fail_writing_to(str(tmp_path / "out"))]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TMPDIR": str(spare)})
    assert result.returncode == 1
    assert not (tmp_path / "not_mounted").exists()
    target = tmp_path / "not_mounted" / "predictions"
    expected = f"{tmp_path / 'out'} is a link to {target}, which does not exist (a share not mounted?): mount it"
    assert expected in result.stderr.strip().splitlines()[-1]


def test_a_full_disk_gets_its_error_line_and_leaves_no_empty_log(tmp_path):
    # where no file can grow, the hook had failed on asking for the temporary folder again ("Error in
    # sys.excepthook", three tracebacks) and left an empty error.log
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "from monai_unets.handlers import report_errors\n"
        "report_errors(sys.argv[1] + '/error.log')\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
        "with open(sys.argv[1] + '/prediction.nii.gz', 'wb') as f:\n"
        "    f.write(b'x' * 10)\n"
    )
    spare = tmp_path / "tmp"
    spare.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(spare)},
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "Error in sys.excepthook" not in result.stderr
    assert lines[0].startswith("the traceback could not be written to") and lines[0].endswith("here it is:")
    assert lines[-1] == "ERROR: OSError: [Errno 27] File too large"
    assert not (tmp_path / "error.log").exists() and list(spare.iterdir()) == []
