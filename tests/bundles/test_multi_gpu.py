"""The multi_gpu_*.yaml configs of every bundle, run by torchrun with two CPU processes (gloo): the same code path
as several GPUs (NCCL), which CI does not have."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai_unets.bundles import bundle_dir, list_bundles
from monai_unets.scripts.demo_ct import generate_demo_ct
from monai_unets.scripts.demo_data import generate_demo_dataset
from PIL import Image

from tests.bundles.conftest import BUNDLE_CASES, bundle_with_random_weights


def _data(name: str, root: Path) -> Path:
    if name.endswith("_ct"):
        return BUNDLE_CASES[name].make_data(root)
    # each of the two processes needs at least one validation image
    generate_demo_dataset(root, num_images=30, seed=3, min_size=48, max_size=96)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", list_bundles())
def test_two_process_training(name, tmp_path):
    data = _data(name, tmp_path / "data")
    bundle = Path(shutil.copytree(bundle_dir(name), tmp_path / name))
    configs = bundle / "configs"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "monai.bundle", "run"]
    command += ["--config_file", str([str(configs / "train.yaml"), str(configs / "multi_gpu_train.yaml")])]
    command += ["--bundle_root", str(bundle), "--dataset_dir", str(data), "--max_epochs", "1", "--val_interval", "1"]
    command += ["--num_workers", "0", "--batch_size", "2", *BUNDLE_CASES[name].train_args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    # the validation metric log runs on rank 0 only: one report of the best metric
    output = result.stdout + result.stderr
    assert output.count("best value:") == 1, output[-5000:]
    # TensorBoard files of one process (their names end in .<pid>.<n>): rank 1 had made empty ones
    assert len({path.name.split(".")[-2] for path in (bundle / "logs").glob("events.out.tfevents.*")}) == 1
    # the weights are saved without the DDP wrapper's prefix, so that single-process inference loads them
    weights = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert not any(key.startswith("module.") for key in weights)


def _evaluate(bundle: Path, data: Path, out: Path, processes: int, *extra: str) -> subprocess.CompletedProcess:
    configs = ["train.yaml", "evaluate.yaml"] + (["multi_gpu_evaluate.yaml"] if processes > 1 else [])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "-m"]
    command = (command if processes > 1 else [sys.executable, "-m"]) + ["monai.bundle", "run"]
    command += ["--config_file", str([str(bundle / "configs" / c) for c in configs]), "--bundle_root", str(bundle)]
    command += ["--dataset_dir", str(data), "--eval_dir", str(out), "--num_workers", "0", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, extra",
    [
        ("egeunet_skin_lesion", ("--image_size", "[64, 64]")),
        ("egeunet3d_pancreas_ct", ("--patch_size", "[32, 32, 32]", "--val_fraction", "0.6")),
    ],
)
def test_two_process_evaluation_equals_one_process(name, extra, tmp_path):
    bundle = bundle_with_random_weights(name, tmp_path)
    if name.endswith("_ct"):
        data = tmp_path / "data"
        generate_demo_ct(data, num_cases=5, num_test=0, shape=(36, 32, 20))
    else:
        data = tmp_path / "data"
        generate_demo_dataset(data, num_images=16, seed=2, min_size=40, max_size=64, train_fraction=0.5)
        # one test image's mask has another size than the image: that case fails in its metrics, alone
        test = json.loads((data / "datalist.json").read_text())["test"]
        Image.new("L", (7, 5)).save(data / test[1]["label"])
    results = {}
    for processes in (1, 2):
        out = tmp_path / f"eval{processes}"
        result = _evaluate(bundle, data, out, processes, *extra)
        expected = 0 if name.endswith("_ct") else 1
        assert (result.returncode == 0) == (expected == 0), result.stdout[-3000:] + result.stderr[-3000:]
        results[processes] = out
    for report in ("metrics_per_case.csv", "metrics_summary.csv", "failures.csv"):
        one, two = _csv(results[1] / report), _csv(results[2] / report)
        assert len(one) == len(two) and [r.keys() for r in one] == [r.keys() for r in two], report
        for row_one, row_two in zip(one, two):
            for key, value in row_one.items():
                try:
                    assert float(row_two[key]) == pytest.approx(float(value), abs=1e-5, nan_ok=True), (report, key)
                except ValueError:
                    assert row_two[key] == value, (report, key)
    assert len(_csv(results[1] / "failures.csv")) == (0 if name.endswith("_ct") else 1)
    assert not list(results[2].glob("failures.rank*.csv"))


@pytest.mark.slow
def test_two_process_evaluation_of_one_case_stops_at_start(tmp_path):
    bundle = bundle_with_random_weights("egeunet_skin_lesion", tmp_path)
    data = tmp_path / "data"
    generate_demo_dataset(data, num_images=6, seed=2, min_size=40, max_size=64, train_fraction=0.5)
    datalist = json.loads((data / "datalist.json").read_text())
    (data / "datalist.json").write_text(json.dumps({**datalist, "test": datalist["test"][:1]}))
    # rank 1, without a case, skipped its evaluator while rank 0 waited for it in the metrics' gathering, for ever
    out = tmp_path / "eval"
    result = _evaluate(bundle, data, out, 2, "--image_size", "[64, 64]")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert output.count("the evaluation holds 1 case(s), fewer than the 2 processes") == 2, output[-3000:]
    # each process's traceback in a file of its own, which its message names: both had gone to error.log, mixed
    for log in ("error.log", "error.rank1.log"):
        assert f"full traceback in {out / log}" in output, output[-3000:]
        entries = [line for line in (out / log).read_text().splitlines() if line.startswith("--- ")]
        assert len(entries) == 1, log


def test_data_parallel_training_places_the_network_as_one_process_does(tmp_path):
    """The Attention U-Net trains on a CPU with channels-last weights (1.7x faster steps); under
    multi_gpu_train.yaml its processes had trained in the default memory order."""
    import torch.distributed as dist
    from monai.bundle import ConfigParser

    configs = bundle_dir("attention_unet_pancreas_ct") / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.yaml"), str(configs / "multi_gpu_train.yaml")])
    parser.update({"bundle_root": str(tmp_path), "dataset_dir": str(tmp_path), "bf16": False})
    parser["device"] = "$torch.device('cpu')"
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        network = parser.get_parsed_content("network")
    finally:
        dist.destroy_process_group()
    assert isinstance(network, torch.nn.parallel.DistributedDataParallel)
    weights = [p for p in network.module.parameters() if p.dim() == 5]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in weights)
    assert network.module is parser.get_parsed_content("placed_network")
