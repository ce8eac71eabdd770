from __future__ import annotations

import contextlib
import csv
import errno
import os

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.handlers import MeanDice, from_engine
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    SaveImaged,
    ScaleIntensityd,
)
from monai_unets.data import AtomicPILWriter, CaseDataset, case_output_name
from monai_unets.handlers import CaseIsolationHandler, CaseMetricsWriter, EvaluationReport
from monai_unets.handlers.case_isolation import RUN_LOCK
from PIL import Image


class _DiskFullFor(AtomicPILWriter):
    """Writes PNGs, except for files whose name holds "full": the disk fills up while writing them."""

    def write(self, filename, verbose=True, **kwargs):
        if "full" in str(filename):
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(filename, verbose=verbose, **kwargs)


def _pair(folder, name, size=(12, 16), label_size=None, rgb=False):
    rng = np.random.default_rng(len(name))
    shape = (*size, 3) if rgb else size
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(folder / f"{name}.png")
    label = (rng.random(label_size or size) > 0.5).astype(np.uint8) * 255
    Image.fromarray(label).save(folder / f"{name}_label.png")
    return {"image": str(folder / f"{name}.png"), "label": str(folder / f"{name}_label.png")}


def save_masks(out_dir):
    """Writes each prediction as ``<case>_seg.png``; the disk is full for a case named "full"."""
    return SaveImaged(
        "pred",
        output_dir=out_dir,
        output_postfix="seg",
        output_ext=".png",
        separate_folder=False,
        output_name_formatter=case_output_name,
        writer=_DiskFullFor,
        scale=255,
        print_log=False,
    )


