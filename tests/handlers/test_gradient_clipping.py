from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai_unets.handlers import GradientClipping


class _Recorder:
    """Keeps the gradients as the optimizer sees them."""

    def __init__(self, params):
        self.grads: list[torch.Tensor] = []
        self.params = list(params)

    def attach(self, engine):
        from monai.engines.utils import IterationEvents

        engine.add_event_handler(
            IterationEvents.BACKWARD_COMPLETED, lambda e: self.grads.append(self.params[0].grad.clone())
        )


def _trainer(handlers):
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    with torch.no_grad():
        net.weight.fill_(10.0)
    data = [{"image": torch.ones(2, 1, 8, 8) * 100, "label": torch.zeros(2, 1, 8, 8)}]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=data,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.0),
        loss_function=torch.nn.MSELoss(),
        train_handlers=handlers(net),
    )
    return trainer


def test_clips_each_element_before_the_step():
    recorder = {}

    def handlers(net):
        recorder["r"] = _Recorder(net.parameters())
        # the recorder is attached after clipping, so it sees the clipped gradients
        return [GradientClipping(max_value=0.5), recorder["r"]]

    _trainer(handlers).run()
    (grad,) = recorder["r"].grads
    assert grad.abs().max().item() == pytest.approx(0.5)


def test_clips_the_norm():
    recorder = {}

    def handlers(net):
        recorder["r"] = _Recorder(net.parameters())
        return [GradientClipping(max_norm=1.0), recorder["r"]]

    trainer = _trainer(handlers)
    trainer.run()
    total = torch.sqrt(sum(p.grad.pow(2).sum() for p in trainer.network.parameters()))
    assert total.item() == pytest.approx(1.0, rel=1e-4)


def test_needs_exactly_one_threshold():
    with pytest.raises(ValueError):
        GradientClipping()
    with pytest.raises(ValueError):
        GradientClipping(max_value=1.0, max_norm=1.0)
