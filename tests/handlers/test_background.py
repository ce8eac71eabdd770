from __future__ import annotations

import csv
import threading

import pytest
import torch
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    MapTransform,
    ScaleIntensityd,
)
from monai_unets.data import CaseDataset
from monai_unets.handlers import BackgroundPostprocessing, CaseIsolationHandler

from tests.handlers.test_case_isolation import _pair, save_masks

PREPROCESSING = Compose(
    [
        LoadImaged("image", reader="PILReader", image_only=True),
        EnsureChannelFirstd("image", channel_dim="no_channel"),
        ScaleIntensityd("image"),
    ]
)


def _postprocessing(out_dir, *extra):
    return Compose(
        [
            Activationsd("pred", sigmoid=True),
            AsDiscreted("pred", threshold=0.5),
            *extra,
            save_masks(out_dir),
        ]
    )


def _evaluator(cases, network, handlers):
    return SupervisedEvaluator(
        device="cpu",
        val_data_loader=DataLoader(CaseDataset(cases, PREPROCESSING), batch_size=1, num_workers=0),
        network=network,
        postprocessing=None,
        val_handlers=handlers,
    )


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_failed_write_is_reported_under_its_own_case_and_the_others_get_their_outputs(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    # "full" cannot be written; the case after it runs its network while "full" is being written
    # three channels for a one-channel network: "rgb" fails in the network
    cases = [_pair(data, "good0"), _pair(data, "full"), _pair(data, "good1"), _pair(data, "rgb", rgb=True)]
    cases.append(_pair(data, "good2"))
    isolation = CaseIsolationHandler(out / "failures.csv")
    background = BackgroundPostprocessing(_postprocessing(out), isolation)
    torch.manual_seed(0)
    _evaluator(cases, torch.nn.Conv2d(1, 1, 3, padding=1), [isolation, background]).run()
    # every output is written once run() returns
    assert sorted(p.name for p in out.glob("*_seg.png")) == ["good0_seg.png", "good1_seg.png", "good2_seg.png"]
    with pytest.raises(SystemExit, match="5 case\\(s\\): 3 ok, 2 failed"):
        isolation.conclude()
    rows = {row["case"]: row for row in _rows(out / "failures.csv")}
    assert {case: row["stage"] for case, row in rows.items()} == {"full": "writing (SaveImaged)", "rgb": "inference"}
    assert "No space left on device" in rows["full"]["error"]
    assert rows["full"]["file"].endswith("full.png")


class _Handshake:
    """The network of case k + 1 signals its start; the postprocessing of case k waits for that signal."""

    def __init__(self, count: int) -> None:
        self.started = [threading.Event() for _ in range(count + 1)]
        self.overlapped: list[bool] = []
        self.threads: set[str] = set()
        self.calls = 0


class _SignallingNetwork(torch.nn.Conv2d):
    def __init__(self, handshake: _Handshake) -> None:
        super().__init__(1, 1, 3, padding=1)
        self.handshake = handshake

    def forward(self, x):
        self.handshake.started[self.handshake.calls].set()
        self.handshake.calls += 1
        return super().forward(x)


class _WaitForNextNetworkd(MapTransform):
    def __init__(self, handshake: _Handshake, total: int) -> None:
        super().__init__("pred")
        self.handshake, self.total, self.case = handshake, total, 0

    def __call__(self, data):
        self.handshake.threads.add(threading.current_thread().name)
        self.case += 1
        if self.case < self.total:
            # set only if the next case's network started while this case is still being postprocessed
            self.handshake.overlapped.append(self.handshake.started[self.case].wait(timeout=5))
        return data


def test_postprocessing_overlaps_the_next_cases_network(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    cases = [_pair(data, f"case{i}") for i in range(3)]
    handshake = _Handshake(len(cases))
    post = _postprocessing(out, _WaitForNextNetworkd(handshake, len(cases)))
    _evaluator(cases, _SignallingNetwork(handshake), [BackgroundPostprocessing(post)]).run()
    # run synchronously, each wait would time out: the next network starts only after the postprocessing
    assert handshake.overlapped == [True, True]
    assert handshake.threads and "MainThread" not in handshake.threads
    assert len(list(out.glob("*_seg.png"))) == 3


def test_without_case_isolation_a_failure_stops_the_run_naming_the_case(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    cases = [_pair(data, "good0"), _pair(data, "full"), _pair(data, "good1")]
    evaluator = _evaluator(cases, torch.nn.Conv2d(1, 1, 3, padding=1), [BackgroundPostprocessing(_postprocessing(out))])
    with pytest.raises(RuntimeError, match="case full .*full.png.* failed in writing"):
        evaluator.run()


def test_disabled_attaches_nothing(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    evaluator = _evaluator(
        [_pair(data, "good0")],
        torch.nn.Conv2d(1, 1, 3, padding=1),
        [BackgroundPostprocessing(_postprocessing(out), enabled=False)],
    )
    evaluator.run()
    assert not list(out.glob("*_seg.png"))
