"""The 2D bundles run their network in PyTorch or, with ``runtime: onnx``, their exported model in ONNX Runtime."""

from __future__ import annotations

import logging

import pytest
import torch
from monai.bundle import ConfigParser, onnx_export
from monai.data import MetaTensor
from monai_unets.bundles import bundle_dir
from monai_unets.bundles.export import onnx_export as documented_export
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


def _exported(
    bundle_root, export=None, size: int = 64, batch: int = 1, **converter
) -> tuple[torch.nn.Module, ConfigParser]:
    # weights, exported by the command of the bundle's docs/README.md (default) for one image size; then the
    # bundle's config for runtime onnx at that size
    name = "egeunet_skin_lesion"
    configs = bundle_dir(name) / "configs"
    net = _parser(name, bundle_root).get_parsed_content("network_def").eval()
    (bundle_root / "models").mkdir()
    torch.save(net.state_dict(), bundle_root / "models" / "model.pt")
    (export or documented_export)(
        net_id="network_def",
        filepath=str(bundle_root / "models" / "model.onnx"),
        ckpt_file=str(bundle_root / "models" / "model.pt"),
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.yaml"),
        input_shape=[batch, 3, size, size],
        converter_kwargs=converter,
    )
    return net, _parser(name, bundle_root, runtime="onnx", image_size=[size, size])


def test_onnx_runtime_runs_the_exported_model_checked_at_export(tmp_path, caplog):
    pytest.importorskip("onnxruntime")
    # the bundle docs' export command: verified against eager in ONNX Runtime before it returns
    with caplog.at_level(logging.INFO, logger="monai.bundle.scripts"):
        net, parser = _exported(tmp_path, size=256, verify=True, use_ort=True, rtol=1e-3, atol=1e-2)
    # MONAI's line names the file the export is renamed to, not its temporary name
    assert f"exported to file: {tmp_path / 'models' / 'model.onnx'}." in caplog.messages
    assert not [m for m in caplog.messages if ".partial-" in m]
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


def test_an_export_for_batch_2_runs_one_image_at_a_time_with_a_warning(tmp_path):
    # every case of the run had failed: the export took batches of 2 and the bundle gives one image
    net, parser = _exported(tmp_path, batch=2)
    with pytest.warns(UserWarning, match="exported for batch 2: a bundle runs one image at a time"):
        network = parser.get_parsed_content("network")
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(network(image), net(image), rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a PyTorch without CUDA")
def test_onnx_runtime_on_a_device_pytorch_cannot_use_stops_at_start(tmp_path):
    # every case had failed in turn with the same message
    _, parser = _exported(tmp_path)
    parser["device"] = "$torch.device('cuda:0')"
    with pytest.raises(RuntimeError) as raised:
        parser.get_parsed_content("network")
    assert "Torch not compiled with CUDA enabled" in str(raised.value.__cause__)


def test_the_export_command_says_a_mistake_in_one_line(tmp_path, capsys):
    # an image size the network cannot take had ended in 193 lines that asked for a PyTorch issue report
    from monai_unets.bundles.export import main

    configs = bundle_dir("egeunet_skin_lesion") / "configs"
    net = _parser("egeunet_skin_lesion", tmp_path).get_parsed_content("network_def")
    torch.save(net.state_dict(), tmp_path / "model.pt")
    command = ["onnx_export", "network_def", "--filepath", str(tmp_path / "model.onnx"), "--ckpt_file"]
    command += [str(tmp_path / "model.pt"), "--config_file", str(configs / "inference.yaml")]
    assert main(command + ["--input_shape", "[1, 3, 8, 8]"]) == 1
    said = capsys.readouterr().err
    assert said.strip().splitlines()[-1] == (
        "onnx_export: error: ValueError: EGEUNet needs every spatial size >= 32 (five 2x poolings); got [8, 8]"
    )
    assert "Traceback" not in said and not (tmp_path / "model.onnx").exists()


def test_the_export_command_takes_the_checkpoints_inference_takes_and_refuses_nan_weights(tmp_path, capsys):
    import numpy as np
    import onnxruntime
    from monai_unets.bundles.export import main

    configs = bundle_dir("egeunet_skin_lesion") / "configs"
    net = _parser("egeunet_skin_lesion", tmp_path).get_parsed_content("network_def").eval()

    def export(weights: str) -> int:
        command = ["onnx_export", "network_def", "--filepath", str(tmp_path / "model.onnx"), "--ckpt_file"]
        command += [str(tmp_path / weights), "--config_file", str(configs / "inference.yaml")]
        return main(command + ["--input_shape", "[1, 3, 64, 64]"])

    # another script's checkpoint of a data-parallel network, which inference loads: the export had failed on it,
    # every key missing
    torch.save({"state_dict": torch.nn.DataParallel(net).state_dict(), "epoch": 3}, tmp_path / "other.pt")
    assert export("other.pt") == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = net(image).numpy()
    exported = session.run(None, {session.get_inputs()[0].name: image.numpy()})[0]
    np.testing.assert_allclose(exported, expected, atol=1e-4)
    # NaN weights had been exported, and their ONNX runtime gave every case an empty mask, reported as done
    (tmp_path / "model.onnx").unlink()
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = float("nan")
    torch.save(net.state_dict(), tmp_path / "nan.pt")
    assert export("nan.pt") == 1
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said.startswith(f"onnx_export: error: {tmp_path / 'nan.pt'}: 1 of ") and "NaN or infinite" in said
    assert not (tmp_path / "model.onnx").exists()


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


@pytest.mark.parametrize("name", RUNTIME_BUNDLES)
def test_the_inferer_gives_the_network_plain_tensors(name, tmp_path):
    # a MetaTensor's bookkeeping of every operation made EGE-UNet's forward pass 1.4x as long, and torch.compile
    # failed on the first MetaTensor of each run
    seen = []

    def network(x):
        seen.append(type(x))
        return x[:, :1]

    inferer = _parser(name, tmp_path).get_parsed_content("inferer")
    inferer(MetaTensor(torch.rand(1, 3, 32, 32)), network)
    # and in evaluation, which had given it the MetaTensors
    evaluation = ConfigParser()
    evaluation.read_config([str(bundle_dir(name) / "configs" / c) for c in ("train.yaml", "evaluate.yaml")])
    evaluation.get_parsed_content("validate#inferer")(MetaTensor(torch.rand(1, 3, 32, 32)), network)
    assert seen == [torch.Tensor, torch.Tensor]


def test_evaluation_runs_the_ege_unet_on_the_threads_inference_does():
    # one thread by default: on busy cores evaluation with torch's default (one per core) took 5x as long
    evaluation = ConfigParser()
    configs = bundle_dir("egeunet_skin_lesion") / "configs"
    evaluation.read_config([str(configs / c) for c in ("train.yaml", "evaluate.yaml")])
    inference = _parser("egeunet_skin_lesion", ".")
    assert evaluation["cpu_threads"] == inference["cpu_threads"] == 1
    assert evaluation["settings"]["cpu_threads"] == "@cpu_threads"
    [step] = [s for s in inference["initialize"] if "set_num_threads" in s]
    assert step in evaluation["initialize"]


@pytest.mark.slow
def test_the_compiled_network_runs_the_first_image_of_a_run(tmp_path):
    parser = _parser("egeunet_skin_lesion", tmp_path, runtime="compile")
    network, inferer = parser.get_parsed_content("network").eval(), parser.get_parsed_content("inferer")
    image = MetaTensor(torch.rand(1, 3, 64, 64))
    with torch.no_grad():
        compiled = inferer(image, network)
    # the same module, run eagerly: compiled kernels round otherwise
    eager = parser.get_parsed_content("network_def")(image.as_tensor())
    torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-4)


