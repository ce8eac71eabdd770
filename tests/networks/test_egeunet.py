from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from monai_unets.networks import ChannelLayerNorm, EGEUNet, count_macs, count_parameters, published_egeunet_state_dict

from tests.conftest import assert_all_grads

SHAPES_2D = [(64, 64), (200, 200), (256, 192), (97, 131), (33, 250)]
SHAPES_3D = [(32, 32, 32), (40, 35, 64), (33, 48, 37)]


def test_published_parameter_count_and_macs():
    net = EGEUNet(spatial_dims=2, in_channels=3, out_channels=1)
    # the published network has 53,374 parameters and 0.0721 G conv multiply-accumulates at 256x256
    assert count_parameters(net) == 53_374
    macs = count_macs(net, (1, 3, 256, 256))
    assert abs(macs / 0.0721e9 - 1) < 0.05, macs


@pytest.mark.parametrize("size", SHAPES_2D)
@pytest.mark.parametrize("out_channels", [1, 3])
def test_shapes_2d(size, out_channels):
    net = EGEUNet(2, 3, out_channels).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, *size))
    assert out.shape == (2, out_channels, *size)


@pytest.mark.parametrize("size", SHAPES_3D)
@pytest.mark.parametrize("full_resolution", [False, True])
def test_shapes_3d(size, full_resolution):
    net = EGEUNet(3, 1, 2, full_resolution=full_resolution).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, *size))
    assert out.shape == (1, 2, *size)


@pytest.mark.parametrize("bridge", [True, False])
@pytest.mark.parametrize("deep_supervision", [True, False])
def test_variants_train_and_eval_outputs(bridge, deep_supervision):
    net = EGEUNet(2, 3, 2, bridge=bridge, deep_supervision=deep_supervision)
    x = torch.randn(2, 3, 64, 96)
    net.train()
    out = net(x)
    if deep_supervision:
        # main output, then the five side outputs from finest to coarsest, all at the input size
        assert isinstance(out, list) and len(out) == 6
        assert all(o.shape == (2, 2, 64, 96) for o in out)
    else:
        assert isinstance(out, torch.Tensor) and out.shape == (2, 2, 64, 96)
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (2, 2, 64, 96)


def test_flags_change_the_architecture():
    full = count_parameters(EGEUNet(2, 3, 1))
    assert count_parameters(EGEUNet(2, 3, 1, bridge=False)) < full
    assert count_parameters(EGEUNet(2, 3, 1, deep_supervision=False)) < full
    # multi-class: side heads and bridge masks take K channels
    assert count_parameters(EGEUNet(2, 3, 4)) > full
    # the full-resolution branch: a 3x3x3 conv of the one input channel to the 8 finest widths, and its norm
    assert count_parameters(EGEUNet(3, 1, 2, full_resolution=True)) - count_parameters(EGEUNet(3, 1, 2)) == 240


def test_full_resolution_output_is_not_a_resized_half_resolution_map():
    """The published head predicts at half resolution: its logits cannot hold a one-voxel stripe pattern."""
    torch.manual_seed(0)
    x = torch.zeros(1, 1, 64, 64)
    x[..., ::2, :] = 1.0  # stripes one pixel wide, invisible after the first 2x pooling
    for full_resolution, has_stripes in ((False, False), (True, True)):
        net = EGEUNet(2, 1, 1, full_resolution=full_resolution).eval()
        with torch.no_grad():
            out = net(x)[0, 0]
        # rows on and off a stripe differ with one sign only where the output follows the stripes
        stripe_contrast = (out[8:-8:2] - out[9:-8:2]).mean().abs() / out[8:-8].std()
        assert bool(stripe_contrast > 0.1) is has_stripes, (full_resolution, float(stripe_contrast))


def test_eval_output_is_the_main_training_output():
    net = EGEUNet(2, 3, 1)
    x = torch.randn(1, 3, 64, 64)
    net.train()
    main = net(x)[0]
    net.eval()
    torch.testing.assert_close(net(x), main)


@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 3, 64, 80)), (3, (1, 1, 32, 40, 32))])
@pytest.mark.parametrize("full_resolution", [False, True])
def test_gradients_reach_every_parameter(spatial_dims, shape, full_resolution):
    net = EGEUNet(spatial_dims, shape[1], 2, full_resolution=full_resolution)
    outputs = net(torch.randn(*shape))
    sum(o.sum() for o in outputs).backward()
    assert_all_grads(net)


def test_input_too_small_is_a_clear_error():
    net = EGEUNet(2, 3, 1).eval()
    with pytest.raises(ValueError, match="spatial size >= 32"):
        net(torch.randn(1, 3, 31, 64))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"channels": (8, 16, 24)}, "6 stage widths"),
        ({"channels": (8, 16, 24, 32, 48, 66)}, "divisible by 4"),
        ({"channels": (6, 12, 18, 24, 36, 48), "norm": ("group", {"num_groups": 3})}, None),
        ({"spatial_dims": 1}, "spatial_dims"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"spatial_dims": 2, "in_channels": 3, "out_channels": 1, **kwargs}
    if message is None:  # widths that fit the chosen GroupNorm are accepted
        EGEUNet(**args)
        return
    with pytest.raises(ValueError, match=message):
        EGEUNet(**args)


