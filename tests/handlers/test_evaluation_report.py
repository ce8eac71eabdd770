from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai_unets.data import CASE_NAME_KEY
from monai_unets.handlers import CaseMetricsWriter, EvaluationReport, evaluation_report, write_report
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Tables(HTMLParser):
    """Text of every table cell by table id, images by the id of the nearest enclosing element with one."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: dict[str, int] = {}
        self.links: list[str] = []
        self._ids: list[str | None] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            owner = next((i for i in reversed(self._ids) if i), "")
            assert attrs["src"].startswith("data:image/png;base64,")
            self.images[owner] = self.images.get(owner, 0) + 1
            return
        if tag == "a":
            self.links.append(attrs["href"])
        self._ids.append(attrs.get("id"))
        if tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "table":
            self._table = None
        if self._ids and tag not in ("img",):
            self._ids.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(html_text: str) -> _Tables:
    parser = _Tables()
    parser.feed(html_text)
    return parser


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def eval_dir(tmp_path: Path) -> Path:
    """An evaluation folder as the bundles leave it: metrics, volumes, overlays, run.json and training logs."""
    folder = tmp_path / "eval"
    (folder / "overlays").mkdir(parents=True)
    dice = [0.91, 0.42, math.nan, 0.77, 0.65]
    tumour_dice = [0.1, 0.9, math.nan, 0.3, 0.2]
    cases, volumes = [], []
    for i, (value, tumour) in enumerate(zip(dice, tumour_dice)):
        case = f"/data/imagesTs/case_{i}.nii.gz"
        cases.append({"case": case, "val_mean_dice_pancreas": f"{value:.6f}", "val_mean_dice_tumour": f"{tumour:.6f}",
                      "val_mean_dice": f"{(value + tumour) / 2:.6f}"})  # fmt: skip
        Image.fromarray(np.full((8, 12, 3), 40 * i, np.uint8)).save(folder / "overlays" / f"case_{i}.png")
        volumes.append({"case": case, "overlay": f"overlays/case_{i}.png", "pancreas_true_ml": f"{60 + i:.3f}",
                        "pancreas_pred_ml": f"{58 + i:.3f}", "tumour_true_ml": "2.500",
                        "tumour_pred_ml": "1.250"})  # fmt: skip
    _write_csv(folder / "metrics_per_case.csv", cases)
    summary = []
    for column in ("val_mean_dice_pancreas", "val_mean_dice_tumour", "val_mean_dice"):
        values = [float(c[column]) for c in cases if not math.isnan(float(c[column]))]
        summary.append({"metric": column, "mean": f"{np.mean(values):.6f}", "std": f"{np.std(values):.6f}",
                        "median": f"{np.median(values):.6f}", "min": f"{min(values):.6f}",
                        "max": f"{max(values):.6f}", "cases": len(values)})  # fmt: skip
    _write_csv(folder / "metrics_summary.csv", summary)
    _write_csv(folder / "volumes_per_case.csv", volumes)
    (folder / "failures.csv").write_text(
        "case,file,stage,error\nbroken,/data/imagesTs/broken.nii.gz,reading,EOFError: truncated\n"
        "case_5,/data/imagesTs/case_5.nii.gz,metrics,RuntimeError: out of memory\n"
    )
    logs = tmp_path / "logs"
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(logs)) as writer:
        for step in range(1, 6):
            writer.add_scalar("train_loss", 1.0 / step, step)
            writer.add_scalar("val_mean_dice", 0.1 * step, step)
    (folder / "run.json").write_text(
        json.dumps(
            {
                "command": "python -m monai.bundle run --max_epochs 5",
                "log_dir": str(logs),
                "settings": {"dataset_dir": "/data/<pancreas>"},
            }
        )  # fmt: skip
    )
    return folder


def test_report_numbers_are_those_of_the_csv_files(eval_dir: Path):
    text = write_report(eval_dir).read_text()
    page = _parse(text)
    with open(eval_dir / "metrics_summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert page.tables["summary"][1:] == [
        [r["metric"]] + [f"{float(r[k]):.4f}" for k in ("mean", "std", "median", "min", "max")] + [r["cases"]]
        for r in summary
    ]
    with open(eval_dir / "metrics_per_case.csv", newline="") as f:
        cases = list(csv.DictReader(f))
    rows = page.tables["cases"]
    assert rows[0][:4] == ["case", "val_mean_dice_pancreas", "val_mean_dice_tumour", "val_mean_dice"]
    assert [r[0] for r in rows[1:]] == [c["case"] for c in cases]
    assert rows[3][1] == "n/a"  # a NaN metric is shown as such, not as a number
    assert rows[1][4:8] == ["60.00", "58.00", "2.50", "1.25"]  # volumes in ml
    # failures at any stage, each with its stage: the report had counted them all as failed to load
    assert page.tables["failures"][1:] == [
        ["broken", "/data/imagesTs/broken.nii.gz", "reading", "EOFError: truncated"],
        ["case_5", "/data/imagesTs/case_5.nii.gz", "metrics", "RuntimeError: out of memory"],
    ]
    assert re.search(r'<p id="counts">5 cases evaluated, 2 failed\. ', text)
    assert page.tables["settings"][1] == ["dataset_dir", "/data/<pancreas>"]


def test_report_shows_figures_and_the_best_and_worst_cases(eval_dir: Path):
    text = write_report(eval_dir, num_extreme_cases=2).read_text()
    page = _parse(text)
    assert page.images["dist"] == page.images["curves"] == page.images["volumes"] == 1
    assert page.images["best"] == page.images["worst"] == 2
    best = re.search(r'id="best">(.*?)</div></div>', text, re.S).group(1)
    worst = re.search(r'id="worst">(.*?)</div></div>', text, re.S).group(1)
    # ranked by the first metric's mean over classes (0.505, 0.66, nan, 0.535, 0.425), not by its first class;
    # the case without a value is in neither list
    assert "by val_mean_dice<" in text
    assert best.index("case_1") < best.index("case_3") and "case_2" not in best + worst
    assert worst.index("case_4") < worst.index("case_0")
    # three ranked cases (case_4 left out) and room for three each way: the middle one is among the best only
    per_case = eval_dir / "metrics_per_case.csv"
    per_case.write_text("".join(line for line in per_case.read_text().splitlines(True) if "case_4" not in line))
    text = write_report(eval_dir, num_extreme_cases=3).read_text()
    best = re.search(r'id="best">(.*?)</div></div>', text, re.S).group(1)
    worst = re.search(r'id="worst">(.*?)</div></div>', text, re.S).group(1)
    assert (
        "case_3" in best
        and "case_3" not in worst
        and (_parse(text).images["best"], _parse(text).images["worst"]) == (2, 1)
    )


def test_training_curves_come_from_the_newest_run_that_logged_any(eval_dir: Path, tmp_path: Path):
    from torch.utils.tensorboard import SummaryWriter

    logs = tmp_path / "logs"
    (trained,) = logs.glob("events.out.tfevents.*")
    # a workflow built but never run (as a properties check) leaves a newer event file without scalars
    with SummaryWriter(str(tmp_path / "empty")) as writer:
        writer.flush()
    (empty,) = (tmp_path / "empty").glob("events.out.tfevents.*")
    newer = logs / f"events.out.tfevents.{int(trained.name.split('.')[3]) + 60}.host.999999.0"
    empty.rename(newer)
    os.utime(newer, (trained.stat().st_mtime + 60,) * 2)
    assert 'id="curves"' in write_report(eval_dir).read_text()


def test_report_without_training_logs_says_so(eval_dir: Path, tmp_path: Path):
    text = write_report(eval_dir, log_dir=tmp_path / "nowhere").read_text()
    assert "No TensorBoard logs found" in text and 'id="curves"' not in text


def test_report_of_a_folder_without_metrics_names_the_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="metrics_per_case.csv"):
        write_report(tmp_path)


def _opened_by_a_browser(report: Path, href: str) -> Path:
    """The file a browser opens for a link of ``report`` (the link's query and fragment are not part of it)."""
    url = urllib.parse.urlsplit(urllib.parse.urljoin(report.resolve().as_uri(), href))
    assert url.scheme == "file" and not url.query and not url.fragment, href
    return Path(urllib.parse.unquote(url.path))


def test_overlay_links_lead_to_the_overlays_from_a_report_elsewhere(eval_dir: Path, tmp_path: Path):
    # names that are delimiters or escapes in a URL
    name = "lesion #1 50%25?.png"
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(eval_dir / "overlays" / name)
    with open(eval_dir / "volumes_per_case.csv", newline="") as f:
        volumes = list(csv.DictReader(f))
    volumes[0]["overlay"] = f"overlays/{name}"
    _write_csv(eval_dir / "volumes_per_case.csv", volumes)

    for report in (write_report(eval_dir), write_report(eval_dir, output=tmp_path / "reports" / "report.html")):
        links = _parse(report.read_text()).links
        assert len(links) == 5
        opened = [_opened_by_a_browser(report, href) for href in links]
        assert opened[0] == (eval_dir / "overlays" / name).resolve()
        assert all(path.is_file() for path in opened)


def test_a_run_without_cases_reports_none_of_the_previous_run(eval_dir: Path):
    # this run's every case failed to load: the evaluator runs one iteration without any case
    (eval_dir / "failures.csv").write_text(
        "case,file,stage,error\n"
        "a,/data/imagesTs/a.nii.gz,reading,FileNotFoundError: a\n"
        "b,/data/imagesTs/b.nii.gz,reading,FileNotFoundError: b\n"
    )
    engine = Engine(lambda engine, batch: [])
    CaseMetricsWriter(eval_dir).attach(engine)
    EvaluationReport(eval_dir, class_names=["pancreas", "tumour"]).attach(engine)
    engine.run([[]])

    for table in ("metrics_per_case.csv", "metrics_summary.csv", "volumes_per_case.csv"):
        with open(eval_dir / table, newline="") as f:
            assert len(list(csv.reader(f))) == 1, table  # the header only
    text = (eval_dir / "report.html").read_text()
    assert "0 cases evaluated, 2 failed." in text
    page = _parse(text)
    assert page.tables["cases"] == [["case", "overlay"]] and page.tables["summary"][1:] == []
    assert [row[1] for row in page.tables["failures"][1:]] == ["/data/imagesTs/a.nii.gz", "/data/imagesTs/b.nii.gz"]


def _case(value: float, name: str, affine: torch.Tensor) -> tuple[dict, dict]:
    labels = torch.zeros(10, 10, 10, dtype=torch.long)
    labels[2:6, 2:6, 2:6] = 1  # 64 voxels of 0.01 ml: 0.64 ml
    labels[3, 3, 3] = 2
    one_hot = torch.nn.functional.one_hot(labels, 3).permute(3, 0, 1, 2).float()
    prediction = torch.roll(one_hot, 1, dims=1)
    image = MetaTensor(torch.rand(1, 10, 10, 10) * value, affine=affine, meta={"filename_or_obj": name})
    batch = {"image": image}
    output = {
        "image": image,
        "pred": MetaTensor(prediction, affine=affine),
        "label": MetaTensor(one_hot, affine=affine),
    }
    return batch, output


def _escaped(name: str) -> str:
    """``name`` as the CSV files hold it: what UTF-8 cannot encode (a surrogate-escaped byte) as ``\\udcXX``."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _report_rows(save_dir: Path, names: list[str]) -> list[dict[str, str]]:
    """The rows of ``volumes_per_case.csv`` after an evaluation of a case per name."""
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.5, 1.0]), 0)
    cases = [_case(1.0, name, affine) for name in names]
    # an evaluator's state after postprocessing: the batch and the output, one list item per case
    engine = Engine(lambda engine, batch: [cases[engine.state.iteration - 1][1]])
    save_dir.mkdir()
    _write_csv(save_dir / "metrics_per_case.csv", [{"case": _escaped(n), "val_mean_dice": "0.5"} for n in names])
    EvaluationReport(save_dir, class_names=["pancreas", "tumour"], settings={"device": "cpu"}).attach(engine)
    engine.run([[batch] for batch, _ in cases])
    with open(save_dir / "volumes_per_case.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_handler_writes_overlays_volumes_run_info_and_report(tmp_path: Path):
    names = ["/data/a/image.nii.gz", "/data/b/image.nii.gz"]  # the same file name in two folders
    save_dir = tmp_path / "eval"
    rows = _report_rows(save_dir, names)
    assert [r["case"] for r in rows] == names
    assert float(rows[0]["pancreas_true_ml"]) == pytest.approx(0.63)  # 64 - 1 voxels of 10 mm^3
    assert float(rows[0]["tumour_true_ml"]) == pytest.approx(0.01)
    assert rows[0]["overlay"] != rows[1]["overlay"]
    for row in rows:
        assert Image.open(save_dir / row["overlay"]).size[0] > 0
    info = json.loads((save_dir / "run.json").read_text())
    assert info["settings"] == {"device": "cpu"}
    assert (save_dir / "report.html").is_file()


def test_a_structure_of_one_small_voxel_keeps_its_size(tmp_path: Path):
    # one tumour voxel of 0.5 x 0.5 x 1 mm had been written 0.000 ml, as an absent tumour is
    affine = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0]))
    batch, output = _case(1.0, "/data/a/ct.nii.gz", affine)
    engine = Engine(lambda engine, batch: [output])
    save_dir = tmp_path / "eval"
    save_dir.mkdir()
    _write_csv(save_dir / "metrics_per_case.csv", [{"case": "/data/a/ct.nii.gz", "val_mean_dice": "0.5"}])
    EvaluationReport(save_dir, class_names=["pancreas", "tumour"]).attach(engine)
    engine.run([[batch]])
    with open(save_dir / "volumes_per_case.csv", newline="", encoding="utf-8") as f:
        [row] = list(csv.DictReader(f))
    assert row["tumour_true_ml"] == "0.000250" and row["pancreas_true_ml"] == "0.015750"
    every_case = _parse((save_dir / "report.html").read_text()).tables["cases"]
    assert "0.00025" in every_case[1] and "0.02" in every_case[1], every_case


def test_cases_without_output_names_get_overlays_named_as_a_bundle_names_their_masks(tmp_path: Path):
    # an evaluator of the user's own, not a bundle's CaseDataset: the overlay had been named after the file name up to
    # its first dot (ct.v2 -> ct), and with a character file systems refuse (x:y) as it is
    rows = _report_rows(tmp_path / "eval", ["/data/a/ct.v2.nii.gz", "/data/b/x:y.nii.gz"])
    assert [r["overlay"] for r in rows] == ["overlays/ct.v2.png", "overlays/x_y.png"]


def test_a_case_whose_overlay_cannot_be_written_names_none(tmp_path: Path, monkeypatch):
    # its row had named the overlay that was never written, and the report linked to it
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluation_report, "atomic_path", full_disk)
    [row] = _report_rows(tmp_path / "eval", ["/data/a/ct.nii.gz"])
    assert row["overlay"] == "" and not (tmp_path / "eval" / "overlays").exists()


def test_a_case_rolled_back_leaves_its_overlay_name_to_the_next_case(tmp_path: Path):
    # a case that failed in a later handler is forgotten (CaseIsolationHandler): its name had still been taken, and
    # the next case of that name got a digest in its overlay's name
    affine = torch.eye(4)
    cases = [_case(1.0, f"/data/{folder}/ct.nii.gz", affine) for folder in ("a", "b")]
    engine = Engine(lambda engine, batch: [cases[engine.state.iteration - 1][1]])
    save_dir = tmp_path / "eval"
    save_dir.mkdir()
    _write_csv(save_dir / "metrics_per_case.csv", [{"case": "/data/b/ct.nii.gz", "val_mean_dice": "0.5"}])
    report = EvaluationReport(save_dir, class_names=["pancreas", "tumour"])
    report.attach(engine)
    engine.add_event_handler(Events.ITERATION_COMPLETED(once=1), lambda _: report.roll_back_case(0))
    engine.run([[batch] for batch, _ in cases])
    with open(save_dir / "volumes_per_case.csv", newline="", encoding="utf-8") as f:
        assert [(r["case"], r["overlay"]) for r in csv.DictReader(f)] == [("/data/b/ct.nii.gz", "overlays/ct.png")]


def test_cases_whose_names_are_not_utf8_get_their_overlays_and_rows(tmp_path: Path):
    # bytes of an old Latin-1 archive, held by Python as surrogates; twice, so the overlays' names take a digest
    names = ["/data/a/\udce9t\udce9.nii.gz", "/data/b/\udce9t\udce9.nii.gz", "/data/c/" + "\udce9" * 230 + ".nii.gz"]
    save_dir = tmp_path / "eval"
    rows = _report_rows(save_dir, names)
    assert [r["case"] for r in rows] == [_escaped(n) for n in names]
    assert len({r["overlay"] for r in rows}) == 3
    report = (save_dir / "report.html").read_text(encoding="utf-8")
    assert "\\udce9t\\udce9" in report
    # the overlays were looked up under their escaped names: "no overlay" in the report, and for the long name
    # "File name too long", which ended the evaluation without a report
    # two best and one worst of the three cases, none shown twice
    assert report.count('alt="overlay"') == 3 and "no overlay" not in report


def test_one_image_scored_against_two_labels_gives_two_cases_told_apart(tmp_path: Path):
    # two readers' labels of one study: two datalist entries with the same image, named study and study_2
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.5, 1.0]))
    cases = [_case(1.0, "/data/study.nii.gz", affine) for _ in range(2)]
    second_label = cases[1][1]["label"]
    second_label[1] += second_label[2]  # the second reader marked no tumour
    second_label[2] = 0
    for (batch, _), name in zip(cases, ("study", "study_2")):
        batch["image"].meta[CASE_NAME_KEY] = name
    engine = Engine(lambda engine, batch: [cases[engine.state.iteration - 1][1]])

    @engine.on(Events.EPOCH_COMPLETED)
    def _set_details(e):
        e.state.metric_details = {"dice": torch.tensor([[0.8, 0.75], [0.8, 0.0]])}

    CaseMetricsWriter(tmp_path, class_names=["pancreas", "tumour"]).attach(engine)
    EvaluationReport(tmp_path, class_names=["pancreas", "tumour"]).attach(engine)
    engine.run([[batch] for batch, _ in cases])

    with open(tmp_path / "metrics_per_case.csv", newline="") as f:
        metrics = list(csv.DictReader(f))
    assert [(r["case"], r["name"], r["dice_tumour"]) for r in metrics] == [
        ("/data/study.nii.gz", "study", "0.750000"),
        ("/data/study.nii.gz", "study_2", "0.000000"),
    ]
    page = _parse((tmp_path / "report.html").read_text())
    header, *rows = page.tables["cases"]
    shown = [(row[header.index("name")], row[header.index("tumour_true_ml")]) for row in rows]
    # both rows had shown the second reader's volumes and overlay
    assert shown == [("study", "0.01"), ("study_2", "0.00")]
    assert [link for link in page.links if "overlays" in link] == ["overlays/study.png", "overlays/study_2.png"]


def test_handler_rejects_class_names_that_do_not_match_the_prediction(tmp_path: Path):
    batch, output = _case(1.0, "/data/x.nii.gz", torch.eye(4))
    engine = Engine(lambda engine, _: [output])
    EvaluationReport(tmp_path, class_names=["pancreas"], report=False).attach(engine)
    with pytest.raises(ValueError, match="2 foreground classes"):
        engine.run([[batch]])


@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (Debian package `chromium`)")
def test_report_renders_in_chromium_with_its_figures_and_numbers(eval_dir: Path, tmp_path: Path):
    report = write_report(eval_dir)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run(
        [*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    page = _parse(dom)
    # what the browser built: every figure, and the summary numbers of the CSV
    assert page.images["dist"] == page.images["curves"] == page.images["volumes"] == 1
    assert page.images["best"] == page.images["worst"] == 2
    with open(eval_dir / "metrics_summary.csv", newline="") as f:
        means = [f"{float(r['mean']):.4f}" for r in csv.DictReader(f)]
    assert [row[1] for row in page.tables["summary"][1:]] == means

    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, "--window-size=1200,2400", f"--screenshot={shot}", report.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # matplotlib's first colour (the curves, the box plot points) is drawn, so the figures were decoded and shown
    blue = np.all(np.abs(pixels - [31, 119, 180]) < 12, axis=-1)
    assert blue.sum() > 200


def _evaluate_pngs(cases, eval_dir):
    from monai.data import DataLoader
    from monai.engines import SupervisedEvaluator
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
    from monai_unets.data import CaseDataset
    from monai_unets.handlers import CaseIsolationHandler

    keys = ["image", "label"]
    load = Compose([LoadImaged(keys, reader="PILReader", image_only=True), EnsureChannelFirstd(keys)])
    report = EvaluationReport(eval_dir, class_names=["lesion"], report=False)
    evaluator = SupervisedEvaluator(
        device="cpu",
        val_data_loader=DataLoader(CaseDataset(cases, load), batch_size=1, num_workers=0),
        network=lambda x: (x > 100).float(),
        val_handlers=[CaseIsolationHandler(eval_dir / "failures.csv", outputs=report), report],
    )
    evaluator.run()
    return sorted(p.name for p in (eval_dir / "overlays").iterdir())


def test_overlays_are_named_as_the_cases_masks_and_a_failed_case_loses_its_earlier_one(tmp_path):
    cases = []
    for folder in ("a", "b"):  # two images of one name, as two centres' exports give
        (tmp_path / folder).mkdir()
        picture = np.zeros((12, 16), np.uint8)
        picture[2:6, 3:9] = 200
        Image.fromarray(picture).save(tmp_path / folder / "image.png")
        Image.fromarray((picture > 0).astype(np.uint8)).save(tmp_path / folder / "mask.png")
        cases.append({"image": str(tmp_path / folder / "image.png"), "label": str(tmp_path / folder / "mask.png")})
    # the overlays had names of their own (image.png, image_<hash>.png), not the output names of the cases
    assert _evaluate_pngs(cases, tmp_path / "eval") == ["a_image.png", "b_image.png"]
    for path in (tmp_path / "eval" / "overlays").iterdir():  # an earlier run, a minute ago
        os.utime(path, (path.stat().st_atime - 60, path.stat().st_mtime - 60))
    (tmp_path / "b" / "image.png").write_bytes(b"damaged since")
    # the failed case's earlier overlay had stayed, passing for a result of this run
    assert _evaluate_pngs(cases, tmp_path / "eval") == ["a_image.png"]


def test_a_damaged_or_unfinished_folder_is_named_with_what_is_wrong(eval_dir: Path, caplog):
    summary = eval_dir / "metrics_summary.csv"
    text = summary.read_text()
    summary.write_text(text[: text.rindex(",")])  # the last line cut short
    with pytest.raises(ValueError, match=f"{re.escape(str(summary))}: line 4 has fewer values than the header"):
        write_report(eval_dir)
    summary.write_text(text)
    volumes = eval_dir / "volumes_per_case.csv"
    volumes.write_bytes(volumes.read_bytes() + b"\xff\xfe,1\n")
    with pytest.raises(ValueError, match=f"{re.escape(str(volumes))}: not a table an evaluation writes"):
        write_report(eval_dir)
    volumes.write_bytes(volumes.read_bytes()[:-6])
    # the run's details are left out where run.json is damaged; the report is written
    (eval_dir / "run.json").write_text('{"command": ')
    with caplog.at_level("WARNING"):
        assert write_report(eval_dir).is_file()
    assert "run.json is damaged" in caplog.text
    # an evaluation that did not finish: its per-process failure report is there, its tables are not
    (eval_dir / "metrics_per_case.csv").unlink()
    (eval_dir / "failures.rank0.csv").write_text("case,file,stage,error\n")
    with pytest.raises(FileNotFoundError, match="did not finish \\(its per-process report failures.rank0.csv"):
        write_report(eval_dir)


def test_a_report_output_that_is_a_folder_or_cannot_be_written_is_named(eval_dir: Path, tmp_path: Path):
    with pytest.raises(IsADirectoryError, match=f"{re.escape(str(tmp_path))} is a folder; give the report's file"):
        write_report(eval_dir, output=tmp_path)
    (tmp_path / "notes.txt").write_text("a file where a folder would be")
    with pytest.raises(OSError, match=f"cannot write the report {re.escape(str(tmp_path / 'notes.txt' / 'r.html'))}"):
        write_report(eval_dir, output=tmp_path / "notes.txt" / "r.html")
