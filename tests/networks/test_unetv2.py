"""Tests of U-Net v2 with the PVTv2-b2 and the convolutional encoders, in 2D and 3D."""

from __future__ import annotations

import logging

import pytest
import torch
from monai_unets.networks.blocks.conv_encoder import UNetV2ConvEncoder
from monai_unets.networks.blocks.pvt import PVTv2Encoder
from monai_unets.networks.unetv2 import UNetV2
from monai_unets.networks.utils import count_parameters

pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit")

# the published 25,145,036 minus its unused deconv5 (32 * 32 * 4 * 4 = 16,384)
PVT_UNETV2_PARAMS = 25_128_652
PVT_B2_PARAMS = 24_849_856


@pytest.fixture(scope="module")
def pvt_net() -> UNetV2:
    torch.manual_seed(0)
    return UNetV2(spatial_dims=2, in_channels=3, out_channels=1)


def _ids(size):
    return "x".join(map(str, size))


def test_parameter_count(pvt_net):
    total = count_parameters(pvt_net)
    assert abs(total - PVT_UNETV2_PARAMS) <= 0.01 * PVT_UNETV2_PARAMS
    assert total == PVT_UNETV2_PARAMS
    assert count_parameters(pvt_net.encoder) == PVT_B2_PARAMS
    assert isinstance(pvt_net.encoder, PVTv2Encoder)


def test_conv_encoder_parameter_counts():
    assert count_parameters(UNetV2(2, 3, 1, encoder="conv")) == 1_407_628
    assert count_parameters(UNetV2(3, 1, 1, encoder="conv")) == 4_211_644


def test_decoder_layout(pvt_net):
    assert len(pvt_net.ups) == 3 and len(pvt_net.heads) == 4
    for up in pvt_net.ups:
        assert up.kernel_size == (4, 4) and up.stride == (2, 2) and up.padding == (1, 1) and up.bias is None


@pytest.mark.parametrize("size", [(256, 192), (112, 112), (97, 131), (64, 48)], ids=_ids)
def test_pvt_eval_any_size(pvt_net, size):
    pvt_net.eval()
    with torch.no_grad():
        out = pvt_net(torch.randn(1, 3, *size))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, 1, *size)
    assert torch.isfinite(out).all()


def test_pvt_deep_supervision_outputs(pvt_net):
    pvt_net.train()
    try:
        x = torch.randn(2, 3, 64, 48)
        outs = pvt_net(x)
        assert isinstance(outs, list) and len(outs) == 4
        assert all(o.shape == (2, 1, 64, 48) for o in outs)
        # the finest output is the one returned in eval mode
        pvt_net.eval()
        with torch.no_grad():
            first = pvt_net(x)
        pvt_net.train()
        pvt_net.deep_supervision = False
        with torch.no_grad():
            only = pvt_net(x)
        assert isinstance(only, torch.Tensor) and only.shape == (2, 1, 64, 48)
        assert first.shape == outs[0].shape
    finally:
        pvt_net.deep_supervision = True
        pvt_net.eval()


def test_pvt_heads_match_x4_upsampling_at_multiples_of_32(pvt_net):
    """At sizes that are multiples of 32, resizing to the input size equals the published x4 upsampling."""
    pvt_net.eval()
    captured = {}
    hook = pvt_net.heads[0].register_forward_hook(lambda m, i, o: captured.setdefault("head", o))
    try:
        with torch.no_grad():
            out = pvt_net(torch.randn(1, 3, 64, 96))
    finally:
        hook.remove()
    ref = torch.nn.functional.interpolate(captured["head"], scale_factor=4, mode="bilinear", align_corners=False)
    assert torch.allclose(out, ref, atol=1e-6)


def test_pvt_multiclass():
    # b0 (the smallest PVTv2) keeps this fast; the class count only changes the heads
    net = UNetV2(2, 3, 4, encoder="pvt_v2_b0").eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 48)).shape == (1, 4, 64, 48)


def test_pvt_gradients_reach_every_parameter(pvt_net):
    pvt_net.train()
    pvt_net.zero_grad()
    try:
        # 64x32 keeps two positions per channel at stride 32, which BatchNorm needs in training mode
        outs = pvt_net(torch.randn(1, 3, 64, 32))
        sum(o.mean() for o in outs).backward()
        for name, param in pvt_net.named_parameters():
            assert param.grad is not None, name
            assert torch.isfinite(param.grad).all(), name
    finally:
        pvt_net.zero_grad(set_to_none=True)
        pvt_net.eval()