@pytest.mark.parametrize("spatial_dims, shape", [(2, (1, 3, 96, 64)), (3, (1, 1, 32, 48, 32))])
@pytest.mark.parametrize("full_resolution", [False, True])
def test_torchscript_matches_eager(spatial_dims, shape, full_resolution):
    net = EGEUNet(spatial_dims, shape[1], 2, full_resolution=full_resolution).eval()
    scripted = torch.jit.script(net)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    reloaded = torch.jit.load(buffer)
    x = torch.randn(*shape)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), net(x))
        # the scripted model keeps the network's size freedom
        y = torch.randn(1, shape[1], *[s + 7 for s in shape[2:]])
        torch.testing.assert_close(reloaded(y), net(y))


def test_onnx_export_matches_eager(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    net = EGEUNet(2, 3, 1).eval()
    x = torch.randn(1, 3, 128, 96)
    path = tmp_path / "egeunet.onnx"
    torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["pred"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        eager = net(x).numpy()
    # float32 kernels differ between runtimes: allow 1e-5 of the output's range
    np.testing.assert_allclose(onnx_out, eager, atol=1e-5 * np.abs(eager).max(), rtol=1e-4)


@pytest.mark.parametrize(
    ("shape", "dynamo"),
    [
        ((2, 3, 64, 96), False),
        # the dynamo exporter on the even size takes the longest; the odd size runs its forms in the default suite
        pytest.param((2, 3, 64, 96), True, marks=pytest.mark.slow),
        ((1, 3, 65, 97), False),
        ((1, 3, 65, 97), True),
    ],
)
def test_onnx_export_forms_match_eager_with_negative_norm_scales(tmp_path, shape, dynamo):
    # the export-only forms (norms after the pooling with sign flips, the first convolution at the four positions
    # of each pooling window for even sizes, the bridges' grouped norms and folded tail, MatMul heads) keep eager's
    # outputs, negative norm scales included
    ort = pytest.importorskip("onnxruntime")
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    net = EGEUNet(2, 3, 2).eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.GroupNorm, ChannelLayerNorm)):
                module.weight.normal_()
                module.bias.normal_()
    assert any(bool((encoder[1].weight < 0).any()) for encoder in net.encoders)
    x = torch.randn(*shape)
    path = str(tmp_path / "egeunet.onnx")
    options = {"dynamo": True} if dynamo else {"dynamo": False, "opset_version": 17}
    torch.onnx.export(net, (x,), path, input_names=["image"], **options)
    (got,) = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = net(x).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * (expected.max() - expected.min())


def _identity_operations(path: str) -> list[str]:
    # the Mul nodes by a per-channel constant of ones and Add nodes of one of zeros that ONNX Runtime runs, in the
    # model as its constant folding leaves it: passes over a tensor that change nothing
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = path + ".folded.onnx"
    ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    model = onnx.load(options.optimized_model_filepath)
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    neutral = {"Mul": 1.0, "Add": 0.0}
    return [
        f"{node.op_type} {node.name}"
        for node in model.graph.node
        if node.op_type in neutral
        and any(
            name in constants and constants[name].size > 1 and np.all(constants[name] == neutral[node.op_type])
            for name in node.input
        )
    ]


@pytest.mark.parametrize("dynamo", [False, True])
def test_onnx_export_has_no_identity_operations(tmp_path, dynamo):
    # the dynamo-based exporter (PyTorch's default, which MONAI's onnx_export runs) writes a group norm without scale
    # and shift as InstanceNormalization, a Mul by ones and an Add of zeros; the encoder's export form normalises
    # without them (they took 7% of ONNX Runtime's time at 256x256)
    pytest.importorskip("onnxruntime")
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    net = EGEUNet(2, 3, 1).eval()
    with torch.no_grad():  # trained weights: no scales of ones or shifts of zeros of their own
        for parameter in net.parameters():
            parameter.normal_()
    path = str(tmp_path / "egeunet.onnx")
    options = {"dynamo": True} if dynamo else {"dynamo": False, "opset_version": 17}
    torch.onnx.export(net, (torch.randn(1, 3, 64, 64),), path, input_names=["image"], **options)
    assert _identity_operations(path) == []


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (1, 1, 32, 32, 32)], ids=["2d", "3d"])
def test_trace_in_eval_mode(shape):
    # torch.jit.trace checks its graph by a second run without autograd: the CPU inference paths that differ
    # without autograd (channels-last memory, the group norms' kernels) had made the two graphs differ
    torch.manual_seed(0)
    net = EGEUNet(len(shape) - 2, shape[1], 2).eval()
    x = torch.rand(*shape)
    traced = torch.jit.trace(net, x)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), net(x), atol=1e-3, rtol=1e-4)


