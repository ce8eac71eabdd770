from __future__ import annotations

import pytest
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
