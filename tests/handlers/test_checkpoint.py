"""Resumable training: the checkpoint restores model, optimizer, scheduler, epoch and best metric."""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer
from monai.transforms import Randomizable, Transform
from monai_unets.bundles import bundle_dir
from monai_unets.data import CheckedCases
from monai_unets.handlers import (
    BestModelSaver,
    CheckpointError,
    TrainingCheckpoint,
    WeightsLoader,
    load_weights,
    read_checkpoint,
)
from monai_unets.networks import AttentionGateUNet, EGEUNet

from monai_unets import load_plan


def _mse_trainer(net: torch.nn.Module, optimizer: torch.optim.Optimizer, loader, max_epochs: int) -> SupervisedTrainer:
    """A CPU trainer of ``net`` on ``loader`` with a mean squared error."""
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=max_epochs,
        train_data_loader=loader,
        network=net,
        optimizer=optimizer,
        loss_function=torch.nn.MSELoss(),
    )


def _trainer(
    tmp_path,
    max_epochs: int,
    resume: bool = True,
    seed: int = 0,
    batches: int = 2,
    lr: float = 0.1,
    decay: float = 0,
    plan: dict | None = None,
):
    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    data = [{"image": torch.rand(2, 3), "label": torch.rand(2, 1)} for _ in range(batches)]
    trainer = _mse_trainer(net, optimizer, data, max_epochs)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: scheduler.step())
    saver = BestModelSaver(tmp_path / "model.pt", net, metric_name="score", plan=plan, plan_file=tmp_path / "plan.json")
    checkpoint = TrainingCheckpoint(
        tmp_path / "checkpoint.pt",
        {"model": net, "optimizer": optimizer, "lr_scheduler": scheduler, "best_model": saver},
        resume=resume,
    )
    checkpoint.attach(trainer)
    epochs: list[int] = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    return trainer, net, optimizer, scheduler, saver, epochs


def test_weights_turned_nan_are_never_saved_and_stop_the_training(tmp_path):
    # a loss that became NaN had turned the weights to NaN, and the run went on to save them as the best model.pt
    # (their Dice of 0 beat no score) and in its checkpoint, with exit status 0
    from monai_unets.handlers import TrainingDivergedError

    trainer, net, _, _, saver, epochs = _trainer(tmp_path, max_epochs=3)
    trainer.add_event_handler(Events.EPOCH_STARTED(once=2), lambda e: net.weight.data.fill_(float("nan")))
    with pytest.raises(TrainingDivergedError, match=r"diverged by epoch 2: [34] of 4 weights are NaN or infinite"):
        trainer.run()
    assert epochs == [1, 2]
    assert read_checkpoint(tmp_path / "checkpoint.pt")["trainer"]["epoch"] == 1  # the last sound one is kept
    with pytest.raises(TrainingDivergedError, match=f"by its last epoch.*so {re.escape(str(tmp_path))}/model.pt was"):
        saver.save_unvalidated()
    assert not (tmp_path / "model.pt").exists()


def test_a_rerun_continues_after_the_last_epoch_with_every_state_restored(tmp_path):
    trainer, net, optimizer, scheduler, saver, epochs = _trainer(tmp_path, max_epochs=2)
    saver.best_metric, saver.best_metric_epoch = 0.7, 2
    trainer.run()
    assert epochs == [1, 2]
    saved_weights = {k: v.clone() for k, v in net.state_dict().items()}

    # a new process: fresh objects, another seed, the same command with more epochs
    trainer, net, optimizer, scheduler, saver, epochs = _trainer(tmp_path, max_epochs=4, seed=1)
    loaded = []
    trainer.add_event_handler(
        Events.EPOCH_STARTED(once=3), lambda e: loaded.append({k: v.clone() for k, v in net.state_dict().items()})
    )
    trainer.run()
    assert epochs == [3, 4]
    for key, value in saved_weights.items():
        torch.testing.assert_close(loaded[0][key], value)
    assert scheduler.last_epoch == 4  # two steps before the kill, two after
    assert optimizer.state[next(iter(net.parameters()))]["step"] == 8  # 2 iterations x 4 epochs
    assert (saver.best_metric, saver.best_metric_epoch) == (0.7, 2)
    # every file loads without unpickling code
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["trainer"] == {"epoch": 4, "iteration": 8}


@pytest.mark.parametrize("batches", [1, 3])
def test_a_resumed_run_with_another_epoch_length_runs_its_remaining_epochs(tmp_path, batches):
    # another --batch_size, or torchrun with another number of processes: the saved iteration count (4) no longer
    # marks the end of epoch 2, and ignite stopped as soon as it reached epoch_length * max_epochs
    trainer, *_, epochs = _trainer(tmp_path, max_epochs=2)
    trainer.run()
    trainer, *_, epochs = _trainer(tmp_path, max_epochs=4, batches=batches)
    trainer.run()
    assert epochs == [3, 4] and trainer.state.iteration == 4 * batches
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["trainer"] == {
        "epoch": 4,
        "iteration": 4 * batches,
    }


def test_the_checkpoint_follows_the_validation_when_training_ends(tmp_path):
    trainer, _, _, _, saver, _ = _trainer(tmp_path, max_epochs=2)

    def final_validation(engine):  # as FinalValidationHandler: a better score once training has ended
        saver.best_metric, saver.best_metric_epoch = 0.9, 2

    trainer.add_event_handler(Events.COMPLETED, final_validation)
    trainer.run()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["best_model"] == {"best_metric": 0.9, "best_metric_epoch": 2}