def test_onnx_runtime_refuses_an_export_of_earlier_weights(tmp_path):
    # trained, exported, trained again: the ONNX model holds the first weights, model.pt the second
    pytest.importorskip("onnxruntime")
    net, parser = _exported(tmp_path)
    assert isinstance(parser.get_parsed_content("network", lazy=False), OnnxRuntimeNetwork)
    # the same weights saved again (another file, a training checkpoint's "model" entry) are still the export's
    torch.save({"model": net.state_dict(), "epoch": 3}, tmp_path / "models" / "model.pt")
    assert isinstance(parser.get_parsed_content("network", lazy=False), OnnxRuntimeNetwork)
    with torch.no_grad():
        next(net.parameters()).add_(0.01)
    torch.save(net.state_dict(), tmp_path / "models" / "model.pt")
    with pytest.raises(RuntimeError) as raised:
        parser.get_parsed_content("network", lazy=False)
    message = str(raised.value.__cause__)
    assert message.startswith(f"{tmp_path / 'models' / 'model.onnx'}: exported from other weights than ")
    assert "export it again with python -m monai_unets.bundles.export onnx_export" in message
    assert "or run with --runtime torch" in message
    # an ONNX model deployed without its weights file runs as it is, saying that nothing was compared
    (tmp_path / "models" / "model.pt").unlink()
    with pytest.warns(UserWarning, match="no model.pt beside it, so it runs unchecked"):
        assert isinstance(parser.get_parsed_content("network", lazy=False), OnnxRuntimeNetwork)
    # a model_file named elsewhere that is not there (a typo) stops the run, as with runtime torch: it had run the
    # export's weights without a word
    parser["model_file"] = str(tmp_path / "elsewhere" / "my_new_weights.pt")
    with pytest.raises(RuntimeError) as raised:
        parser.get_parsed_content("network", lazy=False)
    assert str(raised.value.__cause__).startswith(f"{tmp_path / 'elsewhere' / 'my_new_weights.pt'}: no weights file")
    # and so does one mistyped beside the export
    parser["model_file"] = str(tmp_path / "models" / "modle.pt")
    with pytest.raises(RuntimeError) as raised:
        parser.get_parsed_content("network", lazy=False)
    assert str(raised.value.__cause__).startswith(f"{tmp_path / 'models' / 'modle.pt'}: no weights file")


def test_onnx_runtime_warns_about_an_export_that_records_no_weights(tmp_path):
    # MONAI's own onnx_export (the command of earlier docs) writes no fingerprint: run, with one warning
    pytest.importorskip("onnxruntime")
    _, parser = _exported(tmp_path, onnx_export)
    with pytest.warns(UserWarning, match="records no weights it was exported from, so it may be older than"):
        assert isinstance(parser.get_parsed_content("network", lazy=False), OnnxRuntimeNetwork)
