from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai_unets.networks import ChannelLayerNorm

from tests.conftest import assert_onnx_matches_eager


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


def _random_norm(channels: int) -> ChannelLayerNorm:
    norm = ChannelLayerNorm(channels)
    with torch.no_grad():
        norm.weight.uniform_()
        norm.bias.uniform_()
    return norm


def _shifted_input(shape, channels_last: bool) -> torch.Tensor:
    # an offset and scale per channel, so that a mean or variance over the wrong axis shows
    x = torch.randn(*shape) * torch.arange(1, shape[1] + 1).view(1, -1, *[1] * (len(shape) - 2)) + 3.0
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    return x


def _reference(norm: ChannelLayerNorm, x: torch.Tensor) -> torch.Tensor:
    last = x.dim() - 1
    return F.layer_norm(x.movedim(1, last), norm.weight.shape, norm.weight, norm.bias, eps=1e-6).movedim(last, 1)


@pytest.mark.parametrize("shape", [(2, 6, 5, 7), (1, 4, 3, 5, 2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gpu_statistics_match_layer_norm(shape, channels_last):
    # the GPU path's formula, run here on the CPU
    norm, x = _random_norm(shape[1]), _shifted_input(shape, channels_last)
    got = norm._statistics(x)
    torch.testing.assert_close(got, _reference(norm, x), atol=1e-5, rtol=1e-5)
    assert got.stride() == x.stride()  # the input's layout is kept: no copy into another order


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_statistics_of_half_precision_inputs_do_not_overflow(dtype):
    # activations of a few hundred square past float16's range: the statistics are taken in float32
    norm = _random_norm(6)
    x = _shifted_input((2, 6, 5, 7), channels_last=False) * 300
    got = norm._statistics(x.to(dtype))
    assert got.dtype == dtype and torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), _reference(norm, x.to(dtype).float()), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize(
    "shape, statistics", [((2, 8, 256, 256), True), ((1, 8, 256, 256), False), ((2, 8, 6, 6, 6), False)]
)
def test_gpu_takes_var_mean_statistics_on_large_inputs_only(shape, statistics, monkeypatch):
    # any device but the CPU (here the meta device, which has no data) dispatches as a GPU does
    calls = []
    monkeypatch.setattr(ChannelLayerNorm, "_statistics", lambda self, x: calls.append(x.shape) or x)
    ChannelLayerNorm(shape[1]).to("meta")(torch.empty(shape, device="meta"))
    assert calls == ([torch.Size(shape)] if statistics else [])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("shape", [(2, 8, 32, 24), (2, 8, 256, 256)])
def test_cuda_input_matches_layer_norm(shape):
    norm, x = _random_norm(8).cuda(), _shifted_input(shape, channels_last=False).cuda()
    torch.testing.assert_close(norm(x), _reference(norm, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 6, 5, 7), (1, 4, 3, 5, 2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_onnx_export_matches_eager(tmp_path, shape, channels_last):
    norm, x = _random_norm(shape[1]).eval(), _shifted_input(shape, channels_last)
    assert_onnx_matches_eager(norm, (x,), tmp_path)


def test_onnx_export_with_a_dynamic_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    norm = ChannelLayerNorm(5).eval()
    path = str(tmp_path / "norm.onnx")
    torch.onnx.export(
        norm,
        (torch.randn(1, 5, 4, 6),),
        path,
        dynamo=False,
        opset_version=17,
        dynamic_axes={"x": {0: "batch"}},
        input_names=["x"],
    )
    x = torch.randn(3, 5, 4, 6) * 4 + 2
    (got,) = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), norm(x), atol=1e-4, rtol=1e-4)
