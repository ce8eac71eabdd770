"""Tests of the Attention U-Net with grid attention gates (Oktay et al., 2018)."""

from __future__ import annotations

import pytest
import torch
from monai_unets.networks.attention_unet import AttentionGateUNet, AttentionGateUnet
from monai_unets.networks.blocks.attention import AttentionGate, SelfAttentionBlock
from monai_unets.networks.blocks.utils import resize_to
from monai_unets.networks.utils import count_parameters

from tests.conftest import assert_onnx_matches_eager

SMALL = (2, 4, 6, 8, 8)


@pytest.mark.parametrize("deep_supervision", [True, False])
@pytest.mark.parametrize(
    "spatial_dims,size", [(2, (32, 32)), (2, (37, 50)), (2, (16, 97)), (3, (16, 16, 16)), (3, (19, 24, 17))]
)
def test_shapes(spatial_dims: int, size: tuple, deep_supervision: bool) -> None:
    net = AttentionGateUNet(spatial_dims, 2, 4, channels=SMALL, deep_supervision=deep_supervision).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 2, *size))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 4, *size)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_deep_supervision_train_vs_eval(spatial_dims: int) -> None:
    size = (21, 18, 16)[:spatial_dims]
    net = AttentionGateUNet(spatial_dims, 1, 3, channels=SMALL, deep_supervision=True)
    x = torch.randn(2, 1, *size)
    outs = net.train()(x)
    assert isinstance(outs, list) and len(outs) == 5  # fused output + one head per decoder level
    assert all(o.shape == (2, 3, *size) for o in outs)
    net.eval()
    with torch.no_grad():
        out = net(x)
        # the eval output is the fused map: the 1x1 fusion of the per-level heads, replayed here step by step
        sides = []
        h = x
        skips = []
        for encoder in net.encoders:
            h = encoder(h)
            skips.append(h)
        h = skips.pop()
        g = net.gating(h)
        for k, decoder in enumerate(net.decoders):
            h, side = decoder(h, skips[len(skips) - 1 - k], g)
            g = h
            sides.append(resize_to(side, list(size)))
        fused = net.head(torch.cat(sides[::-1], dim=1))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, *size)
    torch.testing.assert_close(out, fused)
    plain = AttentionGateUNet(spatial_dims, 1, 3, channels=SMALL, deep_supervision=False).train()
    assert isinstance(plain(x), torch.Tensor)


def test_official_parameter_counts() -> None:
    # the published 3D CT network (16-256 filters, two gates per level, deep supervision), 1 input, 4 classes
    net = AttentionGateUNet(spatial_dims=3, in_channels=1, out_channels=4)
    assert count_parameters(net) == 6_473_322
    # the gates, their merging convs and the gating signal add 585,318 parameters to the plain U-Net
    gates = sum(count_parameters(d.gate) for d in net.decoders if d.gate is not None)
    assert gates + count_parameters(net.gating) == 585_318
    assert count_parameters(AttentionGateUNet(spatial_dims=2, in_channels=3, out_channels=1)) == 2_379_087


def test_layout() -> None:
    net = AttentionGateUNet(3, 1, 2, channels=SMALL, self_attention=True, num_gates=2)
    assert isinstance(net.bottleneck_attention, SelfAttentionBlock)
    assert net.decoders[-1].gate is None  # the finest skip is not gated
    for decoder in list(net.decoders)[:-1]:
        assert len(decoder.gate.gates) == 2 and isinstance(decoder.gate.gates[0], AttentionGate)
        assert decoder.gate.merge is not None
    assert isinstance(net.encoders[1][0], torch.nn.MaxPool3d)
    single = AttentionGateUNet(2, 1, 2, channels=SMALL, num_gates=1, deep_supervision=False)
    assert single.decoders[0].gate.merge is None and len(single.decoders[0].gate.gates) == 1
    assert isinstance(single.bottleneck_attention, torch.nn.Identity)
    assert single.head.conv.conv.in_channels == SMALL[0]
    assert AttentionGateUnet is AttentionGateUNet


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="spatial_dims"):
        AttentionGateUNet(1, 1, 2)
    with pytest.raises(ValueError, match="channels"):
        AttentionGateUNet(3, 1, 2, channels=(4,))
    with pytest.raises(ValueError, match="num_gates"):
        AttentionGateUNet(3, 1, 2, num_gates=0)
    with pytest.raises(ValueError, match="16"):
        AttentionGateUNet(2, 1, 1, channels=SMALL)(torch.randn(1, 1, 15, 40))


def test_self_attention_starts_as_identity() -> None:
    torch.manual_seed(0)
    plain = AttentionGateUNet(2, 1, 2, channels=SMALL).eval()
    torch.manual_seed(0)
    with_sa = AttentionGateUNet(2, 1, 2, channels=SMALL, self_attention=True).eval()
    with_sa.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(1, 1, 35, 32)
    with torch.no_grad():
        torch.testing.assert_close(with_sa(x), plain(x))


@pytest.mark.parametrize("spatial_dims,deep_supervision", [(2, True), (2, False), (3, True)])
def test_gradients_reach_every_parameter(spatial_dims: int, deep_supervision: bool) -> None:
    net = AttentionGateUNet(spatial_dims, 1, 2, channels=SMALL, deep_supervision=deep_supervision, self_attention=True)
    size = (33, 40, 18)[:spatial_dims]
    out = net(torch.randn(2, 1, *size))
    loss = sum(o.sum() for o in out) if isinstance(out, list) else out.sum()
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.bottleneck_attention.gamma.grad is not None


@pytest.mark.parametrize("spatial_dims,size", [(2, (37, 42)), (3, (17, 20, 16))])
def test_torchscript_matches_eager(spatial_dims: int, size: tuple) -> None:
    net = AttentionGateUNet(spatial_dims, 1, 2, channels=SMALL, self_attention=True)
    with torch.no_grad():
        net.bottleneck_attention.gamma.fill_(0.3)
    scripted = torch.jit.script(net)
    x = torch.randn(2, 1, *size)  # batch 2: training-mode batch norm needs > 1 value on the 1-voxel bottleneck
    with torch.no_grad():
        net.eval()
        scripted.eval()
        torch.testing.assert_close(scripted(x), net(x))
        net.train()
        scripted.train()
        for a, b in zip(scripted(x), net(x)):
            assert a.shape == b.shape


@pytest.mark.parametrize(
    "spatial_dims,size,deep_supervision", [(2, (37, 42), True), (2, (32, 48), False), (3, (17, 20, 16), True)]
)
def test_onnx_export_matches_eager(spatial_dims: int, size: tuple, deep_supervision: bool, tmp_path) -> None:
    net = AttentionGateUNet(spatial_dims, 1, 3, channels=SMALL, deep_supervision=deep_supervision, self_attention=True)
    with torch.no_grad():
        net.bottleneck_attention.gamma.fill_(0.3)
    assert_onnx_matches_eager(net.eval(), (torch.randn(1, 1, *size),), tmp_path)