@pytest.mark.parametrize(
    ("change", "expected"),
    [({"lr": 0.5}, "was trained with learning rate 0.1, this run sets 0.5"), ({"decay": 0.01}, "weight decay 0")],
)
def test_a_resume_with_another_learning_rate_or_weight_decay_stops_naming_both(tmp_path, change, expected):
    # the optimizer's saved state would bring back the checkpoint's values: the new one was dropped without a word
    trainer, *_ = _trainer(tmp_path, max_epochs=2)
    trainer.run()
    trainer, *_ = _trainer(tmp_path, max_epochs=4, **change)
    with pytest.raises(CheckpointError, match=expected) as raised:
        trainer.run()
    assert str(raised.value).startswith(f"{tmp_path / 'checkpoint.pt'}: ")
    assert str(raised.value).endswith("or start fresh with --resume False.")
    # the same values go on (the scheduler's learning rate has moved on since: its initial one is compared)
    trainer, *_, epochs = _trainer(tmp_path, max_epochs=4)
    trainer.run()
    assert epochs == [3, 4]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"spacing": (1.5, 1.5, 2.0)},
            'spacing [1.2, 1.2, 3.0], this run sets [1.5, 1.5, 2.0]; resume with --pixdim "[1.2, 1.2, 3.0]"',
        ),
        (
            {"foreground_threshold": -300},
            'foreground_threshold -500, this run sets -300; resume with --foreground_threshold "-500"',
        ),
        # the classes are overridden together (--num_classes with --class_names): the remedy gives both
        (
            {"labels": {"1": "organ", "2": "lesion"}},
            "labels {'1': 'pancreas', '2': 'tumour'}, this run sets {'1': 'organ', '2': 'lesion'}; resume with "
            "--num_classes 3 --class_names \"['pancreas', 'tumour']\"",
        ),
        (
            {"num_classes": 4, "labels": {"1": "pancreas", "2": "tumour", "3": "cyst"}},
            "num_classes 3, this run sets 4; resume with --num_classes 3 --class_names \"['pancreas', 'tumour']\"",
        ),
    ],
)
def test_a_resume_with_other_preprocessing_or_classes_stops_naming_both(tmp_path, change, expected):
    # the checkpoint had recorded no plan: the resumed epochs trained the weights on input resampled or normalised
    # otherwise, and the plan written beside them described one of the two runs
    plan = {**load_plan(None), "spacing": [1.2, 1.2, 3.0], "patch_size": [32, 32, 32]}
    trainer, *_ = _trainer(tmp_path, max_epochs=2, plan=plan)
    trainer.run()
    trainer, *_, epochs = _trainer(tmp_path, max_epochs=4, plan={**plan, **change})
    with pytest.raises(CheckpointError) as raised:
        trainer.run()
    assert str(raised.value) == (
        f"{tmp_path / 'checkpoint.pt'}: was trained with {expected}, or train anew with another --ckpt_dir."
    )
    assert epochs == [] and torch.load(tmp_path / "checkpoint.pt", weights_only=True)["trainer"]["epoch"] == 2
    # what the weights are not bound to (batch size, patch size, fold, post-processing), and a tuple for the list,
    # go on
    same = {
        **plan,
        "spacing": (1.2, 1.2, 3.0),
        "batch_size": 4,
        "patch_size": [64, 64, 64],
        "fold": 1,
        "postprocessing": {"keep_largest": [1]},
    }
    trainer, *_, epochs = _trainer(tmp_path, max_epochs=4, plan=same)
    trainer.run()
    assert epochs == [3, 4]


def test_a_checkpoint_that_recorded_no_plan_resumes_with_any(tmp_path):
    # written before checkpoints recorded the plan: nothing to compare, it goes on as it did
    trainer, *_ = _trainer(tmp_path, max_epochs=2, plan=load_plan(None))
    trainer.run()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["best_model"].pop("plan")["spacing"] == [1.5, 1.5, 2.0]
    torch.save(state, tmp_path / "checkpoint.pt")
    trainer, *_, epochs = _trainer(tmp_path, max_epochs=4, plan={**load_plan(None), "spacing": [1.2, 1.2, 3.0]})
    trainer.run()
    assert epochs == [3, 4]
    # from now on it records the plan it goes on with
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["best_model"]["plan"]["spacing"] == [1.2, 1.2, 3.0]


def test_resume_false_starts_at_epoch_zero(tmp_path):
    trainer, *_, epochs = _trainer(tmp_path, max_epochs=2)
    trainer.run()
    trainer, *_, epochs = _trainer(tmp_path, max_epochs=2, resume=False)
    trainer.run()
    assert epochs == [1, 2]


def test_a_checkpoint_of_another_network_names_the_file_and_keys(tmp_path):
    torch.save({"model": {"other.weight": torch.ones(1)}, "trainer": {"epoch": 1, "iteration": 1}}, tmp_path / "c.pt")
    net = torch.nn.Linear(3, 1)
    checkpoint = TrainingCheckpoint(tmp_path / "c.pt", {"model": net})
    trainer = SupervisedTrainer(torch.device("cpu"), 2, [], net, torch.optim.SGD(net.parameters(), 0.1), None)
    with pytest.raises(
        CheckpointError, match=r"c\.pt: does not fit the network Linear: 2 missing keys \(weight, bias\)"
    ):
        checkpoint.load(trainer)


def test_weights_of_other_widths_name_the_arguments_that_set_them(tmp_path):
    from monai_unets.networks import UNetV2

    torch.save(EGEUNet(2, 3, 1, channels=[4, 8, 12, 16, 20, 24]).state_dict(), tmp_path / "ege.pt")
    with pytest.raises(CheckpointError, match=r"the widths: a training given --network_def#channels\)"):
        load_weights(tmp_path / "ege.pt", EGEUNet(2, 3, 1))
    # UNetV2's widths are its encoder's and decoder_channels, not only channels
    torch.save(UNetV2(2, 3, 1, encoder="pvt_v2_b0", decoder_channels=16).state_dict(), tmp_path / "v2.pt")
    with pytest.raises(CheckpointError, match=r"--network_def#encoder, --network_def#decoder_channels\)"):
        load_weights(tmp_path / "v2.pt", UNetV2(2, 3, 1, encoder="pvt_v2_b0", decoder_channels=32))


