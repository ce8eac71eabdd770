"""The bundles' TorchScript export carries what its weights need, read as MONAI Deploy's bundle operator reads it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai_unets.bundles import bundle_dir
from monai_unets.bundles.export import main

from monai_unets import load_plan, save_plan


def _network(name: str) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(str(bundle_dir(name) / "configs" / "inference.yaml"))
    return parser.get_parsed_content("network_def").eval()


def _trained_elsewhere(name: str, tmp_path: Path) -> torch.nn.Module:
    """A network of the bundle, its weights saved as a training outside the bundle saves them (runs/model.pt), and
    an empty folder for the app that runs its export (app/)."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "app").mkdir()
    net = _network(name)
    torch.save(net.state_dict(), tmp_path / "runs" / "model.pt")
    return net


def _export(name: str, weights: Path, exported: Path) -> None:
    configs = bundle_dir(name) / "configs"
    command = ["ckpt_export", "network_def", "--filepath", str(exported), "--ckpt_file", str(weights)]
    command += ["--meta_file", str(configs / "metadata.json"), "--config_file", str(configs / "inference.yaml")]
    assert main(command) == 0


def _deployed(exported: Path, app: Path) -> ConfigParser:
    """The TorchScript file's embedded metadata and inference config, parsed in a folder of no bundle, as MONAI
    Deploy's MonaiBundleInferenceOperator parses them."""
    with zipfile.ZipFile(exported) as archive:
        extra = {Path(n).name: archive.read(n) for n in archive.namelist() if "/extra/" in n}
    (app / "inference.json").write_bytes(extra["inference.json"])
    parser = ConfigParser()
    parser.read_meta(f=json.loads(extra["metadata.json"]))
    parser.read_config(str(app / "inference.json"))
    parser["bundle_root"] = str(app)
    return parser


def test_a_ct_model_run_from_its_torchscript_file_preprocesses_with_the_plan_of_its_weights(tmp_path):
    # the embedded configs had no plan file beside weights that are not there: the original pancreas recipe (96^3
    # patches, 1.5 x 1.5 x 2 mm) ran on a model trained with its dataset's plan, without a word
    name = "egeunet3d_pancreas_ct"
    net = _trained_elsewhere(name, tmp_path)
    plan = load_plan(None)
    plan.update(spacing=[0.9, 0.9, 2.5], patch_size=[64, 64, 32])
    plan["normalization"] = {**plan["normalization"], "clip": [19.0, 142.0]}
    save_plan(plan, tmp_path / "runs" / "plan.json")
    _export(name, tmp_path / "runs" / "model.pt", tmp_path / "model.ts")
    deployed = _deployed(tmp_path / "model.ts", tmp_path / "app")
    found = deployed.get_parsed_content("plan")
    assert found["spacing"] == [0.9, 0.9, 2.5] and found["patch_size"] == [64, 64, 32]
    assert found["normalization"]["clip"] == [19.0, 142.0]
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    image = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(image), net(image))


def test_2d_weights_trained_at_another_size_run_from_their_torchscript_file_at_it(tmp_path):
    # weights trained at 64 x 64 outside the bundle record it in their checkpoint; the embedded configs had resized
    # every image to the shipped 256 x 256
    name = "egeunet_skin_lesion"
    _trained_elsewhere(name, tmp_path)
    torch.save({"best_model": {"input_size": [64, 64]}}, tmp_path / "runs" / "checkpoint.pt")
    _export(name, tmp_path / "runs" / "model.pt", tmp_path / "model.ts")
    assert _deployed(tmp_path / "model.ts", tmp_path / "app").get_parsed_content("image_size") == [64, 64]


def test_the_export_refuses_weights_of_nan_naming_them(tmp_path, capsys):
    net = _network("egeunet_skin_lesion")
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = float("nan")
    torch.save({"state_dict": net.state_dict()}, tmp_path / "model.pt")
    configs = bundle_dir("egeunet_skin_lesion") / "configs"
    command = ["ckpt_export", "network_def", "--filepath", str(tmp_path / "model.ts"), "--ckpt_file"]
    command += [str(tmp_path / "model.pt"), "--meta_file", str(configs / "metadata.json")]
    assert main([*command, "--config_file", str(configs / "inference.yaml")]) == 1
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said.startswith(f"ckpt_export: error: {tmp_path / 'model.pt'}: 1 of ") and "NaN or infinite" in said
    assert not (tmp_path / "model.ts").exists()


def test_an_export_says_what_it_cannot_record(tmp_path, capsys):
    # CT weights without their plan: the model would run with the original recipe from its own configs
    _trained_elsewhere("egeunet3d_pancreas_ct", tmp_path)
    with pytest.warns(UserWarning, match=r"runs/model.pt has no plan file beside it \(plan.json\): the export"):
        _export("egeunet3d_pancreas_ct", tmp_path / "runs" / "model.pt", tmp_path / "model.ts")
    # a 2D export for a size given on its command line records that size
    configs = bundle_dir("egeunet_skin_lesion") / "configs"
    command = ["ckpt_export", "network_def", "--filepath", str(tmp_path / "skin.ts"), "--meta_file"]
    command += [str(configs / "metadata.json"), "--config_file", str(configs / "inference.yaml")]
    torch.save(_network("egeunet_skin_lesion").state_dict(), tmp_path / "skin.pt")
    assert main([*command, "--ckpt_file", str(tmp_path / "skin.pt"), "--image_size", "[96, 96]"]) == 0
    assert _deployed(tmp_path / "skin.ts", tmp_path / "app").get_parsed_content("image_size") == [96, 96]
    # weights that are not there are named as the export's --ckpt_file
    assert main([*command, "--ckpt_file", str(tmp_path / "none.pt")]) == 1
    assert "none.pt: the weights to export (--ckpt_file) do not exist." in capsys.readouterr().err
