from __future__ import annotations

import json
import math

import numpy as np
import pytest
from monai_unets.scripts.benchmark_quality import dice_per_class, hold_out
from monai_unets.scripts.cli import main


def test_dice_per_class_with_an_absent_class():
    scores = dice_per_class(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), 3)
    assert scores[0] == pytest.approx(2 / 3)
    assert math.isnan(scores[1])


def test_hold_out_keeps_the_last_cases_for_testing(tmp_path):
    cases = [{"image": f"i{k}", "label": f"l{k}"} for k in range(6)]
    dataset = {"labels": {"0": "bg"}, "numTraining": 6, "numTest": 0, "training": cases}
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    split = json.loads(hold_out(tmp_path, 2, tmp_path / "split.json").read_text())
    assert split["training"] == cases[:4] and split["test"] == cases[4:]
    # counted as split: the bundles had warned twice that the counts differ from the lists
    assert (split["numTraining"], split["numTest"]) == (4, 2)
    with pytest.raises(ValueError, match="cannot give"):
        hold_out(tmp_path, 4, tmp_path / "split.json")


@pytest.mark.slow
def test_quick_run_trains_both_and_scores_every_class(tmp_path, capsys):
    assert main(["benchmark-quality", "--quick", "--data", "mr", "--work-dir", str(tmp_path), "--threads", "1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    for name in ("attention_unet_pancreas_ct", "egeunet3d_pancreas_ct", "baseline_unet"):
        assert len(results[name]["dice"]) == 3
    assert "baseline_unet" in capsys.readouterr().out
