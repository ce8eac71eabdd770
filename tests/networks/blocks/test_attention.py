"""Tests of the grid attention gate and the self-attention block."""

from __future__ import annotations

import pytest
import torch
from monai_unets.networks.blocks.attention import AttentionGate, SelfAttentionBlock

from tests.conftest import assert_onnx_matches_eager


@pytest.mark.parametrize(
    "spatial_dims,x_size,g_size",
    [(2, (32, 32), (16, 16)), (2, (17, 30), (8, 15)), (3, (8, 9, 12), (4, 4, 6)), (3, (10, 10, 10), (2, 3, 7))],
)
def test_attention_gate_shapes(spatial_dims: int, x_size: tuple, g_size: tuple) -> None:
    gate = AttentionGate(spatial_dims, in_channels=6, gating_channels=10)
    out, alpha = gate(torch.randn(2, 6, *x_size), torch.randn(2, 10, *g_size))
    assert out.shape == (2, 6, *x_size)
    assert alpha.shape == (2, 1, *x_size)
    assert bool(((alpha >= 0) & (alpha <= 1)).all())


def test_attention_gate_layout() -> None:
    gate = AttentionGate(3, in_channels=128, gating_channels=256)
    # theta: 2x2x2 stride-2 conv without bias; phi and psi 1x1 with bias; W = 1x1 conv + BN
    assert gate.theta.kernel_size == (2, 2, 2) and gate.theta.stride == (2, 2, 2) and gate.theta.bias is None
    assert gate.phi.kernel_size == (1, 1, 1) and gate.psi.out_channels == 1
    assert isinstance(gate.W.adn.N, torch.nn.BatchNorm3d)
    # 131,072 + 32,896 + 129 + 16,512 + 256 (one gate of level 4 of the published 3D CT network)
    assert sum(p.numel() for p in gate.parameters()) == 180_865
    small = AttentionGate(2, 8, 4, inter_channels=2, sub_sample=3, norm=None)
    assert small.theta.out_channels == 2 and small.theta.stride == (3, 3) and not hasattr(small.W, "adn")


def test_attention_gate_gradients_script_onnx(tmp_path) -> None:
    gate = AttentionGate(2, in_channels=4, gating_channels=8)
    x, g = torch.randn(2, 4, 13, 10), torch.randn(2, 8, 6, 5)
    out, alpha = gate(x, g)
    (out.sum() + alpha.sum()).backward()
    for name, p in gate.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    gate.eval()
    scripted = torch.jit.script(gate)
    with torch.no_grad():
        for a, b in zip(scripted(x, g), gate(x, g)):
            torch.testing.assert_close(a, b)
    assert_onnx_matches_eager(gate, (x, g), tmp_path)


@pytest.mark.parametrize("spatial_dims,size", [(1, (11,)), (2, (7, 5)), (3, (4, 5, 3))])
def test_self_attention_identity_at_init(spatial_dims: int, size: tuple) -> None:
    block = SelfAttentionBlock(spatial_dims, in_channels=16)
    assert block.query.out_channels == 2 and block.key.out_channels == 2 and block.value.out_channels == 16
    assert torch.equal(block.gamma.detach(), torch.zeros(1))
    x = torch.randn(2, 16, *size)
    out = block(x)
    assert out.shape == x.shape
    assert torch.equal(out, x)


def test_self_attention_small_channels_and_mixing() -> None:
    block = SelfAttentionBlock(2, in_channels=4)
    assert block.query.out_channels == 1  # C // 8 would be 0
    with torch.no_grad():
        block.gamma.fill_(1.0)
    x = torch.randn(1, 4, 6, 6)
    out = block(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    # with uniform attention (zero query/key) every position gets the mean of the values
    with torch.no_grad():
        block.query.weight.zero_()
        block.query.bias.zero_()
    expected = x + block.value(x).mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(block(x), expected)


def test_self_attention_gradients_script_onnx(tmp_path) -> None:
    block = SelfAttentionBlock(3, in_channels=8)
    x = torch.randn(2, 8, 3, 4, 5)
    block(x).sum().backward()
    # at gamma = 0 only gamma receives a non-zero gradient, but every parameter is in the graph
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert block.gamma.grad.abs().sum() > 0
    with torch.no_grad():
        block.gamma.fill_(0.5)
    block.eval()
    scripted = torch.jit.script(block)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), block(x))
    assert_onnx_matches_eager(block, (x,), tmp_path)
