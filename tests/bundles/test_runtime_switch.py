"""The 2D bundles run their network in PyTorch or, with ``runtime: onnx``, their exported model in ONNX Runtime."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser, onnx_export
from monai_unets.bundles import bundle_dir
from monai_unets.handlers import WeightsLoader
from monai_unets.networks import OnnxRuntimeNetwork

RUNTIME_BUNDLES = ["egeunet_skin_lesion", "unetv2_polyp"]


def _parser(name: str, bundle_root, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(bundle_dir(name) / "configs" / "inference.yaml"))
    parser["bundle_root"] = str(bundle_root)
    parser["device"] = "$torch.device('cpu')"
    for key, value in overrides.items():
        parser[key] = value
    return parser


@pytest.mark.parametrize("name", RUNTIME_BUNDLES)
def test_torch_runtime_is_the_default_and_loads_the_checkpoint(name, tmp_path):
    parser = _parser(name, tmp_path)
    assert parser["runtime"] == "torch"
    assert isinstance(parser.get_parsed_content("network"), torch.nn.Module)
    assert any(isinstance(h, WeightsLoader) for h in parser.get_parsed_content("handlers"))


def test_onnx_runtime_runs_the_exported_model_checked_at_export(tmp_path):
    pytest.importorskip("onnxruntime")
    name = "egeunet_skin_lesion"
    configs = bundle_dir(name) / "configs"
    net = _parser(name, tmp_path).get_parsed_content("network_def").eval()
    (tmp_path / "models").mkdir()
    torch.save(net.state_dict(), tmp_path / "models" / "model.pt")
    # the bundle docs' export command: verified against eager in ONNX Runtime before it returns
    onnx_export(
        net_id="network_def",
        filepath=str(tmp_path / "models" / "model.onnx"),
        ckpt_file=str(tmp_path / "models" / "model.pt"),
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.yaml"),
        input_shape=[1, 3, 256, 256],
        converter_kwargs={"verify": True, "use_ort": True, "rtol": 1e-3, "atol": 1e-2},
    )
    parser = _parser(name, tmp_path, runtime="onnx")
    network = parser.get_parsed_content("network")
    assert isinstance(network, OnnxRuntimeNetwork)
    # the ONNX model carries its weights: no checkpoint loader that would fail on a network without parameters
    assert not any(isinstance(h, WeightsLoader) for h in parser.get_parsed_content("handlers"))
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        expected = net(x)
    assert (network(x) - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max().item())


@pytest.mark.parametrize("configs", [["inference.yaml"], ["inference.yaml", "multi_gpu_inference.yaml"]])
def test_an_image_size_the_export_does_not_take_stops_the_run_before_any_case(tmp_path, configs):
    # checked when the network is made (with the evaluator, before its first case), in a torchrun job too
    pytest.importorskip("onnxruntime")
    name = "egeunet_skin_lesion"
    net = _parser(name, tmp_path).get_parsed_content("network_def").eval()
    (tmp_path / "models").mkdir()
    with torch.no_grad():
        torch.onnx.export(net, (torch.rand(1, 3, 64, 64),), str(tmp_path / "models" / "model.onnx"), dynamo=False)
    parser = ConfigParser()
    parser.read_config([str(bundle_dir(name) / "configs" / c) for c in configs])
    parser["bundle_root"], parser["device"], parser["runtime"] = str(tmp_path), "$torch.device('cpu')", "onnx"
    parser["image_size"] = [64, 64]
    assert isinstance(parser.get_parsed_content("network"), OnnxRuntimeNetwork)
    parser["image_size"] = [96, 96]
    with pytest.raises(RuntimeError) as raised:
        parser.get_parsed_content("network", lazy=False)
    assert "image_size [96, 96] does not fit the network OnnxRuntimeNetwork" in str(raised.value.__cause__)


def test_unknown_runtime_is_a_clear_error(tmp_path):
    parser = _parser("egeunet_skin_lesion", tmp_path, runtime="onxx")
    with pytest.raises(RuntimeError) as raised:
        parser.get_parsed_content("network")
    # MONAI reports the failing expression and chains our message
    assert "runtime must be one of torch, onnx, compile; got 'onxx'" in str(raised.value.__cause__)


@pytest.mark.parametrize("name", RUNTIME_BUNDLES)
def test_compile_runtime_loads_the_checkpoint_into_the_compiled_network(name, tmp_path):
    trained = _parser(name, tmp_path).get_parsed_content("network_def")
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.uniform_()
    (tmp_path / "models").mkdir()
    torch.save(trained.state_dict(), tmp_path / "models" / "model.pt")
    parser = _parser(name, tmp_path, runtime="compile")
    network = parser.get_parsed_content("network")
    assert network._compiled_call_impl is not None
    (loader,) = [h for h in parser.get_parsed_content("handlers") if isinstance(h, WeightsLoader)]
    loader(None)  # what the evaluator does when it starts
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(network.state_dict()[key], value)
