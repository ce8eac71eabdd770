"""MLflow tracking of a bundle run through MONAI's ``--tracking mlflow``, into a local SQLite store."""

from __future__ import annotations

import pytest
from monai_unets.scripts.cli import main
from monai_unets.scripts.demo_data import generate_demo_dataset


@pytest.mark.slow
def test_training_is_tracked_in_a_local_mlflow_store(tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="needs the `mlflow` extra")
    data = tmp_path / "data"
    generate_demo_dataset(data, num_images=10, seed=1, min_size=48, max_size=80)
    bundle = tmp_path / "bundle"
    argv = ["train", "egeunet_skin_lesion", "--workdir", str(bundle), "--tracking", "mlflow", "--quiet"]
    argv += ["--dataset_dir", str(data), "--max_epochs", "2", "--val_interval", "1", "--num_workers", "0"]
    argv += ["--batch_size", "2", "--image_size", "[64, 64]", "--experiment_name", "skin"]
    assert main(argv) == 0

    client = mlflow.tracking.MlflowClient(f"sqlite:///{bundle / 'mlruns.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("skin").experiment_id])
    assert run.info.status == "FINISHED"
    assert {"train_loss", "val_mean_dice"} <= set(run.data.metrics)
    assert len(client.get_metric_history(run.info.run_id, "val_mean_dice")) == 2
