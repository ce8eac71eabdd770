from __future__ import annotations

import pytest
import torch
from monai_unets.networks import ChannelLayerNorm


@pytest.mark.parametrize("shape", [(2, 6, 5, 7), (1, 4, 3, 5, 2)])
def test_matches_torch_layer_norm_over_channels(shape):
    norm = ChannelLayerNorm(shape[1])
    with torch.no_grad():
        norm.weight.uniform_()
        norm.bias.uniform_()
    x = torch.randn(*shape)
    reference = torch.nn.functional.layer_norm(x.movedim(1, -1), (shape[1],), norm.weight, norm.bias, eps=1e-6).movedim(
        -1, 1
    )
    torch.testing.assert_close(norm(x), reference)
