from __future__ import annotations

import pytest
from ignite.engine import Engine
from monai_unets.handlers import FinalValidationHandler


class _Validator:
    def __init__(self):
        self.epochs: list[int] = []

    def run(self, epoch: int) -> None:
        self.epochs.append(epoch)


@pytest.mark.parametrize("max_epochs, expected", [(2, [2]), (5, [5]), (7, [5, 7]), (10, [5, 10])])
def test_validates_every_interval_and_after_the_last_epoch(max_epochs, expected):
    validator = _Validator()
    trainer = Engine(lambda engine, batch: None)
    handler = FinalValidationHandler(interval=5)
    handler.validator = validator  # a stand-in that records when it runs
    handler.attach(trainer)
    trainer.run([0], max_epochs=max_epochs)
    assert validator.epochs == expected


def test_epoch_level_only():
    with pytest.raises(ValueError):
        FinalValidationHandler(interval=5, epoch_level=False).attach(Engine(lambda e, b: None))
