from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from monai.handlers import metrics_saver
from monai_unets.handlers import AtomicMetricsSaver


def _engine(dice: float) -> Engine:
    engine = Engine(lambda engine, batch: None)
    engine.state.metrics = {"val_mean_dice": dice}
    return engine


def test_the_report_is_complete_or_the_previous_one(tmp_path, monkeypatch):
    saver = AtomicMetricsSaver(save_dir=str(tmp_path), metrics="*")
    saver(_engine(0.5))
    assert (tmp_path / "metrics.csv").read_text().split() == ["val_mean_dice,0.5"]

    def interrupted(save_dir, **kwargs):
        with open(f"{save_dir}/metrics.csv", "w") as f:
            f.write("val_mean")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(metrics_saver, "write_metrics_reports", interrupted)
    with pytest.raises(OSError):
        saver(_engine(0.7))
    assert (tmp_path / "metrics.csv").read_text().split() == ["val_mean_dice,0.5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]
    assert saver.save_dir == str(tmp_path)


def test_file_names_that_are_not_utf8_are_listed_escaped(tmp_path):
    engine = _engine(0.5)
    # the raw report of one case whose name holds a byte of an old Latin-1 archive, held by Python as a surrogate
    engine.state.batch = [{"filename_or_obj": "/in/\udce9t\udce9.png"}]
    engine.state.metric_details = {"dice": torch.tensor([[0.5]])}
    saver = AtomicMetricsSaver(save_dir=str(tmp_path), metrics="*", metric_details="*", summary_ops=None)
    saver._get_filenames(engine)  # what each iteration of a run calls
    saver(engine)
    assert (tmp_path / "dice_raw.csv").read_text(encoding="utf-8").splitlines()[1] == "/in/\\udce9t\\udce9.png,0.5,0.5"
