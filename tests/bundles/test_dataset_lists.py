"""What the bundles' configs make of a dataset's lists and dataset.json before any case is read."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
from monai.bundle import ConfigParser
from monai_unets.bundles import bundle_dir
from monai_unets.handlers.errors import explain
from monai_unets.scripts.demo_ct import generate_demo_ct

BUNDLES_2D = ("egeunet_skin_lesion", "unetv2_polyp")
BUNDLES_CT = ("egeunet3d_pancreas_ct", "attention_unet_pancreas_ct")


def _parse(bundle: str, configs: list[str], id: str, **overrides):
    parser = ConfigParser()
    parser.read_config([str(bundle_dir(bundle) / "configs" / c) for c in configs])
    for key, value in overrides.items():
        parser[key] = value
    return parser.get_parsed_content(id)


def _datalist(root: Path, **lists) -> str:
    path = root / "datalist.json"
    path.write_text(json.dumps(lists))
    return str(path)


def _cases(*names: str, labelled: bool = True) -> list[dict]:
    return [{"image": f"images/{n}.png", **({"label": f"masks/{n}.png"} if labelled else {})} for n in names]


@pytest.mark.parametrize("bundle", BUNDLES_2D)
def test_validation_and_test_images_that_trained_are_warned_about(bundle, tmp_path):
    datalist = _datalist(tmp_path, training=_cases("a", "b", "c"), validation=_cases("a", "v"), test=_cases("b", "c"))
    settings = {"dataset_dir": str(tmp_path), "datalist": datalist}
    with pytest.warns(UserWarning, match="1 of the 2 images of the validation list are in the training list too"):
        _parse(bundle, ["train.yaml"], "validation_cases", **settings)
    with pytest.warns(UserWarning, match="2 of the 2 images of the test list are in the training list too"):
        cases = _parse(bundle, ["train.yaml", "evaluate.yaml"], "validate#dataset#data", **settings)
    assert [Path(c["image"]).name for c in cases] == ["b.png", "c.png"]
    # evaluating the training list itself is what was asked for
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _parse(bundle, ["train.yaml", "evaluate.yaml"], "validate#dataset#data", evaluate_key="training", **settings)


@pytest.mark.parametrize("bundle", BUNDLES_2D)
def test_evaluating_a_test_list_without_labels_stops_naming_the_datalist(bundle, tmp_path):
    datalist = _datalist(tmp_path, training=_cases("a", "b"), test=_cases("t", "u", labelled=False))
    settings = {"dataset_dir": str(tmp_path), "datalist": datalist}
    with pytest.raises(Exception) as raised:
        _parse(bundle, ["train.yaml", "evaluate.yaml"], "validate#dataset#data", **settings)
    assert explain(raised.value).startswith(f"{datalist}: 2 of the 2 cases of 'test' have no 'label'")


@pytest.mark.parametrize("bundle", BUNDLES_CT)
def test_a_ct_validation_list_without_labels_is_named_before_any_case_is_read(bundle, tmp_path, caplog):
    # an unlabelled validation entry had failed in reading with MONAI's "Key `label` of transform `LoadImaged` was
    # missing", where a 2D test list says which cases have no label first
    cases = [{"image": f"imagesTr/{n}.nii.gz", "label": f"labelsTr/{n}.nii.gz"} for n in ("a", "b", "c")]
    datalist = _datalist(tmp_path, training=cases, validation=[cases[0], {"image": "imagesTr/v.nii.gz"}])
    with caplog.at_level("WARNING"):
        _parse(bundle, ["train.yaml"], "listed_validation", dataset_dir=str(tmp_path), datalist=datalist)
    assert "1 of the 2 cases of 'validation' have no 'label'" in caplog.text
    datalist = _datalist(tmp_path, training=cases, validation=[{"image": "imagesTr/v.nii.gz"}])
    with pytest.raises(Exception) as raised:
        _parse(bundle, ["train.yaml"], "listed_validation", dataset_dir=str(tmp_path), datalist=datalist)
    assert explain(raised.value).startswith(f"{datalist}: 1 of the 1 cases of 'validation' have no 'label'")


@pytest.mark.parametrize("bundle", BUNDLES_CT)
def test_a_dataset_of_other_labels_without_a_plan_stops_before_the_default_recipe(bundle, tmp_path):
    generate_demo_ct(tmp_path, num_cases=2, num_test=0, shape=(24, 24, 8))
    assert _parse(bundle, ["train.yaml"], "num_classes", dataset_dir=str(tmp_path)) == 3
    dataset = json.loads((tmp_path / "dataset.json").read_text())
    dataset.update(modality={"0": "MRI"}, labels={"0": "background", "1": "CSF"})
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    with pytest.raises(Exception) as raised:
        _parse(bundle, ["train.yaml"], "load_transforms", dataset_dir=str(tmp_path))
    message = explain(raised.value)
    assert re.search(r"its modality is 'MRI', not CT; it declares 2 labels \(background, CSF\)", message), message
    assert message.endswith(f"Run `monai-unets plan --dataset-dir {tmp_path}` first.")


@pytest.mark.parametrize("bundle", BUNDLES_CT)
def test_an_evaluation_of_cases_the_weights_trained_on_is_warned_about(bundle, tmp_path):
    from types import SimpleNamespace

    from monai_unets.handlers import TrainingCheckpoint

    generate_demo_ct(tmp_path / "data", num_cases=10, num_test=0, shape=(24, 24, 8))
    settings = {"dataset_dir": str(tmp_path / "data"), "ckpt_dir": str(tmp_path / "models")}
    # the checkpoint of a training on the default split (split_seed 0), beside its weights
    training, _ = _parse(bundle, ["train.yaml"], "case_split", **settings)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(b"")
    trainer = SimpleNamespace(
        data_loader=SimpleNamespace(dataset=SimpleNamespace(data=training)),
        state=SimpleNamespace(epoch=1, iteration=1),
    )
    TrainingCheckpoint(tmp_path / "models" / "checkpoint.pt", {}).save(trainer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        held_out = _parse(bundle, ["train.yaml", "evaluate.yaml"], "validate#dataset#data", **settings)
    # another split: some of its held-out cases are among those the weights trained on
    with pytest.warns(UserWarning, match="images of the evaluation list are in the training list too"):
        other = _parse(bundle, ["train.yaml", "evaluate.yaml"], "validate#dataset#data", split_seed=1, **settings)
    assert {c["image"] for c in other} != {c["image"] for c in held_out}


@pytest.mark.parametrize("bundle", BUNDLES_2D + BUNDLES_CT)
def test_every_output_of_inference_goes_to_one_absolute_folder(bundle, tmp_path, monkeypatch):
    # a relative folder named one place under two spellings in the run's messages, and writers in background
    # threads resolved it against a working folder that ITK changes for a moment while its modules load
    monkeypatch.chdir(tmp_path)
    parser = ConfigParser()
    parser.read_config(str(bundle_dir(bundle) / "configs" / "inference.yaml"))
    parser["output_dir"] = "out"
    writers = []

    def walk(item, where):
        if isinstance(item, dict):
            if "output_dir" in item:
                writers.append(where)
            for key, value in item.items():
                walk(value, f"{where}#{key}")
        elif isinstance(item, list):
            for index, value in enumerate(item):
                walk(value, f"{where}#{index}")

    walk(parser.get("postprocessing"), "postprocessing")
    assert writers
    for where in writers:
        assert parser.get_parsed_content(f"{where}#output_dir") == str(tmp_path / "out"), where
    assert parser.get_parsed_content("failure_log") == str(tmp_path / "out" / "failures.csv")