def _evaluated(tmp_path, failure_log, *handlers):
    """An evaluator run over good cases and cases that fail in every stage, with ``handlers`` after the isolation
    and the metrics table; it has not concluded."""
    data = tmp_path / "data"
    data.mkdir()
    cases = [
        _pair(data, "good0"),
        _pair(data, "rgb", rgb=True),  # three channels for a one-channel network: fails in the network
        _pair(data, "good1"),
        _pair(data, "full"),  # its mask cannot be written
        _pair(data, "mismatch", label_size=(10, 16)),  # label and image differ in size: the metric fails
        _pair(data, "good2"),
    ]
    corrupt = data / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    cases.insert(3, {"image": str(corrupt), "label": cases[0]["label"]})
    keys = ["image", "label"]
    preprocessing = Compose(
        [
            LoadImaged(keys, reader="PILReader", image_only=True),
            EnsureChannelFirstd(keys, channel_dim="no_channel"),
            ScaleIntensityd(keys),
        ]
    )
    postprocessing = Compose(
        [
            Activationsd("pred", sigmoid=True),
            AsDiscreted("pred", threshold=0.5),
            save_masks(tmp_path / "out"),
        ]
    )
    torch.manual_seed(0)
    isolation = CaseIsolationHandler(failure_log)
    evaluator = SupervisedEvaluator(
        device="cpu",
        val_data_loader=DataLoader(CaseDataset(cases, preprocessing), batch_size=1, num_workers=0),
        network=torch.nn.Conv2d(1, 1, 3, padding=1),
        postprocessing=postprocessing,
        # the first metric works on any case; the second fails on "mismatch" after the first took it in
        key_val_metric={"self_dice": MeanDice(output_transform=from_engine(["pred", "pred"]))},
        additional_metrics={"dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
        val_handlers=[isolation, CaseMetricsWriter(tmp_path / "eval"), *handlers],
    )
    evaluator.run()
    return evaluator, isolation


@pytest.fixture
def run(tmp_path):
    evaluator, isolation = _evaluated(tmp_path, tmp_path / "out" / "failures.csv")
    return {"evaluator": evaluator, "isolation": isolation, "out": tmp_path / "out", "eval": tmp_path / "eval"}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_failing_stage_is_reported_and_the_good_cases_get_their_outputs(run):
    with pytest.raises(SystemExit):
        run["isolation"].conclude()
    stages = {row["case"]: row["stage"] for row in _rows(run["out"] / "failures.csv")}
    assert stages == {
        "rgb": "inference",
        "corrupt": "reading",
        "full": "writing (SaveImaged)",
        "mismatch": "metrics",
    }
    errors = {row["case"]: row["error"] for row in _rows(run["out"] / "failures.csv")}
    assert "No space left on device" in errors["full"]
    written = sorted(p.name for p in run["out"].glob("*_seg.png"))
    # "mismatch" failed in its metrics, after its mask was written
    assert written == ["good0_seg.png", "good1_seg.png", "good2_seg.png", "mismatch_seg.png"]


def test_metrics_cover_exactly_the_cases_that_succeeded(run):
    details = run["evaluator"].state.metric_details
    assert len(details["self_dice"]) == len(details["dice"]) == 3
    rows = _rows(run["eval"] / "metrics_per_case.csv")
    assert [row["case"].rsplit("/", 1)[-1] for row in rows] == ["good0.png", "good1.png", "good2.png"]
    mean = float(np.mean([float(row["dice"]) for row in rows]))
    assert run["evaluator"].state.metrics["dice"] == pytest.approx(mean, abs=1e-6)


def test_the_evaluation_report_counts_and_lists_the_failed_cases(tmp_path):
    # the report is written when the evaluator ends, before conclude() writes the failure log it reads
    _, isolation = _evaluated(tmp_path, tmp_path / "eval" / "failures.csv", EvaluationReport(tmp_path / "eval"))
    with pytest.raises(SystemExit):
        isolation.conclude()
    report = (tmp_path / "eval" / "report.html").read_text()
    assert "3 cases evaluated, 4 failed." in report
    for name in ("rgb", "corrupt", "full", "mismatch"):
        assert f"{name}.png" in report


def test_conclude_exits_with_the_summary_when_a_case_failed(run):
    with pytest.raises(SystemExit) as exit_info:
        run["isolation"].conclude()
    summary = str(exit_info.value.code)
    assert summary.startswith("7 case(s): 3 ok, 4 failed")
    assert str(run["out"] / "failures.csv") in summary


def test_conclude_returns_when_every_case_succeeded(tmp_path):
    isolation = CaseIsolationHandler(tmp_path / "failures.csv")
    evaluator = SupervisedEvaluator(
        device="cpu",
        val_data_loader=DataLoader([{"image": torch.zeros(1, 4, 4)}] * 2, batch_size=1),
        network=torch.nn.Identity(),
        val_handlers=[isolation],
    )
    evaluator.run()
    # where the outputs are: a bundle run says it nowhere else
    assert isolation.conclude() == f"2 case(s): 2 ok, 0 failed; outputs in {isolation.failure_log.parent}"
    assert _rows(tmp_path / "failures.csv") == []


def test_batches_of_several_cases_are_refused(tmp_path):
    evaluator = SupervisedEvaluator(
        device="cpu", val_data_loader=DataLoader([{"image": torch.zeros(1, 4, 4)}] * 2, batch_size=2), network=None
    )
    with pytest.raises(ValueError, match=r"dataloader#batch_size\) must be 1, not 2"):
        CaseIsolationHandler(tmp_path / "failures.csv").attach(evaluator)
    # refused before any case, the run leaves no report, and the folder to the next run
    assert list(tmp_path.iterdir()) == []
    CaseIsolationHandler(tmp_path / "failures.csv")


def test_a_run_in_which_every_case_fails_still_ends_with_its_summary(tmp_path):
    missing = [{"image": str(tmp_path / f"missing{i}.png"), "label": str(tmp_path / "x.png")} for i in range(2)]
    isolation = CaseIsolationHandler(tmp_path / "failures.csv")
    evaluator = SupervisedEvaluator(
        device="cpu",
        val_data_loader=DataLoader(CaseDataset(missing, LoadImaged(["image", "label"])), batch_size=1),
        network=torch.nn.Identity(),
        key_val_metric={"dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
        val_handlers=[isolation, CaseMetricsWriter(tmp_path / "eval")],
    )
    evaluator.run()
    with pytest.raises(SystemExit, match="2 case\\(s\\): 0 ok, 2 failed"):
        isolation.conclude()
    assert [row["stage"] for row in _rows(tmp_path / "failures.csv")] == ["reading", "reading"]


class _WriteNote:
    """A second writer: ``<case>_note.txt``, failing for the case named in ``fail_for``."""

    def __init__(self, out_dir, fail_for=None):
        self.out_dir, self.fail_for = out_dir, fail_for

    def output_paths(self, name):
        return [self.out_dir / f"{name}_note.txt"]

    def __call__(self, data):
        name = data["pred"].meta["case_name"]
        if name == self.fail_for:
            raise OSError(errno.EACCES, "Permission denied")
        self.output_paths(name)[0].write_text("this run")
        return data


def _run_writing_two_outputs(tmp_path, cases, fail_for=None):
    out = tmp_path / "out"
    preprocessing = Compose([LoadImaged("image", reader="PILReader", image_only=True), EnsureChannelFirstd("image")])
    postprocessing = Compose([AsDiscreted("pred", threshold=0.5), save_masks(out), _WriteNote(out, fail_for)])
    isolation = CaseIsolationHandler(out / "failures.csv", outputs=postprocessing)
    evaluator = SupervisedEvaluator(
        device="cpu",
        val_data_loader=DataLoader(CaseDataset(cases, preprocessing), batch_size=1, num_workers=0),
        network=torch.nn.Identity(),
        postprocessing=postprocessing,
        val_handlers=[isolation],
    )
    evaluator.run()
    with contextlib.suppress(SystemExit):
        isolation.conclude()
    return {row["case"]: row["stage"] for row in _rows(out / "failures.csv")}


def test_a_failed_case_loses_the_outputs_an_earlier_run_left_and_keeps_this_runs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    cases = [{"image": _pair(data, name)["image"]} for name in ("good", "unreadable", "late")]
    assert _run_writing_two_outputs(tmp_path, cases) == {}
    out = tmp_path / "out"
    (out / "unreadable_seg_by_hand.png").write_bytes(b"a user's own file")
    earlier = sorted(out.iterdir())
    for path in earlier:  # an earlier run, a minute ago
        os.utime(path, (path.stat().st_atime - 60, path.stat().st_mtime - 60))

    late_mask_before = (out / "late_seg.png").stat().st_mtime
    (data / "unreadable.png").write_bytes(b"damaged since")
    stages = _run_writing_two_outputs(tmp_path, cases, fail_for="late")
    assert stages == {"unreadable": "reading", "late": "postprocessing (_WriteNote)"}
    left = sorted(p.name for p in out.iterdir() if p.name not in ("failures.csv", RUN_LOCK))
    # "unreadable" keeps nothing of the earlier run; "late" keeps the mask this run wrote before its note failed
    assert left == ["good_note.txt", "good_seg.png", "late_seg.png", "unreadable_seg_by_hand.png"]
    assert (out / "late_seg.png").stat().st_mtime > late_mask_before + 30


def test_outputs_an_earlier_run_left_for_cases_this_one_does_not_have_are_named(tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    cases = [{"image": _pair(data, name)["image"]} for name in ("a", "b", "c")]
    _run_writing_two_outputs(tmp_path, cases)
    for path in (tmp_path / "out").iterdir():  # an earlier run, a minute ago
        os.utime(path, (path.stat().st_atime - 60, path.stat().st_mtime - 60))
    (tmp_path / "out" / "notes_by_hand.txt").write_text("not named as an output")
    with caplog.at_level("WARNING"):
        _run_writing_two_outputs(tmp_path, cases[:1])  # the same folder, other inputs
    assert "4 file(s) in the output folder are named as this run's outputs but were not written by it" in caplog.text
    assert "(b_note.txt, b_seg.png, c_note.txt, ...), an earlier run's" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        _run_writing_two_outputs(tmp_path / "again", cases)
    assert "not written by it" not in caplog.text


def test_names_that_are_not_utf8_get_their_outputs_and_their_report_rows(tmp_path):
    # bytes of an old Latin-1 archive, which Python holds as surrogates
    data = tmp_path / "data"
    data.mkdir()
    cases = [_pair(data, "a_good"), _pair(data, "latin1_\udce9t\udce9"), _pair(data, "z_good")]
    corrupt = data / "bad_\udce9.png"
    corrupt.write_bytes(b"not a png")
    cases.insert(2, {"image": str(corrupt), "label": cases[0]["label"]})
    keys = ["image", "label"]
    preprocessing = Compose(
        [LoadImaged(keys, reader="PILReader", image_only=True), EnsureChannelFirstd(keys, channel_dim="no_channel")]
    )
    isolation = CaseIsolationHandler(tmp_path / "out" / "failures.csv")
    evaluator = SupervisedEvaluator(
        device="cpu",
        val_data_loader=DataLoader(CaseDataset(cases, preprocessing), batch_size=1, num_workers=0),
        network=torch.nn.Identity(),
        postprocessing=Compose([AsDiscreted("pred", threshold=100), save_masks(tmp_path / "out")]),
        key_val_metric={"dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
        val_handlers=[isolation, CaseMetricsWriter(tmp_path / "eval")],
    )
    evaluator.run()
    with pytest.raises(SystemExit):
        isolation.conclude()
    written = sorted(os.listdir(os.fsencode(tmp_path / "out")))
    assert written == [b"a_good_seg.png", b"failures.csv", b"latin1_\xe9t\xe9_seg.png", b"z_good_seg.png"]
    # the reports stay UTF-8 for the tools that read them, the name escaped
    with open(tmp_path / "out" / "failures.csv", newline="", encoding="utf-8") as f:
        assert [(row["case"], row["stage"]) for row in csv.DictReader(f)] == [("bad_\\udce9", "reading")]
    with open(tmp_path / "eval" / "metrics_per_case.csv", newline="", encoding="utf-8") as f:
        assert [row["case"].rsplit("/", 1)[-1] for row in csv.DictReader(f)][1] == "latin1_\\udce9t\\udce9.png"


def test_a_second_run_into_a_folder_another_run_writes_to_stops_at_start(tmp_path):
    import subprocess
    import sys

    from monai_unets.data.medical_io import OutputFolderError

    out = tmp_path / "out"
    holder = (
        "import sys, time; from monai_unets.handlers import CaseIsolationHandler; "
        f"CaseIsolationHandler({str(out / 'failures.csv')!r}); print('running', flush=True); time.sleep(120)"
    )
    other = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "running"
        (out / "failures.csv").write_text("case,file,stage,error\nbad,bad.png,reading,damaged\n")
        with pytest.raises(OutputFolderError, match="another run is writing its outputs into this folder"):
            CaseIsolationHandler(out / "failures.csv")
        # the running run's report had been emptied by the second one's start
        assert "bad.png" in (out / "failures.csv").read_text()
    finally:
        other.kill()
        other.wait()
    CaseIsolationHandler(out / "failures.csv")  # the folder is free once that run has ended


def test_every_process_of_a_job_stops_at_start_when_another_run_holds_the_folder(tmp_path):
    from monai_unets.data.atomic import hold_folder, release_folder

    from tests.distributed import run_script_in_two_processes

    out = tmp_path / "out"
    assert hold_folder(out, RUN_LOCK)  # the other run
    try:
        returncodes, outputs = run_script_in_two_processes(
            "from monai_unets.handlers import CaseIsolationHandler; "
            "from monai_unets.data.medical_io import OutputFolderError\n"
            f"try:\n    CaseIsolationHandler({str(out / 'failures.csv')!r})\n"
            "except OutputFolderError as error:\n    print('refused:', error, flush=True); raise\n"
            "print('built', flush=True)"
        )
    finally:
        release_folder(out, RUN_LOCK)
    assert returncodes == [1, 1]
    assert outputs[0].startswith(f"refused: {out}: another run is writing its outputs into this folder")
    assert outputs[1] == ""  # rank 0 alone says why
    assert list(out.iterdir()) == []


def test_a_run_refused_for_a_held_folder_writes_no_error_log_there(tmp_path):
    import subprocess
    import sys

    from monai_unets.data.atomic import hold_folder, release_folder

    out = tmp_path / "out"
    assert hold_folder(out, RUN_LOCK)  # the other run
    # as a bundle's initialize and its handlers do: the error log would go into the other run's folder
    refused = (
        "from monai_unets.handlers import CaseIsolationHandler, report_errors; "
        f"report_errors({str(out / 'error.log')!r}); CaseIsolationHandler({str(out / 'failures.csv')!r})"
    )
    try:
        result = subprocess.run([sys.executable, "-c", refused], capture_output=True, text=True, timeout=120)
    finally:
        release_folder(out, RUN_LOCK)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    # the holder named: a MONAI Label server whose training failed holds its bundle until it restarts
    assert line.startswith(
        f"ERROR: {out}: another run is writing its outputs into this folder; wait for it to end, or give this one "
        f"another output folder. It is held by process {os.getpid()} ("
    ), line
    assert "pytest" in line
    assert list(out.iterdir()) == []


def test_a_run_that_stops_with_an_error_leaves_no_report_and_no_lock_file(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    # the earlier run's report, which this run's start removes: it describes the other run's outputs
    (out / "failures.csv").write_text("case,file,stage,error\nbad,bad.png,reading,damaged\n")
    (out / "bad_seg.png").write_bytes(b"an earlier run's mask")
    stopped = (
        "from monai_unets.handlers import CaseIsolationHandler; "
        f"CaseIsolationHandler({str(out / 'failures.csv')!r}); "
        "raise FileNotFoundError('models/model.pt: checkpoint does not exist')"
    )
    result = subprocess.run([sys.executable, "-c", stopped], capture_output=True, text=True, timeout=120)
    assert "checkpoint does not exist" in result.stderr
    # no failures.csv claims that no case failed, the per-process report tells how far the run got
    assert sorted(p.name for p in out.iterdir()) == ["bad_seg.png", "failures.rank0.csv"]
    assert _rows(out / "failures.rank0.csv") == []


def test_an_evaluation_stopped_part_way_leaves_no_report_of_an_earlier_run(tmp_path):
    from monai_unets.handlers import AtomicMetricsSaver, EvaluationReport

    data = tmp_path / "data"
    data.mkdir()
    cases = [_pair(data, f"case{i}") for i in range(3)]
    keys = ["image", "label"]
    preprocessing = Compose(
        [LoadImaged(keys, reader="PILReader", image_only=True), EnsureChannelFirstd(keys, channel_dim="no_channel")]
    )
    eval_dir = tmp_path / "eval"

    def evaluate(*extra_handlers):
        isolation = CaseIsolationHandler(eval_dir / "failures.csv")
        evaluator = SupervisedEvaluator(
            device="cpu",
            val_data_loader=DataLoader(CaseDataset(cases, preprocessing), batch_size=1, num_workers=0),
            network=torch.nn.Identity(),
            postprocessing=Compose([AsDiscreted("pred", threshold=100), save_masks(eval_dir)]),
            key_val_metric={"dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
            val_handlers=[
                isolation,
                AtomicMetricsSaver(save_dir=eval_dir, metrics="*", metric_details="*", summary_ops="mean"),
                CaseMetricsWriter(eval_dir),
                EvaluationReport(eval_dir, class_names=["lesion"]),
                *extra_handlers,
            ],
        )
        evaluator.run()
        return isolation.conclude()

    assert evaluate().startswith("3 case(s): 3 ok, 0 failed; outputs in ")
    reports = ["dice_raw.csv", "dice_summary.csv", "failures.csv", "metrics.csv", "metrics_per_case.csv"]
    reports += ["metrics_summary.csv", "report.html", "run.json", "volumes_per_case.csv"]
    assert reports == sorted(p.name for p in eval_dir.iterdir() if p.is_file() and not p.name.endswith(".png"))

    class _Interrupt:
        """Ctrl-C during the second case."""

        def attach(self, engine):
            engine.add_event_handler(Events.ITERATION_COMPLETED(once=2), self)

        def __call__(self, _engine):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(_Interrupt())
    left = sorted(p.name for p in eval_dir.iterdir() if p.is_file() and not p.name.endswith(".png"))
    assert left == [RUN_LOCK, "failures.rank0.csv"]  # the lock file goes when this process ends


def test_a_failed_case_skips_the_metrics_and_still_counts_in_the_progress():
    from monai_unets.handlers import ProgressLogger
    from monai_unets.handlers.case_isolation import _runs_for_failed_cases

    metric = MeanDice()
    # an ignite Metric answers any attribute it lacks with a function: it must not pass for the marker
    assert callable(getattr(metric, "runs_on_failed_cases"))
    assert not _runs_for_failed_cases(metric.iteration_completed, ())
    assert _runs_for_failed_cases(ProgressLogger().__call__, ())


class _FailsOn:
    """A per-case handler with a fault other than the ValueError or OSError handlers expect, for one case."""

    def __init__(self, name):
        self.name = name

    def attach(self, engine):
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine):
        if any(self.name in str(case["image"].meta["filename_or_obj"]) for case in engine.state.batch):
            raise RuntimeError(f"unexpected fault on {self.name}")


@pytest.mark.parametrize("where", ["overlay", "last handler"])
def test_a_case_failing_in_a_later_handler_is_rolled_back_from_every_table(tmp_path, monkeypatch, where):
    from monai_unets.handlers import EvaluationReport, evaluation_report

    data = tmp_path / "data"
    data.mkdir()
    cases = [_pair(data, name) for name in ("good0", "bad", "good1")]
    keys = ["image", "label"]
    preprocessing = Compose(
        [LoadImaged(keys, reader="PILReader", image_only=True), EnsureChannelFirstd(keys), ScaleIntensityd(keys)]
    )
    handlers = [CaseMetricsWriter(tmp_path / "eval"), EvaluationReport(tmp_path / "eval", class_names=["lesion"])]
    if where == "overlay":
        render = evaluation_report.render_overlay

        def render_or_fail(image, *args, **kwargs):
            if "bad" in str(image.meta["filename_or_obj"]):
                raise MemoryError("no memory left for the overlay")
            return render(image, *args, **kwargs)

        monkeypatch.setattr(evaluation_report, "render_overlay", render_or_fail)
    else:
        handlers.append(_FailsOn("bad"))  # after both tables took the case in
    isolation = CaseIsolationHandler(tmp_path / "eval" / "failures.csv")
    evaluator = SupervisedEvaluator(
        device="cpu",
        val_data_loader=DataLoader(CaseDataset(cases, preprocessing), batch_size=1, num_workers=0),
        network=lambda x: (x > 0.5).float(),
        postprocessing=AsDiscreted("pred", threshold=0.5),
        key_val_metric={"dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
        val_handlers=[isolation, *handlers],
    )
    # the run had ended in an IndexError at its end, without tables, report or failures.csv
    evaluator.run()
    with pytest.raises(SystemExit, match=r"3 case\(s\): 2 ok, 1 failed"):
        isolation.conclude()
    eval_dir = tmp_path / "eval"
    stage = "handlers (EvaluationReport)" if where == "overlay" else "handlers (_FailsOn)"
    assert [(row["case"], row["stage"]) for row in _rows(eval_dir / "failures.csv")] == [("bad", stage)]
    for table in ("metrics_per_case.csv", "volumes_per_case.csv"):
        assert [row["name"] for row in _rows(eval_dir / table)] == ["good0", "good1"]
    assert _rows(eval_dir / "metrics_summary.csv")[0]["cases"] == "2"
    assert (eval_dir / "report.html").is_file()


def _evaluate_one_process_failing(rank: int, folder: str, cases_of_rank: list[list[dict]]) -> None:
    import json

    from monai_unets.handlers import AtomicMetricsSaver

    keys = ["image", "label"]
    preprocessing = Compose(
        [LoadImaged(keys, reader="PILReader", image_only=True), EnsureChannelFirstd(keys), ScaleIntensityd(keys)]
    )
    evaluator = SupervisedEvaluator(
        device="cpu",
        val_data_loader=DataLoader(CaseDataset(cases_of_rank[rank], preprocessing), batch_size=1, num_workers=0),
        network=lambda x: (x > 0.5).float(),
        key_val_metric={"dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
        val_handlers=[
            CaseIsolationHandler(f"{folder}/eval/failures.csv"),
            CaseMetricsWriter(f"{folder}/eval"),
            AtomicMetricsSaver(save_dir=f"{folder}/eval", metrics="*"),
        ],
    )
    evaluator.run()
    with open(f"{folder}/metrics.rank{rank}.json", "w") as f:
        json.dump(evaluator.state.metrics, f)


def test_a_process_whose_every_case_failed_leaves_the_other_processes_cases_scored(tmp_path):
    import json

    from tests.distributed import run_in_two_processes

    data = tmp_path / "data"
    data.mkdir()
    names = ["one", "three", "eleven"]  # _pair draws its pixels by the name's length
    good = [_pair(data, name) for name in names]
    corrupt = data / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    # rank 0's only case cannot be read; rank 1 has the good cases
    run_in_two_processes(_evaluate_one_process_failing, str(tmp_path), [[{**good[0], "image": str(corrupt)}], good])

    dice = [float(row["dice"]) for row in _rows(tmp_path / "eval" / "metrics_per_case.csv")]
    assert [row["name"] for row in _rows(tmp_path / "eval" / "metrics_per_case.csv")] == names
    assert len(set(dice)) == 3 and 0 < min(dice)  # three cases with their own scores
    for rank in (0, 1):
        metrics = json.loads((tmp_path / f"metrics.rank{rank}.json").read_text())
        assert metrics["dice"] == pytest.approx(np.mean(dice), abs=1e-6)
    # MONAI's report, as the bundles write it (its delimiter differs between MONAI versions)
    name, value = (tmp_path / "eval" / "metrics.csv").read_text().strip().replace("\t", ",").split(",")
    assert name == "dice" and float(value) == pytest.approx(np.mean(dice), abs=1e-6)


def test_the_error_column_escapes_control_characters_and_the_file_column_names_the_file(tmp_path):
    # `cat failures.csv` had run a name's escape sequence, held in the error text
    name = str(tmp_path / "x\x1b[2J.png")
    isolation = CaseIsolationHandler(tmp_path / "failures.csv")
    batch = {"image": MetaTensor(torch.zeros(1, 1, 2, 2), meta={"filename_or_obj": [name]})}
    isolation.record_failure(batch, "writing", f"{name}: cannot be written")
    (row,) = _rows(tmp_path / "failures.rank0.csv")
    assert row["file"] == name and row["error"] == f"{tmp_path}/x\\x1b[2J.png: cannot be written"
