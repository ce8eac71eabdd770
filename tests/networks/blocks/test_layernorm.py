from __future__ import annotations

import pytest
import torch
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


@pytest.mark.parametrize("shape", [(2, 6, 5, 7), (1, 4, 3, 5, 2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_onnx_export_matches_eager(tmp_path, shape, channels_last):
    norm = ChannelLayerNorm(shape[1]).eval()
    with torch.no_grad():
        norm.weight.uniform_()
        norm.bias.uniform_()
    # an offset and scale per channel, so that a mean or variance over the wrong axis shows
    x = torch.randn(*shape) * torch.arange(1, shape[1] + 1).view(1, -1, *[1] * (len(shape) - 2)) + 3.0
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
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
