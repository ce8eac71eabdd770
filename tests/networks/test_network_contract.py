"""The constructor and output contract that every exported network keeps (see ``monai_unets.networks``).

The networks are discovered from ``monai_unets.networks.__all__``, so a network added there is checked too.
"""

from __future__ import annotations

import inspect
import re

import monai_unets.networks as networks
import pytest
import torch
from torch import nn


def _exported_networks() -> list[type[nn.Module]]:
    """Exported module classes that map one image to logits: not building blocks, not losses (two inputs)."""
    found: dict[str, type[nn.Module]] = {}
    for name in networks.__all__:
        obj = getattr(networks, name)
        if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
            continue
        if obj.__module__.startswith(networks.__name__ + ".blocks"):
            continue
        if obj.__module__ == networks.__name__ + ".runtime":  # runs an exported model file, has no layers
            continue
        if len(inspect.signature(obj.forward).parameters) != 2:  # self and the image
            continue
        found[obj.__name__] = obj  # aliases such as EGEUnet name the same class
    return [found[k] for k in sorted(found)]


NETWORKS = _exported_networks()

# narrow versions keep the checks fast; a network missing here is checked with its published defaults
SMALL: dict[str, list[dict]] = {
    "ClassicUNet": [{"channels": (4, 8, 16, 32)}],
    "AttentionGateUNet": [{"channels": (4, 8, 16, 32)}],
    "UNetV2": [
        {"encoder": "conv", "channels": (8, 16, 24, 32), "decoder_channels": 8},
        {"encoder": "pvt_v2_b0", "decoder_channels": 8, "drop_path_rate": 0.0},
    ],
}
SIZES = {2: (32, 45), 3: (32, 33, 40)}
IN_CHANNELS, OUT_CHANNELS = 2, 3


def _configs() -> list:
    params = []
    for cls in NETWORKS:
        for i, kwargs in enumerate(SMALL.get(cls.__name__, [{}])):
            params.append(pytest.param(cls, kwargs, id=f"{cls.__name__}-{i}"))
    return params


def _build(cls: type[nn.Module], kwargs: dict, spatial_dims: int, **extra) -> nn.Module:
    try:
        net = cls(spatial_dims, IN_CHANNELS, OUT_CHANNELS, **{**kwargs, **extra})
    except ValueError as err:
        if spatial_dims == 3 and "2D" in str(err):
            pytest.skip(f"{cls.__name__} with {kwargs} is 2D only: {err}")
        raise
    return net


def _input(spatial_dims: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, IN_CHANNELS, *SIZES[spatial_dims], generator=torch.Generator().manual_seed(1))


def test_every_network_is_discovered():
    names = {cls.__name__ for cls in NETWORKS}
    assert {"EGEUNet", "ClassicUNet", "AttentionGateUNet", "UNetV2"} <= names
    assert not any(name.endswith("Loss") or name.endswith("Encoder") for name in names), names


@pytest.mark.parametrize("cls", NETWORKS, ids=lambda c: c.__name__)
def test_constructor_signature(cls):
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in params[:3]] == ["spatial_dims", "in_channels", "out_channels"]
    for p in params[:3]:
        assert p.default is inspect.Parameter.empty, f"{cls.__name__}.{p.name} has a default"
        assert p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    names = {p.name for p in params}
    # one name for the stage widths, MONAI's; common options by the same names everywhere
    assert params[3].name == "channels"
    assert {"act", "norm", "dropout", "deep_supervision"} <= names
    assert not {"features", "filters", "encoder_channels"} & names
    with pytest.raises(TypeError):
        cls()


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("cls, kwargs", _configs())
def test_deep_supervision_output_contract(cls, kwargs, spatial_dims):
    x = _input(spatial_dims)
    shape = (x.shape[0], OUT_CHANNELS, *x.shape[2:])
    net = _build(cls, kwargs, spatial_dims, deep_supervision=True)

    net.train()
    outputs = net(x)
    assert isinstance(outputs, list) and len(outputs) >= 2
    assert all(isinstance(o, torch.Tensor) and o.shape == shape for o in outputs), [o.shape for o in outputs]

    net.eval()
    with torch.no_grad():
        main = net(x)
        # the training list's first item is the eval output: only the network's own flag says "training", so
        # norm and dropout layers behave as in eval mode and the two forward passes compute the same thing
        net.training = True
        listed = net(x)
    assert isinstance(main, torch.Tensor) and main.shape == shape
    # eval mode may take a faster but equivalent path (cached maps, channels-last): equal to 1e-4, not bitwise
    torch.testing.assert_close(listed[0], main, atol=1e-4, rtol=1e-4)

    plain = _build(cls, kwargs, spatial_dims, deep_supervision=False).train()
    single = plain(x)
    assert isinstance(single, torch.Tensor) and single.shape == shape


