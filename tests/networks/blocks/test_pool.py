from __future__ import annotations

import pytest
import torch
from monai_unets.networks.blocks.pool import MaxPool2x


@pytest.mark.parametrize("shape", [(2, 3, 16), (2, 3, 8, 12), (1, 2, 9, 15), (1, 4, 7, 6, 5)])
def test_equals_torch_max_pooling(shape):
    x = torch.randn(*shape)
    x[0, 0, 1] = float("nan")  # NaN propagates as in torch's pooling
    pool = [torch.nn.MaxPool1d, torch.nn.MaxPool2d, torch.nn.MaxPool3d][len(shape) - 3](kernel_size=2, stride=2)
    expected = pool(x)
    got = MaxPool2x()(x)
    assert got.shape == expected.shape
    assert torch.equal(got.nan_to_num(-1.0), expected.nan_to_num(-1.0))
    assert torch.equal(got.isnan(), expected.isnan())


def test_gradient_goes_to_the_maximum():
    x = torch.tensor([[[[1.0, 4.0], [3.0, 2.0]]]], requires_grad=True)
    MaxPool2x()(x).sum().backward()
    assert torch.equal(x.grad, torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]]))