def test_side_outputs_finest_first():
    net = EGEUNet(2, 3, 2)
    # constant side heads tell which level each output comes from: decoders run from level 4 down to 0
    with torch.no_grad():
        for level, decoder in zip((4, 3, 2, 1, 0), net.decoders):
            decoder.side_head.conv.conv.weight.zero_()
            decoder.side_head.conv.conv.bias.fill_(level)
    outputs = net.train()(torch.randn(2, 3, 64, 40))
    for level, side in enumerate(outputs[1:]):
        torch.testing.assert_close(side, torch.full_like(side, level))


PUBLISHED = Path(__file__).parent / "data" / "egeunet_published.pt"


def test_published_weights_give_the_published_outputs():
    # Made once with the authors' models/egeunet.py (not part of this repository): its state dict with random
    # weights, an input, and the published network's output (the sigmoid of its logits) computed in float64.
    published = torch.load(PUBLISHED, weights_only=True)
    net = EGEUNet(2, 3, 1)
    net.load_state_dict(published_egeunet_state_dict(published["state_dict"]))
    net.eval()
    with torch.inference_mode():
        exact = torch.sigmoid(copy.deepcopy(net).double()(published["input"].double()))
        fast = torch.sigmoid(net(published["input"]))
    torch.testing.assert_close(exact, published["output"], atol=1e-10, rtol=0)
    torch.testing.assert_close(fast.double(), published["output"], atol=1e-5, rtol=0)
    # weights saved from DataParallel keep their module. prefix
    prefixed = {f"module.{k}": v for k, v in published["state_dict"].items()}
    assert published_egeunet_state_dict(prefixed).keys() == net.state_dict().keys()
    with pytest.raises(ValueError, match="'encoder4.0.extra' is not a weight of the published EGE-UNet"):
        published_egeunet_state_dict({"encoder4.0.extra": torch.zeros(1)})


REFERENCE = Path(__file__).parent / "data" / "egeunet_reference.pt"


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dims", ["2d", "3d"])
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-4), (torch.float32, 1e-3)])
def test_outputs_match_the_frozen_reference(dims, dtype, atol, channels_last):
    # Outputs of the straightforward implementation (whose 2D outputs equal the published code's with its weights
    # mapped by published_egeunet_state_dict, see the test above), saved with random weights and input for a 2D and
    # a 3D network. Caching, fused normalisation and the pooling rewrite must keep them, in eval and in training
    # mode. The reference is float32 from one CPU and lies within 6e-5 of the float64 outputs; float32 kernels of
    # another CPU (AVX2 against AVX-512) sum in another order and move outputs of up to 25 by up to 4e-4.
    # Channels-last weights (the 3D CT bundle's CPU inference) make the whole network run channels-last and must
    # keep them too.
    ref = torch.load(REFERENCE, weights_only=True)[dims]
    x = ref["input"].to(dtype)
    expected = ref["output"].to(dtype)
    net = EGEUNet(x.dim() - 2, x.shape[1], 1).to(dtype)
    net.load_state_dict({k: v.to(dtype) for k, v in ref["state_dict"].items()})
    if channels_last:
        net.to(memory_format=torch.channels_last if dims == "2d" else torch.channels_last_3d)
    net.eval()
    with torch.inference_mode():
        first = net(x)
        cached = net(x)
    torch.testing.assert_close(first, expected, atol=atol, rtol=1e-4)
    torch.testing.assert_close(cached, expected, atol=atol, rtol=1e-4)
    net.train()
    torch.testing.assert_close(net(x)[0].detach(), expected, atol=atol, rtol=1e-4)


def test_cached_maps_are_kept_per_precision():
    # a mixed-precision call first must not leave bfloat16 attention maps for the float32 calls after it
    net = EGEUNet(2, 3, 1).eval()
    x = torch.rand(1, 3, 64, 64)
    expected = net(x).detach()  # autograd on: the maps are computed afresh and the cache is left alone
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = net(x)
        after = net(x)
    assert not torch.allclose(mixed.float(), expected, atol=1e-3)  # the bfloat16 maps did differ
    torch.testing.assert_close(after, expected, atol=1e-4, rtol=1e-4)


def test_switches_must_be_bools():
    # "no" had turned the bridges on, as any string does
    for switch in ("bridge", "full_resolution"):
        with pytest.raises(ValueError, match=f"{switch} must be True or False, got 'no'"):
            EGEUNet(2, 3, 1, **{switch: "no"})
    # widths as numpy numbers, as computed ones come, are whole numbers
    assert EGEUNet(2, 3, 1, channels=np.array([8, 16, 24, 32, 48, 64])).spatial_dims == 2