def test_pvt_torchscript_matches_eager(pvt_net):
    pvt_net.eval()
    scripted = torch.jit.script(pvt_net)
    x = torch.randn(1, 3, 97, 70)
    with torch.no_grad():
        assert torch.allclose(scripted(x), pvt_net(x), atol=1e-5)


@pytest.mark.slow
def test_pvt_onnx_matches_eager(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    # b0 has the same layers as b2 in fewer blocks, so the export (about 10 s for b2) stays short
    net = UNetV2(2, 3, 2, encoder="pvt_v2_b0").eval()
    x = torch.randn(1, 3, 64, 48)
    path = tmp_path / "unetv2.onnx"
    torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["logits"], dynamo=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        eager = net(x).numpy()
    assert onnx_out.shape == eager.shape
    assert abs(onnx_out - eager).max() < 1e-4


def test_pretrained_encoder_weights(tmp_path):
    source = UNetV2(2, 3, 1, encoder="pvt_v2_b0")
    torch.manual_seed(1)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in source.encoder.state_dict().items()}
    state["head.weight"] = torch.randn(1000, 256)
    state["head.bias"] = torch.randn(1000)
    path = tmp_path / "pvt_v2_b0.pth"
    torch.save(state, path)
    net = UNetV2(2, 3, 2, encoder="pvt_v2_b0", pretrained=str(path))
    loaded = net.encoder.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("head."))

    missing = tmp_path / "missing" / "pvt_v2_b2.pth"
    with pytest.raises(FileNotFoundError, match="pvt_v2_b2.pth"):
        UNetV2(2, 3, 1, encoder="pvt_v2_b0", pretrained=missing)
    mismatched = tmp_path / "b2_widths.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("norm")}, mismatched)
    with pytest.raises(ValueError, match="missing"):
        UNetV2(2, 3, 1, encoder="pvt_v2_b0", pretrained=mismatched)


@pytest.mark.parametrize(
    "spatial_dims, size",
    [(2, (256, 192)), (2, (112, 112)), (2, (97, 131)), (3, (35, 41, 29)), (3, (48, 40, 33))],
    ids=lambda v: _ids(v) if isinstance(v, tuple) else f"{v}d",
)
def test_conv_encoder_any_size(spatial_dims, size):
    net = UNetV2(spatial_dims, 1, 3, encoder="conv", channels=(8, 16, 24, 32), decoder_channels=8).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, *size))
    assert out.shape == (1, 3, *size)
    net.train()
    outs = net(torch.randn(2, 1, *size))
    assert len(outs) == 4 and all(o.shape == (2, 3, *size) for o in outs)


def test_a_training_batch_of_one_small_image_names_the_batch_norm_rule():
    # torch's "Expected more than 1 value per channel when training" had named no size and no remedy
    net = UNetV2(3, 1, 2, encoder="conv").train()
    with pytest.raises(ValueError, match=r"a batch of one image of \[32, 32, 20\] has one there; train with batches"):
        net(torch.randn(1, 1, 32, 32, 20))
    assert net(torch.randn(2, 1, 32, 32, 20))[0].shape == (2, 2, 32, 32, 20)
    assert net(torch.randn(1, 1, 64, 16, 16))[0].shape == (1, 2, 64, 16, 16)
    assert net.eval()(torch.randn(1, 1, 32, 32, 20)).shape == (1, 2, 32, 32, 20)