def test_weights_of_another_number_of_classes_name_the_classes_not_the_shapes(tmp_path):
    # in EGE-UNet the class maps gate the bridges, so 107 shapes differ, not only the output layer's
    torch.save(EGEUNet(2, 3, 1).state_dict(), tmp_path / "model.pt")
    with pytest.raises(CheckpointError) as raised:
        WeightsLoader(tmp_path / "model.pt", EGEUNet(2, 3, 2))(None)
    assert str(raised.value) == (
        f"{tmp_path / 'model.pt'}: the weights were trained with num_classes 1, this run sets num_classes 2; run with "
        "--num_classes 1, or train weights with num_classes 2 first."
    )


@pytest.mark.parametrize(
    "make",
    [
        # the CT bundle's EGE-UNet: its full-resolution stem, a 3x3 convolution, is its last weight
        lambda k: EGEUNet(3, 1, k, channels=(8, 8, 8, 8, 8, 8), deep_supervision=False, full_resolution=True),
        # the Attention U-Net's head takes the side outputs, one map a class each: its input channels differ too
        lambda k: AttentionGateUNet(3, 1, k, channels=(4, 4, 4, 4, 4)),
    ],
    ids=["egeunet3d", "attention_unet"],
)
def test_weights_of_another_number_of_classes_name_the_classes_in_the_ct_networks(make, tmp_path):
    # both had listed the shapes of every layer that follows from the number of classes
    torch.save(make(2).state_dict(), tmp_path / "model.pt")
    with pytest.raises(
        CheckpointError, match="the weights were trained with num_classes 2, this run sets num_classes 3"
    ):
        load_weights(tmp_path / "model.pt", make(3))


class _Validator:
    def __init__(self, score: float) -> None:
        self.state = type("State", (), {"metrics": {"score": score}, "epoch": 3})()


def test_best_model_saver_writes_only_better_scores_and_never_nan(tmp_path):
    net = torch.nn.Linear(3, 1)
    saver = BestModelSaver(tmp_path / "model.pt", net, metric_name="score")
    saver(_Validator(0.5))
    first = torch.load(tmp_path / "model.pt", weights_only=True)
    with torch.no_grad():
        net.weight.add_(1.0)
    saver(_Validator(0.4))
    saver(_Validator(math.nan))
    torch.testing.assert_close(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], first["weight"])
    saver(_Validator(0.6))
    torch.testing.assert_close(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], net.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_2d_training_records_its_image_size_which_inference_takes_and_a_resume_keeps(tmp_path, caplog):
    # trained at 64 x 64, the weights had been evaluated at the bundle's 256 x 256 (0.003 Dice against 0.17) and
    # resumed at another size, without a word
    from monai_unets.bundles import input_size
    from monai_unets.handlers.checkpoint import _setting_change

    (tmp_path / "configs").mkdir()
    metadata_file = tmp_path / "configs" / "metadata.json"
    shutil.copy(bundle_dir("egeunet_skin_lesion") / "configs" / "metadata.json", metadata_file)
    assert input_size(tmp_path, [256, 256]) == [256, 256]
    net = torch.nn.Linear(3, 1)
    saver = BestModelSaver(tmp_path / "model.pt", net, "score", metadata_file=metadata_file, input_size=(64, 64))
    with caplog.at_level(logging.WARNING):
        saver(_Validator(0.5))
    assert input_size(tmp_path, [256, 256]) == [64, 64]
    # the segmentation, at the input's size, is described at that size too
    outputs = json.loads(metadata_file.read_text())["network_data_format"]["outputs"]
    assert outputs["pred"]["spatial_shape"] == [64, 64]
    assert f"{metadata_file}: its input size is now [64, 64], as {tmp_path / 'model.pt'} was trained" in caplog.text
    assert saver.state_dict()["input_size"] == [64, 64]
    # a resume at another size stops, naming the size to resume with
    restarted = BestModelSaver(tmp_path / "model.pt", net, "score", input_size=(96, 96))
    problem = _setting_change(tmp_path / "checkpoint.pt", restarted, saver.state_dict())
    assert problem == (
        f"{tmp_path / 'checkpoint.pt'}: was trained with image_size [64, 64], this run sets [96, 96]; resume with "
        '--image_size "[64, 64]", or train anew with another --ckpt_dir.'
    )
    assert (
        _setting_change(
            tmp_path / "checkpoint.pt",
            BestModelSaver(tmp_path / "m.pt", net, "score", input_size=[64, 64]),
            saver.state_dict(),
        )
        is None
    )


