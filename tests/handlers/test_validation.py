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


def test_time_limit_stops_training_and_the_last_weights_are_validated():
    from monai_unets.handlers import TrainingTimeLimit

    validator = _Validator()
    trainer = Engine(lambda engine, batch: None)
    handler = FinalValidationHandler(interval=5)
    handler.validator = validator
    handler.attach(trainer)
    TrainingTimeLimit(minutes=1e-9, clock="cpu").attach(trainer)
    trainer.run([0, 1, 2], max_epochs=10)
    assert trainer.state.iteration == 1
    assert validator.epochs == [1]


def test_no_time_limit_runs_all_epochs():
    from monai_unets.handlers import TrainingTimeLimit

    trainer = Engine(lambda engine, batch: None)
    TrainingTimeLimit(None).attach(trainer)
    trainer.run([0, 1], max_epochs=3)
    assert trainer.state.iteration == 6
