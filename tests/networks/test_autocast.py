"""AutocastInferer: bfloat16 autocast around an inferer, float32 out, gradients through."""

from __future__ import annotations

import torch
from monai.data import MetaTensor
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai_unets.networks import AttentionGateUNet, AutocastInferer, cpu_bf16_default


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return AttentionGateUNet(3, 1, 3, channels=[4, 8, 16], deep_supervision=True)


def test_bf16_outputs_are_float32_and_close_to_float32_run():
    net, x = _net().eval(), torch.randn(1, 1, 16, 16, 16)
    reference = net(x)
    with torch.no_grad():
        # inside autocast the convolutions run in bfloat16: the output would be bfloat16 without the cast
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert net(x).dtype == torch.bfloat16
        out = AutocastInferer(SimpleInferer())(x, net)
    assert out.dtype == torch.float32
    assert not torch.equal(out, reference)  # it really ran in lower precision
    torch.testing.assert_close(out, reference, atol=0.1, rtol=0.05)


def test_disabled_is_the_wrapped_inferer_exactly():
    net, x = _net().eval(), torch.randn(1, 1, 20, 18, 16)
    window = SlidingWindowInferer((16, 16, 16), overlap=0.25)
    with torch.no_grad():
        torch.testing.assert_close(AutocastInferer(window, enabled=False)(x, net), window(x, net), rtol=0, atol=0)


def test_training_through_autocast_reaches_every_parameter_in_float32():
    net, x = _net().train(), torch.randn(2, 1, 16, 16, 16)
    outputs = AutocastInferer(SimpleInferer())(x, net)
    assert isinstance(outputs, list) and len(outputs) == 3  # deep supervision: fused + 2 decoder levels
    assert all(o.dtype == torch.float32 for o in outputs)
    sum(o.square().mean() for o in outputs).backward()
    for name, p in net.named_parameters():
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32, name


def test_bf16_default_is_off_for_cuda_devices_and_follows_amx_on_the_cpu(monkeypatch):
    assert cpu_bf16_default("cuda:0") is False
    for amx in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
        assert cpu_bf16_default("cpu") is amx
    # AMX tiles without oneDNN's bfloat16 kernels: float32
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert cpu_bf16_default("cpu") is False


class _Recorder(torch.nn.Module):
    """Records the type of what it is called on, and doubles it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[type] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(type(x))
        return x * 2


def test_network_gets_plain_tensors_and_sliding_window_outputs_keep_the_metadata():
    affine = torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0]))
    x = MetaTensor(torch.randn(1, 1, 20, 18, 16), affine=affine)
    for enabled in (False, True):
        net = _Recorder()
        simple = AutocastInferer(SimpleInferer(), enabled=enabled)(x, net)
        window = AutocastInferer(SlidingWindowInferer((16, 16, 16), overlap=0.25), enabled=enabled)(x, net)
        assert set(net.seen) == {torch.Tensor}
        torch.testing.assert_close(torch.as_tensor(simple), x.as_tensor() * 2, atol=0.05, rtol=0.01)
        assert isinstance(window, MetaTensor)
        torch.testing.assert_close(window.affine, affine.double())