def test_weights_copied_into_a_bundle_are_not_taken_for_the_ones_its_metadata_records_the_size_of(tmp_path):
    # a model.pt trained at 64 x 64 and copied alone into a bundle whose metadata says 256 x 256 had run at 256 x 256
    # without a word (Dice 0.008 against 0.131)
    from monai_unets.bundles import input_size

    (tmp_path / "configs").mkdir()
    metadata_file = tmp_path / "configs" / "metadata.json"
    shutil.copy(bundle_dir("egeunet_skin_lesion") / "configs" / "metadata.json", metadata_file)
    weights = tmp_path / "models" / "model.pt"
    net = torch.nn.Linear(3, 1)
    BestModelSaver(weights, net, "score", metadata_file=metadata_file, input_size=(96, 96))(_Validator(0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert input_size(tmp_path, [256, 256]) == [96, 96]  # the weights its training recorded
    with torch.no_grad():
        net.weight.add_(1.0)
    torch.save(net.state_dict(), weights)  # other weights copied over them, without their training's checkpoint
    with pytest.warns(UserWarning, match=r"model.pt: the image size these weights were trained at is recorded neither"):
        assert input_size(tmp_path, [256, 256]) == [96, 96]
    # the checkpoint of their training, copied beside them, says their size
    torch.save({"best_model": {"input_size": [64, 64]}}, tmp_path / "models" / "checkpoint.pt")
    assert input_size(tmp_path, [256, 256]) == [64, 64]


@pytest.mark.parametrize("configs", [["inference.yaml"], ["train.yaml", "evaluate.yaml"]])
@pytest.mark.parametrize("name", ["egeunet_skin_lesion", "unetv2_polyp"])
def test_2d_weights_trained_outside_their_bundle_run_at_the_size_their_checkpoint_records(
    tmp_path, name, configs, caplog
):
    # a training with --ckpt_dir outside the bundle records its size in its checkpoint only: evaluated or served from
    # there, the weights had been run at the bundle's default size
    from monai.bundle import ConfigParser

    default = ConfigParser.load_config_file(bundle_dir(name) / "configs" / "train.yaml")["image_size"]
    parser = ConfigParser()
    parser.read_config([str(bundle_dir(name) / "configs" / c) for c in configs])
    parser["bundle_root"] = str(bundle_dir(name))
    runs = tmp_path / "runs"
    if configs == ["inference.yaml"]:
        parser["model_file"] = str(runs / "model.pt")
    else:
        parser["ckpt_dir"] = str(runs)
    assert parser.get_parsed_content("image_size") == default  # nothing records the size of weights not there yet
    runs.mkdir()
    saver = BestModelSaver(runs / "model.pt", torch.nn.Linear(3, 1), "score", input_size=(64, 80))
    saver(_Validator(0.5))
    torch.save({"best_model": saver.state_dict()}, runs / "checkpoint.pt")
    parser.ref_resolver.reset()
    assert parser.get_parsed_content("image_size") == [64, 80]
    # a checkpoint that cannot be read leaves the default, with a warning
    (runs / "checkpoint.pt").write_bytes(b"cut short")
    parser.ref_resolver.reset()
    with caplog.at_level(logging.WARNING):
        assert parser.get_parsed_content("image_size") == default
    assert f"the image size {runs / 'model.pt'} was trained at is not known: {runs / 'checkpoint.pt'}: not a" in (
        caplog.text
    )


def test_best_model_saver_records_the_trained_classes_in_the_bundle_metadata(tmp_path, caplog):
    metadata_file = tmp_path / "metadata.json"
    shutil.copy(bundle_dir("egeunet3d_pancreas_ct") / "configs" / "metadata.json", metadata_file)
    plan = {**load_plan(None), "num_classes": 2, "class_names": ["spleen"], "labels": {"1": "spleen"}}
    net = torch.nn.Linear(3, 1)
    saver = BestModelSaver(
        tmp_path / "model.pt", net, "score", plan, tmp_path / "plan.json", metadata_file=metadata_file
    )
    with caplog.at_level(logging.WARNING):
        saver(_Validator(0.5))
    output = json.loads(metadata_file.read_text())["network_data_format"]["outputs"]["pred"]
    # the pancreas recipe's classes had stayed there: MONAI Label named the spleen "pancreas"
    assert output["channel_def"] == {"0": "background", "1": "spleen"} and output["num_channels"] == 2
    assert f"{metadata_file}: its output classes are now background, spleen" in caplog.text
    # a later best of the same classes leaves the file as it is
    written = metadata_file.stat().st_mtime_ns
    caplog.clear()
    saver(_Validator(0.6))
    assert metadata_file.stat().st_mtime_ns == written and "output classes" not in caplog.text


def test_best_model_saver_keeps_training_when_the_metadata_cannot_be_written(tmp_path, caplog):
    (tmp_path / "metadata.json").write_text("{not json")
    plan = {**load_plan(None), "postprocessing": {"keep_largest": []}}
    saver = BestModelSaver(
        tmp_path / "model.pt", torch.nn.Linear(3, 1), "score", plan, tmp_path / "plan.json", tmp_path / "metadata.json"
    )
    with caplog.at_level(logging.WARNING):
        saver(_Validator(0.5))
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "plan.json").is_file()
    assert f"{tmp_path / 'metadata.json'}: the classes of {tmp_path / 'model.pt'} could not be recorded there" in (
        caplog.text
    )


def test_weights_loader_loads_a_plain_state_dict_and_a_training_checkpoint(tmp_path):
    source = torch.nn.Linear(3, 1)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    torch.save({"model": source.state_dict(), "trainer": {"epoch": 1}}, tmp_path / "checkpoint.pt")
    # as other training scripts write them: under "state_dict", and from a data-parallel wrapper ("module." names)
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, tmp_path / "lightning.pt")
    torch.save(torch.nn.DataParallel(source).state_dict(), tmp_path / "parallel.pt")
    for name in ("model.pt", "checkpoint.pt", "lightning.pt", "parallel.pt"):
        target = torch.nn.Linear(3, 1)
        WeightsLoader(tmp_path / name, target)(None)
        torch.testing.assert_close(target.weight, source.weight)


def test_weights_that_are_not_finite_are_refused(tmp_path):
    # loaded, NaN weights gave every case an empty label map, reported as done
    source = torch.nn.Linear(3, 2)
    with torch.no_grad():
        source.weight[1, 2] = float("nan")
        source.bias[0] = float("inf")
    torch.save(source.state_dict(), tmp_path / "model.pt")
    target = torch.nn.Linear(3, 2)
    before = target.weight.detach().clone()
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(tmp_path / 'model.pt'))}: 2 of 8 weights are NaN or"):
        load_weights(tmp_path / "model.pt", target)
    torch.testing.assert_close(target.weight, before)


