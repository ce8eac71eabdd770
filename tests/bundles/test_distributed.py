from __future__ import annotations

import pytest
import torch.distributed as dist
import yaml
from monai.bundle import ConfigParser
from monai.data import Dataset
from monai_unets.bundles import BUNDLES_DIR, end_process_group, list_bundles
from monai_unets.data import CheckedCases

from tests.distributed import free_port


def test_without_a_process_group_nothing_is_ended():
    assert not dist.is_initialized()
    end_process_group()
    assert not dist.is_initialized()


def test_the_process_group_is_ended_after_a_barrier_then_the_lock_is_left_free(monkeypatch):
    from monai_unets.bundles import distributed

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
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
        # then what initialize changed for the process, given back where the process goes on
        ending = ["$monai_unets.bundles.end_process_group()", "$monai_unets.bundles.restore_process_state()"]
        assert finalize == ending, config.name


def test_fewer_validation_cases_than_processes_says_what_to_change(monkeypatch):
    from monai_unets.bundles import validation_sampler
    from monai_unets.handlers import SettingError

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        # one process: every case, in order, once
        assert list(validation_sampler(["a", "b", "c"])) == [0, 1, 2]
        # a 2-process job with one validation case: the datalist's list is what every bundle takes (the 2D
        # bundles have no val_fraction)
        monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
        with pytest.raises(SettingError, match='holds 1 case\\(s\\), fewer than the 2 processes.*"validation" list'):
            validation_sampler(["a"])
        # two listed, one of them skipped as bad by the data check: the message says why one is left
        dataset = Dataset(CheckedCases([{"image": "a"}], listed=[{"image": "a"}, {"image": "bad"}]))
        with pytest.raises(SettingError, match="holds 1 case\\(s\\) once the data check skipped 1 bad one\\(s\\),"):
            validation_sampler(dataset)
    finally:
        dist.destroy_process_group()


def test_an_evaluation_with_fewer_cases_than_processes_stops_at_start(monkeypatch):
    from monai_unets.bundles import check_evaluation_shards
    from monai_unets.data import CaseDataset
    from monai_unets.handlers import SettingError

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        check_evaluation_shards(CaseDataset([{"image": "a.png"}]))  # one process, one case
        monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
        # rank 0's share, as in the job: the count is of every process's cases
        check_evaluation_shards(CaseDataset([{"image": "a.png"}, {"image": "b.png"}], shard=True))
        # a process without a case left the other waiting for it in the metrics' gathering, for ever
        with pytest.raises(SettingError, match="evaluation holds 1 case\\(s\\), fewer than the 2 processes"):
            check_evaluation_shards(CaseDataset([{"image": "a.png"}], shard=True))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("rank, logged", [(0, True), (1, False)])
def test_ranks_above_zero_log_warnings_only(monkeypatch, caplog, rank, logged):
    import logging

    from monai_unets.bundles import log_from_rank_zero

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda *a, **k: rank)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    try:
        # inside at_level, which sets logging.disable itself
        with caplog.at_level(logging.INFO):
            log_from_rank_zero()
            logging.getLogger("ignite.engine.engine.SupervisedEvaluator").info("Got new best metric")
            logging.getLogger("monai_unets").warning("a warning")
    finally:
        logging.disable(logging.NOTSET)
    assert [r.getMessage() for r in caplog.records] == ["Got new best metric"] * logged + ["a warning"]


@pytest.mark.parametrize("name", list_bundles())
@pytest.mark.parametrize("config", ["multi_gpu_train.yaml", "multi_gpu_inference.yaml", "multi_gpu_evaluate.yaml"])
def test_every_multi_gpu_run_logs_from_rank_zero_alone(name, config):
    steps = [str(step) for step in yaml.safe_load((BUNDLES_DIR / name / "configs" / config).read_text())["initialize"]]
    # after the process group is made: the rank is known from then on
    assert steps.index("$monai_unets.bundles.log_from_rank_zero()") > next(
        i for i, step in enumerate(steps) if "init_process_group" in step
    )


@pytest.mark.parametrize("name", list_bundles())
def test_multi_gpu_training_makes_no_tensorboard_writer_above_rank_zero(name):
    configs = BUNDLES_DIR / name / "configs"
    parser = ConfigParser()
    parser.read_config([configs / "train.yaml", configs / "multi_gpu_train.yaml"])
    # the handlers that multi_gpu_train.yaml disables by their place in the lists (a writer makes its file when made)
    flat = ConfigParser.load_config_file(configs / "multi_gpu_train.yaml")
    disabled = [key.rsplit("#", 1)[0] for key in flat if key.endswith("#_disabled_")]
    assert disabled == ["train#handlers#3", "validate#handlers#1"]
    for key in disabled:
        assert parser[key]["_target_"] == "TensorBoardStatsHandler", key
        assert parser[key]["_disabled_"] == "$dist.get_rank() > 0"


@pytest.mark.parametrize("name", list_bundles())
def test_each_training_process_draws_its_own_random_augmentations(name, monkeypatch):
    import monai

    steps = yaml.safe_load((BUNDLES_DIR / name / "configs" / "multi_gpu_train.yaml").read_text())["initialize"]
    (seeding,) = [step for step in steps if "set_determinism" in str(step)]
    seeds = []
    monkeypatch.setattr(monai.utils, "set_determinism", lambda seed=None, **_: seeds.append(seed))
    for rank in (0, 1, 2):
        monkeypatch.setattr(dist, "get_rank", lambda rank=rank: rank)
        ConfigParser({"seeding": seeding}, globals={"monai": monai, "dist": dist}).get_parsed_content("seeding")
    # rank 0 draws as a one-process training (train.yaml's seed); the others differ from it and from each other
    assert seeds[0] == 42 and len(set(seeds)) == 3