def test_conv_encoder_strides():
    enc = UNetV2ConvEncoder(3, 2, (8, 16, 24, 32))
    feats = enc(torch.randn(1, 2, 64, 40, 33))
    assert [tuple(f.shape) for f in feats] == [(1, 8, 16, 10, 9), (1, 16, 8, 5, 5), (1, 24, 4, 3, 3), (1, 32, 2, 2, 2)]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_conv_gradients_reach_every_parameter(spatial_dims):
    net = UNetV2(spatial_dims, 1, 2, encoder="conv", channels=(8, 16, 24, 32), decoder_channels=8).train()
    size = (64, 48) if spatial_dims == 2 else (33, 40, 24)
    outs = net(torch.randn(2, 1, *size))
    sum(o.mean() for o in outs).backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_conv_torchscript_matches_eager(spatial_dims):
    net = UNetV2(spatial_dims, 1, 2, encoder="conv", channels=(8, 16, 24, 32), decoder_channels=8).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(1, 1, *((45, 38) if spatial_dims == 2 else (35, 41, 29)))
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-5)
    # deep-supervision path in training mode
    net.train()
    scripted.train()
    torch.manual_seed(0)
    outs = scripted(x)
    assert isinstance(outs, list) and len(outs) == 4


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_without_deep_supervision_every_parameter_gets_a_gradient(spatial_dims):
    # DistributedDataParallel (find_unused_parameters=False) fails on a parameter left without a gradient
    kwargs = {"encoder": "conv", "channels": (8, 16, 24, 32), "decoder_channels": 8}
    size = (64, 48) if spatial_dims == 2 else (33, 40, 24)
    x = torch.randn(2, 1, *size)
    net = UNetV2(spatial_dims, 1, 2, deep_supervision=False, **kwargs).train()
    net(x).mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
    # the main head has the same key with and without deep supervision
    supervised = UNetV2(spatial_dims, 1, 2, deep_supervision=True, **kwargs).train()
    assert set(net.state_dict()) < set(supervised.state_dict())
    outs = supervised(x)
    assert isinstance(outs, list) and len(outs) == 4 and all(o.shape == (2, 2, *size) for o in outs)


def test_custom_encoder_module():
    enc = UNetV2ConvEncoder(2, 1, (4, 8, 12, 16))
    net = UNetV2(2, 1, 1, encoder=enc, decoder_channels=4).eval()
    assert net.encoder is enc and net.channels == (4, 8, 12, 16)
    with torch.no_grad():
        assert net(torch.randn(1, 1, 50, 70)).shape == (1, 1, 50, 70)


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="2D only"):
        UNetV2(3, 1, 1, encoder="pvt_v2_b2")
    with pytest.raises(ValueError, match="spatial_dims"):
        UNetV2(1, 1, 1, encoder="conv")
    with pytest.raises(ValueError, match="encoder must be"):
        UNetV2(2, 1, 1, encoder="resnet50")
    with pytest.raises(ValueError, match="pretrained"):
        UNetV2(2, 1, 1, encoder="conv", pretrained=str(tmp_path / "w.pth"))
    with pytest.raises(ValueError, match="4 level widths"):
        UNetV2(2, 1, 1, encoder="conv", channels=(8, 16, 32))
    with pytest.raises(ValueError, match="channels"):
        UNetV2(2, 1, 1, encoder=torch.nn.Identity())
    with pytest.raises(ValueError, match=r"stage widths \(32, 64, 160, 256\)"):
        UNetV2(2, 3, 1, channels=(64, 128, 320, 512), encoder="pvt_v2_b0")


def test_side_outputs_finest_first():
    net = UNetV2(2, 1, 2, encoder="conv", channels=(8, 16, 24, 32), decoder_channels=8)
    # constant heads tell which level each output comes from; heads[i] reads level i, 0 the finest
    with torch.no_grad():
        for level, head in enumerate(net.heads):
            head.conv.conv.weight.zero_()
            head.conv.conv.bias.fill_(level)
    outputs = net.train()(torch.randn(2, 1, 64, 40))
    for level, output in enumerate(outputs):
        torch.testing.assert_close(output, torch.full_like(output, level))


@pytest.mark.parametrize(
    "pretrained, resumed, warned", [(None, False, True), ("pvt.pth", False, False), (None, True, False)]
)
def test_a_polyp_training_without_the_encoder_s_weights_says_so_in_its_log(
    tmp_path, caplog, pretrained, resumed, warned
):
    # the default trains the PVTv2 encoder from random weights, far more slowly, and had not said so
    from monai.bundle import ConfigParser
    from monai_unets.bundles import bundle_dir

    parser = ConfigParser()
    parser.read_config(str(bundle_dir("unetv2_polyp") / "configs" / "train.yaml"))
    parser["bundle_root"], parser["pretrained_encoder"] = str(tmp_path), pretrained
    if resumed:
        (tmp_path / "models").mkdir()
        (tmp_path / "models" / "checkpoint.pt").write_bytes(b"")
    step = [str(s) for s in parser["run"]].index(
        "$monai_unets.networks.warn_if_random_encoder(@pretrained_encoder, @checkpoint_path if @resume else None)"
    )
    with caplog.at_level(logging.WARNING):
        assert parser.get_parsed_content(f"run#{step}") is warned
    assert ("starts from random weights" in caplog.text) is warned