def test_missing_weights_name_the_settings_that_give_their_path(tmp_path):
    with pytest.raises(CheckpointError, match=r"model.pt: checkpoint does not exist") as raised:
        load_weights(tmp_path / "model.pt", torch.nn.Linear(3, 2))
    assert "--model_file of the 2D bundles, --model_files of the CT bundles" in str(raised.value)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="flock: POSIX only")
def test_a_second_training_with_the_same_folder_is_refused(tmp_path):
    import fcntl

    # another process training with this folder holds its lock (flock locks belong to one open file)
    with open(tmp_path / ".training.lock", "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        trainer, *_ = _trainer(tmp_path, max_epochs=1)
        with pytest.raises(CheckpointError, match="another training is running with this folder"):
            trainer.run()
        assert not (tmp_path / "checkpoint.pt").exists()
    # once it has ended, training runs, and its own lock is given back when it completes
    trainer, *_ = _trainer(tmp_path, max_epochs=1)
    trainer.run()
    with open(tmp_path / ".training.lock", "a") as after:
        fcntl.flock(after, fcntl.LOCK_EX | fcntl.LOCK_NB)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="flock: POSIX only")
def test_every_process_of_a_training_job_stops_at_start_when_another_training_holds_its_checkpoint(tmp_path):
    from monai_unets.data.atomic import hold_folder, release_folder

    from tests.distributed import run_script_in_two_processes

    models = tmp_path / "models"
    assert hold_folder(models, ".training.lock")  # the running training
    try:
        returncodes, outputs = run_script_in_two_processes(
            "from monai_unets.handlers import CheckpointError, hold_training\n"
            f"try:\n    hold_training({str(models / 'checkpoint.pt')!r})\n"
            "except CheckpointError as error:\n    print('refused:', error, flush=True); raise\n"
            "print('held', flush=True)"
        )
    finally:
        release_folder(models, ".training.lock")
    assert returncodes == [1, 1]
    assert outputs[0].startswith(f"refused: {models}: another training is running with this folder")
    assert outputs[1] == ""  # rank 0 alone says why
    assert list(models.iterdir()) == []


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="flock: POSIX only")
def test_a_training_of_another_checkpoint_is_refused_the_logs_folder_of_a_running_one(tmp_path):
    import fcntl

    from monai_unets.data.atomic import release_folder
    from monai_unets.handlers import hold_training

    logs, mine, folds = tmp_path / "logs", tmp_path / "models2", tmp_path / "models"
    logs.mkdir()
    # the running training (its checkpoint in another folder) holds its logs folder; a training with another
    # --ckpt_dir had written its TensorBoard files and error log in there
    with open(logs / ".training.lock", "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            with pytest.raises(CheckpointError) as refusal:
                hold_training(mine / "checkpoint.pt", logs)
            assert str(refusal.value) == (
                f"{logs}: another training is writing its logs (TensorBoard files, error log) into this folder; wait "
                "for it to end, or give this one another --output_dir."
            )
            # a fold of another checkpoint shares the logs folder, as folds train side by side
            hold_training(folds / "checkpoint_fold1.pt", logs)
        finally:
            release_folder(mine, ".training.lock")
            release_folder(folds, ".training_fold1.lock")
            release_folder(logs, ".training_fold1.lock")
    assert sorted(p.name for p in logs.iterdir()) == [".training.lock"]


@pytest.mark.parametrize(
    ("checkpoint", "lock"),
    [
        ("checkpoint.pt", ".training.lock"),
        ("checkpoint_fold2.pt", ".training_fold2.lock"),
        ("run.pt", ".run.training.lock"),
    ],
)
def test_each_checkpoint_has_its_own_lock_named_as_its_plan_is(checkpoint, lock):
    from monai_unets.handlers.checkpoint import _lock_name

    assert _lock_name(f"models/{checkpoint}") == lock


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="flock: POSIX only")
def test_trainings_of_other_checkpoints_in_one_folder_run_side_by_side(tmp_path):
    import fcntl

    from monai_unets.handlers.checkpoint import _lock_name

    # another fold's training holds its own checkpoint's lock in the same models folder
    assert _lock_name(tmp_path / "checkpoint_fold1.pt") != _lock_name(tmp_path / "checkpoint.pt") == ".training.lock"
    with open(tmp_path / _lock_name(tmp_path / "checkpoint_fold1.pt"), "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        trainer, *_ = _trainer(tmp_path, max_epochs=1)
        trainer.run()
        assert (tmp_path / "checkpoint.pt").is_file()


def _case_trainer(
    tmp_path,
    names,
    max_epochs=2,
    checkpoint="checkpoint.pt",
    earlier=(),
    skipped=(),
    validation=(),
    folder=None,
    resume=True,
):
    """A trainer over a dataset of named cases (what a bundle's datalist gives, less those the data check ``skipped``),
    checkpointed with its best saver, which is attached to a validator of the ``validation`` cases when given."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    cases = [{"image": torch.full((3,), float(ord(name))), "label": torch.ones(1), "name": name} for name in names]
    if folder is not None:  # the files a datalist names, as absolute paths
        cases = [{**case, "file": str(folder / "imagesTr" / f"{case['name']}.nii.gz")} for case in cases]
    listed = cases
    if folder is not None and (folder / "labelsTr").is_dir():  # the label files the datalist names, read elsewhere
        listed = [{**case, "label": str(folder / "labelsTr" / f"{case['name']}.nii.gz")} for case in cases]
    checked = CheckedCases([case for case in cases if case["name"] not in skipped], listed=listed)
    trainer = _mse_trainer(net, optimizer, DataLoader(Dataset(checked), batch_size=2), max_epochs)
    saver = BestModelSaver(tmp_path / "model.pt", net, metric_name="score")
    if validation:
        validator = Engine(lambda engine, batch: None)
        validator.data_loader = DataLoader(Dataset([{"name": name} for name in validation]))
        saver.attach(validator)
    state = {"model": net, "optimizer": optimizer, "best_model": saver}
    earlier = [tmp_path / name for name in earlier]
    TrainingCheckpoint(tmp_path / checkpoint, state, resume=resume, earlier=earlier).attach(trainer)
    epochs: list[int] = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    return trainer, net, saver, epochs


def test_a_finished_training_resumes_only_on_its_own_cases_and_another_one_starts_anew(tmp_path, caplog):
    # MONAI Label trains again once more images are labelled, with resume on: that training had done nothing
    trainer, _, saver, epochs = _case_trainer(tmp_path, ["a", "b", "c"])
    trainer.run()
    assert epochs == [1, 2]
    trainer, _, saver, epochs = _case_trainer(tmp_path, ["c", "b", "a"])  # the same cases: nothing left to do
    with caplog.at_level("WARNING"):
        trainer.run()
    assert epochs == []
    # served, the command line's flags are no remedy: the request's max_epochs is named too
    assert "Raise max_epochs to train longer (--max_epochs, or max_epochs in a MONAI Label /train request)" in (
        caplog.text
    )
    caplog.clear()
    trainer, _, saver, epochs = _case_trainer(tmp_path, ["a", "b", "c", "d"])
    saver.best_metric, saver.best_metric_epoch = 0.9, 1  # as a validation of this run would set it
    with caplog.at_level("WARNING"):
        trainer.run()
    assert epochs == [1, 2]
    assert "checkpoint.pt is of a training on other cases: this one starts at epoch 1" in caplog.text
    assert saver.best_metric == 0.9  # not replaced by the other training's best score


def test_a_training_that_does_not_go_on_with_the_one_before_keeps_its_weights(tmp_path, caplog):
    # the first validation of another training (a dataset given by mistake, --resume False) had replaced the best
    # model.pt of a long one for good
    def files(folder):
        return {name: (folder / name).read_bytes() for name in ("model.pt", "checkpoint.pt")}

    _case_trainer(tmp_path, ["a", "b"], max_epochs=1)[0].run()
    _case_trainer(tmp_path, ["a", "b"], max_epochs=2)[0].run()  # goes on with it: nothing to keep
    assert not (tmp_path / "previous").exists()
    before = files(tmp_path)
    with caplog.at_level("WARNING"):
        _case_trainer(tmp_path, ["a", "c"], max_epochs=1)[0].run()
    assert files(tmp_path / "previous") == before != files(tmp_path)
    assert (
        f"this training replaces the weights of another ({tmp_path / 'model.pt'}); they are kept in "
        f"{tmp_path / 'previous'} with their checkpoint" in caplog.text
    )
    before = files(tmp_path)
    _case_trainer(tmp_path, ["a", "c"], max_epochs=1, resume=False)[0].run()
    assert files(tmp_path / "previous") == before


def test_weights_kept_from_a_training_are_kept_whole_or_not_at_all(tmp_path, monkeypatch):
    import errno

    from monai_unets.handlers import checkpoint

    _case_trainer(tmp_path, ["a", "b"], max_epochs=1)[0].run()
    _case_trainer(tmp_path, ["a", "c"], max_epochs=1)[0].run()
    kept = {p.name: p.read_bytes() for p in (tmp_path / "previous").iterdir()}
    copy = shutil.copyfile

    def disk_full_at_the_checkpoint(source, target):
        if Path(source).name == "checkpoint.pt":
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return copy(source, target)

    # a disk filling up halfway had left one training's model.pt beside the checkpoint of the one before
    monkeypatch.setattr(checkpoint.shutil, "copyfile", disk_full_at_the_checkpoint)
    with pytest.raises(OSError, match=r"previous: the weights this training replaces could not be kept there"):
        _case_trainer(tmp_path, ["a", "d"], max_epochs=1)[0].run()
    assert {p.name: p.read_bytes() for p in (tmp_path / "previous").iterdir()} == kept
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".previous")) == []


def test_a_dataset_moved_or_reached_through_a_link_is_the_same_training(tmp_path):
    # the same files under another mount point had started the training anew, its first validation replacing the
    # best model.pt of the interrupted one
    trainer, *_ = _case_trainer(tmp_path, ["a", "b"], max_epochs=1, folder=Path("/data/Task07"))
    trainer.run()
    trainer, _, _, epochs = _case_trainer(tmp_path, ["a", "b"], max_epochs=2, folder=Path("/workspace/data/Task07"))
    trainer.run()
    assert epochs == [2]
    # other files in the new place are another training
    trainer, _, _, epochs = _case_trainer(tmp_path, ["a", "c"], max_epochs=2, folder=Path("/workspace/data/Task07"))
    trainer.run()
    assert epochs == [1, 2]


def test_a_checkpoint_of_an_earlier_version_that_knew_absolute_paths_says_why_it_is_not_resumed(tmp_path, caplog):
    from monai_unets.handlers.checkpoint import _digest, _listed_cases

    trainer, *_ = _case_trainer(tmp_path, ["a", "b"], max_epochs=1, folder=Path("/data/Task07"))
    trainer.run()
    # as versions that recorded no images wrote it: the digest of the absolute paths
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    state["trainer"]["cases"] = _digest(_listed_cases(trainer), located=True)
    del state["trainer"]["images"]
    torch.save(state, tmp_path / "checkpoint.pt")
    trainer, _, _, epochs = _case_trainer(tmp_path, ["a", "b"], max_epochs=2, folder=Path("/workspace/data/Task07"))
    with caplog.at_level("WARNING"):
        trainer.run()
    # the dataset moved: the same cases to the user, "other cases" had been all the message said
    assert epochs == [1, 2]
    assert (
        "is of a training on other cases or paths (written by an earlier version, which knew its cases by their "
        in (caplog.text)
    )
    assert "run it once from the dataset's old path)" in caplog.text


def test_another_dataset_whose_files_have_the_same_names_is_another_training(tmp_path):
    # a dataset made again (or exported anew) under the same names had resumed the training of the first one, whose
    # best score then kept its weights as model.pt
    for dataset, content in (("first", b"x" * 100), ("copy", b"x" * 100), ("again", b"y" * 120)):
        (tmp_path / dataset / "imagesTr").mkdir(parents=True)
        for name in ("a", "b"):
            (tmp_path / dataset / "imagesTr" / f"{name}.nii.gz").write_bytes(content)
    trainer, *_ = _case_trainer(tmp_path, ["a", "b"], max_epochs=1, folder=tmp_path / "first")
    trainer.run()
    trainer, _, _, epochs = _case_trainer(tmp_path, ["a", "b"], max_epochs=2, folder=tmp_path / "copy")
    trainer.run()
    assert epochs == [2]  # the same files copied elsewhere: the same training
    trainer, _, _, epochs = _case_trainer(tmp_path, ["a", "b"], max_epochs=2, folder=tmp_path / "again")
    trainer.run()
    assert epochs == [1, 2]


class _RecordDraws(Randomizable, Transform):
    """Records one draw of its random state per case, as an augmentation draws its flips and crops."""

    def __init__(self, draws: list[float]) -> None:
        self.draws = draws

    def randomize(self, data=None) -> None:
        self.draws.append(float(self.R.random_sample()))

    def __call__(self, data):
        self.randomize()
        return data


def _drawing_run(folder: Path, epochs: list[int]) -> list[float]:
    """The draws of a training run once per entry of ``epochs`` (its max_epochs), each run resuming the last, seeded
    at each start as a bundle's initialize seeds it."""
    draws: list[float] = []
    for max_epochs in epochs:
        torch.manual_seed(42)
        net = torch.nn.Linear(3, 1)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        cases = [{"image": torch.ones(3), "label": torch.ones(1)} for _ in range(4)]
        loader = DataLoader(Dataset(cases, _RecordDraws(draws)), batch_size=2, shuffle=True)
        trainer = _mse_trainer(net, optimizer, loader, max_epochs)
        TrainingCheckpoint(folder / "checkpoint.pt", {"model": net, "optimizer": optimizer}).attach(trainer)
        trainer.run()
    return draws


def test_a_resumed_training_draws_new_augmentations_reproducibly(tmp_path):
    # a resumed run was seeded as a fresh one: its epochs drew the first epochs' shuffles and flips again
    interrupted = _drawing_run(tmp_path / "a", [1, 2])
    assert len(interrupted) == 8
    assert interrupted[4:] != interrupted[:4]
    assert _drawing_run(tmp_path / "b", [1, 2]) == interrupted


def test_a_label_corrected_in_place_makes_another_training(tmp_path):
    # MONAI Label's annotator saves a corrected label over the old one, at the same size for an uncompressed
    # NIfTI: the next /train had taken its cases for those of the finished training and done nothing
    for folder in ("imagesTr", "labelsTr"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        for name in ("a", "b"):
            (tmp_path / "data" / folder / f"{name}.nii.gz").write_bytes(b"x" * 100)
    trainer, _, _, epochs = _case_trainer(tmp_path, ["a", "b"], max_epochs=1, folder=tmp_path / "data")
    trainer.run()
    assert epochs == [1]
    trainer, _, _, epochs = _case_trainer(tmp_path, ["a", "b"], max_epochs=1, folder=tmp_path / "data")
    trainer.run()
    assert epochs == []  # the same cases: nothing left to do
    (tmp_path / "data" / "labelsTr" / "b.nii.gz").write_bytes(b"y" * 100)
    trainer, _, _, epochs = _case_trainer(tmp_path, ["a", "b"], max_epochs=1, folder=tmp_path / "data")
    trainer.run()
    assert epochs == [1]


@pytest.mark.parametrize("recorded", [{"located": True}, {"sized": False}, {"labels": False}])
def test_a_checkpoint_of_an_earlier_version_s_digest_of_its_cases_still_resumes(tmp_path, recorded):
    # earlier versions recorded the digest of the absolute paths, then of the relative paths without the files'
    # sizes: their trainings go on after an update
    from monai_unets.handlers.checkpoint import _digest

    for folder in ("imagesTr", "labelsTr"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        for name in ("a", "b"):
            (tmp_path / "data" / folder / f"{name}.nii.gz").write_bytes(b"x")
    trainer, *_ = _case_trainer(tmp_path, ["a", "b"], max_epochs=1, folder=tmp_path / "data")
    trainer.run()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    cases = trainer.data_loader.dataset.data.listed
    state["trainer"]["cases"] = _digest(cases, **recorded)
    assert state["trainer"]["cases"] != _digest(cases)
    torch.save(state, tmp_path / "checkpoint.pt")
    trainer, _, _, epochs = _case_trainer(tmp_path, ["a", "b"], max_epochs=2, folder=tmp_path / "data")
    trainer.run()
    assert epochs == [2]


def test_a_case_skipped_as_bad_since_the_last_run_leaves_the_training_the_one_a_rerun_goes_on_with(tmp_path):
    trainer, *_ = _case_trainer(tmp_path, ["a", "b", "c"], max_epochs=1)
    trainer.run()
    # "c" was damaged since and the data check skipped it: the listed cases are the same, so this training goes on
    trainer, _, _, epochs = _case_trainer(tmp_path, ["a", "b", "c"], max_epochs=2, skipped=["c"])
    trainer.run()
    assert epochs == [2]


def test_a_best_score_of_other_validation_cases_is_not_one_to_beat(tmp_path, caplog):
    for folder, validation, kept in [("same", ["w", "v"], 0.9), ("other", ["v"], -math.inf)]:
        trainer, _, saver, _ = _case_trainer(tmp_path / folder, ["a", "b"], max_epochs=1, validation=["v", "w"])
        saver.best_metric, saver.best_metric_epoch = 0.9, 1  # as the validation of epoch 1 would set them
        trainer.run()
        trainer, _, saver, epochs = _case_trainer(tmp_path / folder, ["a", "b"], max_epochs=2, validation=validation)
        caplog.clear()
        with caplog.at_level("WARNING"):
            trainer.run()
        assert epochs == [2] and saver.best_metric == kept
        warned = "the best score so far (0.9000, epoch 1) is of other validation cases than this run's"
        assert (warned in caplog.text) == (folder == "other")


def test_a_training_without_validation_cases_still_writes_its_weights(tmp_path, caplog):
    trainer, net, _, epochs = _case_trainer(tmp_path, ["a", "b"])
    with caplog.at_level("WARNING"):
        trainer.run()
    assert epochs == [1, 2]
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(saved[key], value)
    assert "no validation case was scored in this training" in caplog.text


def test_a_fold_goes_on_from_the_shared_checkpoint_it_wrote_before_its_own(tmp_path, caplog):
    # folds had shared models/checkpoint.pt: fold 1 interrupted then, resumed with its own checkpoint now
    trainer, *_ = _case_trainer(tmp_path, ["a", "b"], max_epochs=1)
    trainer.run()
    trainer, _, _, epochs = _case_trainer(tmp_path, ["a", "b"], 3, "checkpoint_fold1.pt", ["checkpoint.pt"])
    with caplog.at_level("WARNING"):
        trainer.run()
    assert epochs == [2, 3]
    assert "resuming from" in caplog.text and (tmp_path / "checkpoint_fold1.pt").is_file()
    # another fold's cases in the shared checkpoint: a training of its own, from epoch 1
    trainer, _, _, epochs = _case_trainer(tmp_path, ["c", "d"], 2, "checkpoint_fold2.pt", ["checkpoint.pt"])
    trainer.run()
    assert epochs == [1, 2]


def test_the_images_weights_trained_on_come_from_their_trainings_checkpoints(tmp_path, caplog):
    from monai_unets.handlers import trained_cases

    for fold, images in [(0, ["a.nii.gz", "b.nii.gz"]), (1, ["b.nii.gz", "c.nii.gz"])]:
        torch.save({"trainer": {"epoch": 1, "iteration": 1, "images": images}}, tmp_path / f"checkpoint_fold{fold}.pt")
    (tmp_path / "checkpoint.pt").write_bytes(b"truncated")
    folds = [tmp_path / "model_fold0.pt", tmp_path / "model_fold1.pt"]
    # an ensemble of folds trained on the images of every fold; weights named otherwise have no known checkpoint
    assert trained_cases([*folds, tmp_path / "best.pt"]) == [{"image": f"{n}.nii.gz"} for n in "abc"]
    with caplog.at_level("WARNING"):
        assert trained_cases([tmp_path / "model.pt"]) == []
    assert f"the images {tmp_path / 'model.pt'} trained on are not known" in caplog.text


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="flock: POSIX only")
@pytest.mark.parametrize("name", ["egeunet_skin_lesion", "egeunet3d_pancreas_ct"])
@pytest.mark.parametrize("fails", [False, True])
def test_a_training_run_in_a_process_that_goes_on_gives_up_its_locks_when_it_ends(name, fails, tmp_path):
    # MONAI Label runs /train?run_sync=true in its server process: that process had kept the locks, and every later
    # background /train (another process) was refused as if that training still ran; MONAI runs no finalize after
    # a failed run, so a failed training had kept them until the server restarted
    import subprocess
    import sys

    from monai.bundle import ConfigWorkflow

    shutil.copytree(bundle_dir(name), tmp_path / name)
    workflow = ConfigWorkflow(
        config_file=str(tmp_path / name / "configs" / "train.yaml"),
        workflow_type="train",
        bundle_root=str(tmp_path / name),
    )
    workflow.initialize()
    checkpoint, logs = (Path(workflow.parser.get_parsed_content(k)) for k in ("checkpoint_path", "output_dir"))
    # what another process's hold_training takes: the lock files of the checkpoint's folder and of the logs folder
    take = "import fcntl\n" + "".join(
        f"fcntl.flock(open({str(folder / '.training.lock')!r}, 'a'), fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        for folder in (checkpoint.parent, logs)
    )
    assert subprocess.run([sys.executable, "-c", take], capture_output=True).returncode == 1  # the training holds them
    if fails:
        workflow.parser["train#trainer"] = "$type('Failing', (), {'run': lambda self: 1 / 0})()"
        with pytest.raises(RuntimeError) as failure:  # MONAI's config expression error, raised from the run's
            workflow.run()
        assert isinstance(failure.value.__cause__, ZeroDivisionError)
    else:
        workflow.finalize()
    taken = subprocess.run([sys.executable, "-c", take], capture_output=True, text=True)
    assert taken.returncode == 0, taken.stderr


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="flock: POSIX only")
def test_a_training_stopped_by_a_setting_takes_no_lock(tmp_path):
    # a process that goes on after initialize failed (MONAI Label's run_sync training with a wrong request value)
    # had kept the locks taken before the settings were checked
    from monai.bundle import ConfigWorkflow
    from monai_unets.handlers import SettingError

    shutil.copytree(bundle_dir("egeunet_skin_lesion"), tmp_path / "bundle")
    workflow = ConfigWorkflow(
        config_file=str(tmp_path / "bundle" / "configs" / "train.yaml"),
        workflow_type="train",
        bundle_root=str(tmp_path / "bundle"),
        max_epochs="abc",
    )
    with pytest.raises(RuntimeError) as failure:
        workflow.initialize()
    assert isinstance(failure.value.__cause__, SettingError)
    assert not list(tmp_path.rglob(".training.lock"))
