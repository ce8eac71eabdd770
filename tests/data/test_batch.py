"""Tests of the multi-scale ``prepare_batch`` for MONAI's SupervisedTrainer."""

from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedTrainer
from monai.utils import set_determinism
from monai_unets.data.batch import MultiScaleBatch


def _batch(size: tuple[int, ...] = (352, 352), batch: int = 2) -> dict[str, torch.Tensor]:
    label = torch.zeros(batch, 1, *size)
    label[(slice(None), slice(None)) + tuple(slice(s // 4, s // 2) for s in size)] = 1
    return {"image": torch.rand(batch, 3, *size), "label": label}


@pytest.mark.parametrize(("scale", "side"), [(0.75, 256), (1.0, 352), (1.25, 448)])
def test_polyp_recipe_sizes_and_binary_labels(scale: float, side: int) -> None:
    image, label = MultiScaleBatch(scales=(scale,))(_batch(), device="cpu")
    assert image.shape == (2, 3, side, side) and label.shape == (2, 1, side, side)
    assert image.dtype == torch.float32 and torch.isfinite(image).all()
    assert set(label.unique().tolist()) == {0.0, 1.0}


def test_target_size_rounds_each_dimension_to_the_multiple() -> None:
    prepare = MultiScaleBatch(multiple=32)
    assert prepare.target_size((100, 90), 1.0) == (100, 90)  # scale 1 keeps even non-multiples
    assert prepare.target_size((100, 90), 0.75) == (64, 64)  # 75 / 32 = 2.3, 67.5 / 32 = 2.1
    assert prepare.target_size((256, 192), 1.25) == (320, 256)  # 320 / 32 = 10, 240 / 32 = 7.5 rounds up
    assert prepare.target_size((40, 40), 0.25) == (32, 32)  # never below one multiple
    assert MultiScaleBatch(multiple=1).target_size((10, 7), 0.5) == (5, 4)


def test_3d_integer_labels_and_missing_labels() -> None:
    batch = _batch((16, 16, 8))
    batch["label"] = batch["label"].long() * 2
    image, label = MultiScaleBatch(scales=(1.5,), multiple=4)(batch)
    assert image.shape == (2, 3, 24, 24, 12) and label.shape == (2, 1, 24, 24, 12)
    assert label.dtype == torch.long and set(label.unique().tolist()) == {0, 2}
    image, label = MultiScaleBatch(scales=(0.5,), multiple=4)(batch["image"])
    assert image.shape == (2, 3, 8, 8, 4) and label is None


def test_pairs_and_metatensors_give_plain_tensors() -> None:
    batch = _batch((64, 64))
    image, label = MultiScaleBatch(scales=(0.5,))((MetaTensor(batch["image"]), MetaTensor(batch["label"])))
    assert type(image) is torch.Tensor and type(label) is torch.Tensor
    assert image.shape[2:] == label.shape[2:] == (32, 32)


def test_soft_labels_with_a_linear_label_mode() -> None:
    batch = _batch((128, 128))
    batch["label"] = (torch.rand_like(batch["label"]) > 0.5).float()
    image, label = MultiScaleBatch(scales=(0.75,), label_mode="bilinear")(batch)
    values = label.unique()
    assert values.min() >= 0 and values.max() <= 1 and len(values) > 2


def test_one_scale_per_batch_reproducible_under_seeds() -> None:
    prepare = MultiScaleBatch()

    def sides() -> list[int]:
        return [prepare(_batch((128, 128), batch=3))[0].shape[-1] for _ in range(30)]

    torch.manual_seed(11)
    first = sides()
    torch.manual_seed(11)
    assert sides() == first
    assert set(first) == {96, 128, 160}
    set_determinism(seed=3)
    again = sides()
    set_determinism(seed=3)
    assert sides() == again
    set_determinism(seed=None)
    own = MultiScaleBatch(scales=(0.5, 1.0), generator=torch.Generator().manual_seed(0))
    draws = [own.draw_scale() for _ in range(20)]
    assert set(draws) == {0.5, 1.0} and own.last_scale is None


def test_moves_to_the_device() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    image, label = MultiScaleBatch(scales=(1.25,))(_batch((32, 32)), device=device, non_blocking=True)
    assert image.device.type == label.device.type == device.type
    assert image.shape[-1] == 32  # 40 / 32 = 1.25 rounds down


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="scales"):
        MultiScaleBatch(scales=())
    with pytest.raises(ValueError, match="scales"):
        MultiScaleBatch(scales=(0.0, 1.0))
    with pytest.raises(ValueError, match="multiple"):
        MultiScaleBatch(multiple=0)


def test_one_iteration_of_supervised_trainer() -> None:
    data = [{"image": torch.rand(3, 32, 32), "label": (torch.rand(1, 32, 32) > 0.5).float()} for _ in range(4)]
    network = torch.nn.Conv2d(3, 1, kernel_size=3, padding=1)
    prepare = MultiScaleBatch(scales=(0.5,), multiple=8)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=DataLoader(Dataset(data), batch_size=4),
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=torch.nn.BCEWithLogitsLoss(),
        prepare_batch=prepare,
        decollate=False,
    )
    before = network.weight.detach().clone()
    trainer.run()
    output = trainer.state.output
    assert output["image"].shape == (4, 3, 16, 16) and output["pred"].shape == (4, 1, 16, 16)
    assert output["label"].shape == (4, 1, 16, 16) and torch.isfinite(output["loss"])
    assert prepare.last_scale == 0.5 and not torch.equal(before, network.weight)