@pytest.mark.parametrize("cls, kwargs", _configs())
def test_an_input_of_other_channels_is_refused_in_words(cls, kwargs):
    # an RGB image into a network built for one channel had failed inside its first convolution, in torch's words
    net = _build(cls, kwargs, 2).eval()
    x = torch.zeros(1, IN_CHANNELS + 1, *SIZES[2])
    with pytest.raises(ValueError) as raised, torch.no_grad():
        net(x)
    assert str(raised.value) == (
        f"{cls.__name__} was built for {IN_CHANNELS} input channels (in_channels); got shape {list(x.shape)}"
    )
    # TorchScript raises it as its own error, with the same words
    with pytest.raises((ValueError, torch.jit.Error), match="was built for 2 input channels"), torch.no_grad():
        torch.jit.script(net)(x)


def _types(net: nn.Module) -> set[type]:
    return {type(m) for m in net.modules()}


@pytest.mark.parametrize("cls, kwargs", _configs())
def test_act_norm_dropout_take_effect(cls, kwargs):
    x = _input(2)
    base = _build(cls, kwargs, 2).eval()
    with torch.no_grad():
        base_out = base(x)
    assert nn.ELU not in _types(base) and nn.InstanceNorm2d not in _types(base)

    # the activation: same weights, other nonlinearity, other output
    elu = _build(cls, kwargs, 2, act="elu").eval()
    assert nn.ELU in _types(elu)
    elu.load_state_dict(base.state_dict())
    with torch.no_grad():
        assert not torch.allclose(elu(x), base_out)

    instance = _build(cls, kwargs, 2, norm="instance").eval()
    assert nn.InstanceNorm2d in _types(instance)
    with torch.no_grad():  # large enough for instance statistics at the coarsest level of every network
        assert instance(torch.randn(1, IN_CHANNELS, 64, 64)).shape == (1, OUT_CHANNELS, 64, 64)

    # dropout: no parameters, so the same weights give the same eval output and a different training one
    dropped = _build(cls, kwargs, 2, dropout=0.5)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in dropped.modules())
    dropped.load_state_dict(base.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(dropped.eval()(x), base_out)
        base.train()
        dropped.train()
        torch.manual_seed(2)
        reference = base(x)
        torch.manual_seed(2)
        assert torch.equal(_first(base(x)), _first(reference))  # the comparison below is not noise
        torch.manual_seed(2)
        assert not torch.allclose(_first(dropped(x)), _first(reference))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("cls, kwargs", _configs())
def test_act_and_norm_none_leave_them_out(cls, kwargs, spatial_dims):
    # MONAI's own networks take None for "no activation / no norm"; all but one of ours had failed in MONAI's
    # factory with "cannot unpack non-iterable NoneType object"
    for option in ("act", "norm"):
        net = _build(cls, kwargs, spatial_dims, **{option: None}).eval()
        x = _input(spatial_dims)
        with torch.no_grad():
            assert net(x).shape == (x.shape[0], OUT_CHANNELS, *x.shape[2:])
        kinds = (nn.ReLU, nn.GELU) if option == "act" else (nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)
        # a PVTv2 transformer encoder keeps its own GELU and LayerNorm, as documented
        own = "encoder" if str(kwargs.get("encoder", "")).startswith("pvt") else None
        modules = [m for name, m in net.named_modules() if own is None or not name.startswith(own)]
        assert not any(isinstance(m, kinds) for m in modules), option
    assert "None" in str(inspect.signature(cls.__init__).parameters["act"].annotation)
    assert "None" in str(inspect.signature(cls.__init__).parameters["norm"].annotation)


@pytest.mark.parametrize("cls", NETWORKS, ids=lambda c: c.__name__)
def test_wrong_contract_arguments_are_named_when_the_network_is_built(cls):
    # a zero had built a network that failed in torch's convolution at its first input (or at once in the weight
    # initialisation, dividing by zero), '2' was refused as "must be 2 or 3, got 2", and "no" turned deep
    # supervision on
    widths = SMALL.get(cls.__name__, [{}])[0]
    for args, kwargs, message in [
        ((2, 1, 0), {}, "out_channels must be a whole number >= 1, got 0."),
        ((2, 0, 1), {}, "in_channels must be a whole number >= 1, got 0."),
        ((2, "3", 1), {}, "in_channels must be a whole number >= 1, got '3'."),
        (("2", 1, 1), {}, "spatial_dims must be 2 or 3, got '2'."),
        ((2.0, 1, 1), {}, "spatial_dims must be 2 or 3, got 2.0."),
        ((2, 1, 1), {"channels": (8, 0, 16, 16, 24, 32)}, "channels must be a sequence of whole numbers >= 1"),
        ((2, 1, 1), {"deep_supervision": "no"}, "deep_supervision must be True or False, got 'no'."),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            cls(*args, **{**widths, **kwargs})


def _first(out) -> torch.Tensor:
    return out[0] if isinstance(out, list) else out
