from __future__ import annotations

import socket

import pytest
import torch.distributed as dist
from monai.bundle import ConfigParser
from monai_unets.bundles import BUNDLES_DIR, end_process_group, list_bundles


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_a_process_group_nothing_is_ended():
    assert not dist.is_initialized()
    end_process_group()
    assert not dist.is_initialized()


def test_the_process_group_is_ended_after_a_barrier_then_the_lock_is_left_free(monkeypatch):
    from monai_unets.bundles import distributed

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    calls = []
    barrier, destroy = dist.barrier, dist.destroy_process_group
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: calls.append("barrier") or barrier(*a, **k))
    monkeypatch.setattr(dist, "destroy_process_group", lambda *a, **k: calls.append("destroy") or destroy(*a, **k))
    monkeypatch.setattr(distributed.time, "sleep", lambda seconds: calls.append(("sleep", seconds)))
    try:
        end_process_group()
        assert calls == ["barrier", "destroy", ("sleep", distributed._RELEASE_WAIT_S)]
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.parametrize("name", list_bundles())
def test_multi_gpu_runs_end_their_process_group_with_it(name):
    configs = sorted((BUNDLES_DIR / name / "configs").glob("multi_gpu_*.yaml"))
    assert len(configs) == 3
    for config in configs:
        finalize = ConfigParser.load_config_file(config).get("finalize")
        assert finalize == ["$monai_unets.bundles.end_process_group()"], config.name


def test_fewer_validation_cases_than_processes_says_what_to_change(monkeypatch):
    from monai_unets.bundles import validation_sampler
    from monai_unets.handlers import SettingError

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        # one process: every case, in order, once
        assert list(validation_sampler(["a", "b", "c"])) == [0, 1, 2]
        # a 2-process job with one validation case (6 labelled cases, val_fraction 0.2)
        monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
        with pytest.raises(SettingError, match="holds 1 case\\(s\\), fewer than the 2 processes.*val_fraction"):
            validation_sampler(["a"])
    finally:
        dist.destroy_process_group()
