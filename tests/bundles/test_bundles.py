"""Every folder under bundles/ is checked as a MONAI bundle, and trained, run and evaluated end to end.

The end-to-end runs use the commands of the bundles' docs (``python -m monai.bundle run ...``) in a subprocess.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out
from monai.transforms import RandomizableTrait, SaveImaged, Transform
from monai_unets.bundles import BUNDLES_DIR, bundle_dir, bundle_spatial_dims, list_bundles
from monai_unets.data import cached_dataset, case_output_paths
from monai_unets.handlers.errors import SettingError, check_settings, explain
from monai_unets.scripts.demo_ct import generate_demo_ct
from monai_unets.transforms import normalised_background

from monai_unets import load_plan, save_plan
from tests.bundles.conftest import BUNDLE_CASES
from tests.conftest import SCHEMA_DIR

BUNDLES = list_bundles()
MAX_FILE_BYTES = 25 * 1024 * 1024


def _configs(bundle: Path) -> Path:
    return bundle / "configs"


def _run_bundle(
    bundle: Path, configs: list[str], *args: str, run_id: str | None = None, returncode: int = 0
) -> subprocess.CompletedProcess:
    config = configs[0] if len(configs) == 1 else str(configs)
    command = [sys.executable, "-m", "monai.bundle", "run"] + ([run_id] if run_id else [])
    command += ["--meta_file", str(_configs(bundle) / "metadata.json"), "--config_file", config]
    command += ["--logging_file", str(_configs(bundle) / "logging.conf"), "--bundle_root", str(bundle), *args]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == returncode, f"{' '.join(command)}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def test_every_bundle_folder_is_a_bundle_with_a_test_case():
    folders = sorted(p.name for p in BUNDLES_DIR.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    assert folders, "no bundle found"
    # a folder without configs/metadata.json would otherwise escape every check below
    assert folders == BUNDLES
    assert sorted(BUNDLE_CASES) == BUNDLES


@pytest.mark.parametrize("name", BUNDLES)
def test_spatial_dims_of_the_metadata_are_the_network_s(name):
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle_dir(name)) / "inference.yaml"))
    assert bundle_spatial_dims(name) == parser["network_def"]["spatial_dims"] in (2, 3)


@pytest.mark.parametrize("name", BUNDLES)
def test_layout_and_model_zoo_rules(name):
    bundle = bundle_dir(name)
    for relative in [
        "LICENSE",
        "docs/README.md",
        "configs/metadata.json",
        "configs/train.yaml",
        "configs/inference.yaml",
        "configs/evaluate.yaml",
        "configs/logging.conf",
    ]:
        assert (bundle / relative).is_file(), f"{name}: missing {relative}"
    big = [p for p in bundle.rglob("*") if p.is_file() and p.stat().st_size > MAX_FILE_BYTES]
    assert not big, f"files over 25 MB must be listed in large_files.yml instead: {big}"
    meta = json.loads((_configs(bundle) / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    pins = [
        meta["monai_version"],
        meta["pytorch_version"],
        meta["numpy_version"],
        *meta["required_packages_version"].values(),
    ]
    assert all("+" not in v and v[0].isdigit() for v in pins), pins


@pytest.mark.parametrize("name", BUNDLES)
def test_verify_metadata(name):
    schema = SCHEMA_DIR / "meta_schema_20240725.json"
    assert schema.is_file(), (
        f"the official schema is expected at {schema}: download it from the URL of metadata.json's 'schema' there, or "
        "set MONAI_UNETS_SCHEMA_DIR to its folder"
    )
    verify_metadata(meta_file=str(_configs(bundle_dir(name)) / "metadata.json"), filepath=str(schema))


@pytest.mark.parametrize("name", BUNDLES)
def test_verify_net_in_out(name):
    configs = _configs(bundle_dir(name))
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.yaml"),
        device="cpu",
    )


@pytest.mark.parametrize("name", BUNDLES)
def test_training_caches_every_case_up_to_the_first_random_transform(name, tmp_path):
    """The memory and disk caches keep the deterministic head: reading and resampling happen once per case."""
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle_dir(name)) / "train.yaml"))
    parser["bundle_root"] = parser["dataset_dir"] = str(tmp_path)
    dataset = cached_dataset([], parser.get_parsed_content("train#preprocessing"), "memory", num_workers=0)
    transforms = dataset.transform.transforms
    first_random = dataset.transform.get_index_of_first(
        lambda t: isinstance(t, RandomizableTrait) or not isinstance(t, Transform)
    )
    names = [type(t).__name__ for t in transforms]
    assert first_random is not None and isinstance(transforms[first_random], RandomizableTrait), names
    assert "LoadImaged" in names[:first_random] and names[first_random].startswith("Rand"), names


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
@pytest.mark.parametrize(
    ("overrides", "augmented"),
    [
        ({}, True),
        ({"max_minutes": 10}, False),
        ({"max_minutes": 90}, True),
        ({"max_minutes": 10, "augment": True}, True),
    ],
)
def test_time_limited_runs_train_without_augmentation(name, overrides, augmented, tmp_path):
    """Flips and intensity jitter only where the run is long enough to pay for them, or where asked for."""
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle_dir(name)) / "train.yaml"))
    parser["bundle_root"] = parser["dataset_dir"] = str(tmp_path)
    parser.update(overrides)
    names = [type(t).__name__ for t in parser.get_parsed_content("train#preprocessing").flatten().transforms]
    assert "RandCropByLabelClassesd" in names
    assert ("RandFlipd" in names) == augmented and ("RandScaleIntensityd" in names) == augmented, names


@pytest.mark.parametrize(
    ("name", "device", "patch"),
    [
        ("attention_unet_pancreas_ct", "cpu", [48, 48, 32]),
        ("attention_unet_pancreas_ct", "cuda", [64, 96, 32]),
        ("egeunet3d_pancreas_ct", "cpu", [64, 96, 32]),
    ],
)
@pytest.mark.parametrize("as_string", [False, True])
def test_training_patch_follows_the_plan_and_the_device(name, device, patch, as_string, tmp_path):
    """The Attention U-Net trains on at most 48-voxel sides on a CPU; the plan stored beside the weights says so."""
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle_dir(name)) / "train.yaml"))
    parser["bundle_root"] = parser["dataset_dir"] = str(tmp_path)
    # MONAI Label's training request and a plain `--device cpu` give the device as a string
    parser["device"] = device if as_string else f"$torch.device('{device}')"
    parser["network"] = "$@network_def"  # built, never moved: the test machine need not have the device
    # the original recipe's plan (no plan file) with the CT phantoms' patch
    parser["plan"] = {**load_plan(tmp_path / "absent.json"), "patch_size": [64, 96, 32], "spacing": [0.9, 0.9, 2.5]}
    assert parser.get_parsed_content("patch_size") == patch
    saver = parser.get_parsed_content("validate#best_model")
    assert saver.plan["patch_size"] == patch and saver.plan["spacing"] == [0.9, 0.9, 2.5]
    # channels-last weights: the Attention U-Net's CPU setting; EGE-UNet keeps the default order everywhere
    expected = name == "attention_unet_pancreas_ct" and device == "cpu" and not parser.get_parsed_content("bf16")
    assert parser.get_parsed_content("channels_last") == expected


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
@pytest.mark.parametrize("recorded", [0.0, None])
def test_inference_and_evaluation_pad_as_the_plan_of_the_weights_records(name, recorded, tmp_path):
    models = tmp_path / "models"
    plan = {**load_plan(None), "background_value": recorded}
    save_plan(plan, models / "plan.json")
    torch.save({}, models / "model.pt")
    air = normalised_background(plan["normalization"])
    for configs in (["inference.yaml"], ["train.yaml", "evaluate.yaml"]):
        parser = ConfigParser()
        parser.read_config([str(_configs(bundle_dir(name)) / c) for c in configs])
        parser.update({"bundle_root": str(tmp_path), "dataset_dir": str(tmp_path), "ensemble": True})
        parser["model_files"] = [str(models / "model.pt")]
        key = "window_inferer#cval" if configs == ["inference.yaml"] else "background_value"
        assert parser.get_parsed_content(key) == (air if recorded is None else recorded)


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_the_plan_beside_the_weights_holds_the_preprocessing_overrides_they_were_trained_with(name, tmp_path):
    # the dataset's spacing had been written beside weights trained with --pixdim, and inference and evaluation
    # resampled every study to it without a word
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle_dir(name)) / "train.yaml"))
    parser["bundle_root"] = parser["dataset_dir"] = str(tmp_path)
    parser["network"] = "$@network_def"
    normalization = {"scheme": "ct", "clip": [-100.0, 300.0], "mean": 40.0, "std": 90.0}
    parser.update({"pixdim": [1.2, 1.2, 3.0], "normalization": normalization, "foreground_threshold": -300.0})
    # the classes too (--num_classes with --class_names, given as a tuple by --class_names organ,lesion,cyst): the
    # dataset's 3 classes and their names had been written beside weights of 4
    parser.update({"num_classes": 4, "class_names": ("organ", "lesion", "cyst")})
    saver = parser.get_parsed_content("validate#best_model")
    assert saver.plan["spacing"] == [1.2, 1.2, 3.0]
    assert saver.plan["normalization"] == normalization
    assert saver.plan["foreground_threshold"] == -300.0
    assert saver.plan["num_classes"] == 4
    assert saver.plan["labels"] == {"1": "organ", "2": "lesion", "3": "cyst"}
    assert saver.plan["class_names"] == ["organ", "lesion", "cyst"]
    # and the padding of volumes smaller than the patch (the normalised air, -140 / 90): weights trained before it
    # was recorded padded with 0, which inference could not tell
    assert saver.plan["background_value"] == pytest.approx(-140.0 / 90.0)
    # the bundle's own weights file, the one MONAI Label serves: their classes go into the bundle's metadata too
    assert saver.metadata_file == os.path.join(str(tmp_path), "configs", "metadata.json")
    for other in ({"ckpt_dir": str(tmp_path / "elsewhere")}, {"num_folds": 5, "fold": 1}):
        parser = ConfigParser()
        parser.read_config(str(_configs(bundle_dir(name)) / "train.yaml"))
        parser.update({"bundle_root": str(tmp_path), "dataset_dir": str(tmp_path), "network": "$@network_def", **other})
        assert parser.get_parsed_content("validate#best_model").metadata_file is None, other


# two bundle trainings end to end (about 20 s on 2 cores); tests/handlers/test_checkpoint.py checks the refusal
@pytest.mark.slow
def test_a_resume_with_other_preprocessing_stops_at_start_naming_the_setting(tmp_path):
    # the checkpoint recorded no preprocessing: the resumed epochs trained on studies resampled to the plan's spacing,
    # while the plan beside the weights said --pixdim's
    data, bundle = tmp_path / "data", Path(shutil.copytree(bundle_dir("egeunet3d_pancreas_ct"), tmp_path / "bundle"))
    generate_demo_ct(data, num_cases=2, num_test=0, shape=(24, 24, 8))
    checkpoint = bundle / "models" / "checkpoint.pt"
    train = [str(_configs(bundle) / "train.yaml")]
    fast = ["--dataset_dir", str(data), "--val_interval", "1", "--num_workers", "0", "--quiet", "True"]
    fast += ["--patch_size", "[32, 32, 32]"]
    _run_bundle(bundle, train, *fast, "--max_epochs", "1", "--pixdim", "[1.2, 1.2, 3.0]")
    result = _run_bundle(bundle, train, *fast, "--max_epochs", "2", returncode=1)
    assert result.stderr.strip().splitlines()[-1] == (
        f"ERROR: {checkpoint}: was trained with spacing [1.2, 1.2, 3.0], this run sets [1.5, 1.5, 2.0]; resume with "
        '--pixdim "[1.2, 1.2, 3.0]", or train anew with another --ckpt_dir.'
    )
    state = torch.load(checkpoint, weights_only=True)
    assert state["trainer"]["epoch"] == 1
    # a checkpoint written before checkpoints recorded the preprocessing has nothing to compare: it goes on
    del state["best_model"]["plan"]
    torch.save(state, checkpoint)
    _run_bundle(bundle, train, *fast, "--max_epochs", "2")
    assert torch.load(checkpoint, weights_only=True)["trainer"]["epoch"] == 2


# two bundle runs end to end (about 20 s on 2 cores); the start-time check and the saved plan have fast tests
@pytest.mark.slow
def test_weights_trained_with_other_classes_are_inferred_with_their_classes_and_names(tmp_path):
    # --num_classes 4 --class_names ...: the plan beside the weights had kept the dataset's 3 classes, so inference
    # built a network of 3 classes and refused the weights, and the DICOM SEG named the segments by the old names
    data, bundle = tmp_path / "data", Path(shutil.copytree(bundle_dir("egeunet3d_pancreas_ct"), tmp_path / "bundle"))
    generate_demo_ct(data, num_cases=2, num_test=1, shape=(24, 24, 8), dicom=True)
    train = [str(_configs(bundle) / "train.yaml")]
    fast = ["--dataset_dir", str(data), "--val_interval", "1", "--num_workers", "0", "--quiet", "True"]
    fast += ["--patch_size", "[32, 32, 32]", "--max_epochs", "1"]
    # one of the two alone stops at start, before any case is read or anything is trained
    result = _run_bundle(bundle, train, *fast, "--num_classes", "4", returncode=1)
    assert result.stderr.strip().splitlines()[-1] == (
        "ERROR: num_classes 4 and class_names ['pancreas', 'cancer'] do not fit: class_names names labels 1 to "
        "num_classes - 1 (0 is the background), 3 names for num_classes 4, got 2; set num_classes to 3 or give 3 "
        "class_names."
    )
    assert not (bundle / "models" / "checkpoint.pt").exists()
    names = ["organ", "lesion", "cyst"]
    _run_bundle(bundle, train, *fast, "--num_classes", "4", "--class_names", str(names))
    plan = load_plan(bundle / "models" / "plan.json")
    assert plan["num_classes"] == 4 and plan["class_names"] == names
    assert plan["labels"] == {"1": "organ", "2": "lesion", "3": "cyst"}
    # MONAI Label names a served bundle's classes from its metadata
    output = json.loads((bundle / "configs" / "metadata.json").read_text())["network_data_format"]["outputs"]["pred"]
    assert output["channel_def"] == {"0": "background", "1": "organ", "2": "lesion", "3": "cyst"}

    studies, out = tmp_path / "studies", tmp_path / "out"
    shutil.copytree(data / "dicomTs" / "demo_002", studies / "demo_002")
    inference = [str(_configs(bundle) / "inference.yaml")]
    _run_bundle(bundle, inference, "--input_dir", str(studies), "--output_dir", str(out), "--num_workers", "0")
    assert (out / "demo_002_seg.nii.gz").is_file()
    # a segment for each class, named as the plan names it, predicted or not
    seg = pydicom.dcmread(next(out.glob("*.dcm")), stop_before_pixels=True)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == names


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_inference_with_more_classes_than_the_plan_names_stops_at_start(name, tmp_path):
    # --num_classes 4 for weights whose plan names 3 classes (trained before plans recorded their classes) had run
    # every study and failed each DICOM SEG on label 3, which had no name
    generate_demo_ct(tmp_path / "data", num_cases=0, num_test=1, shape=(24, 24, 8))
    workflow = ConfigWorkflow(
        config_file=str(_configs(bundle_dir(name)) / "inference.yaml"),
        workflow_type="infer",
        bundle_root=str(tmp_path),
        input_dir=str(tmp_path / "data" / "imagesTs"),
        output_dir=str(tmp_path / "out"),
        num_workers=0,
        num_classes=4,
    )
    with pytest.raises(RuntimeError) as raised:
        workflow.initialize()
    assert explain(raised.value) == (
        "num_classes 4 and class_names ['pancreas', 'tumour'] do not fit: class_names names labels 1 to "
        "num_classes - 1 (0 is the background), 3 names for num_classes 4, got 2; set num_classes to 3 or give 3 "
        "class_names."
    )
    # named, the fourth class is written into the DICOM SEG as the others are
    workflow.parser["class_names"] = ["pancreas", "tumour", "cyst"]
    assert workflow.parser.get_parsed_content("labels") == {1: "pancreas", 2: "tumour", 3: "cyst"}


@pytest.mark.parametrize("config", ["inference.yaml", "evaluate.yaml"])
@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_weights_of_other_classes_are_told_to_run_with_both_class_settings(name, config, tmp_path):
    # weights of 2 classes without their plan (the recipe's 3 classes): the message had named --num_classes alone,
    # which the bundle then refused for want of as many class names
    from monai_unets.handlers import CheckpointError, WeightsLoader

    generate_demo_ct(tmp_path / "data", num_cases=2, num_test=1, shape=(24, 24, 8))
    configs = [str(_configs(bundle_dir(name)) / n) for n in (["train.yaml"] if config == "evaluate.yaml" else [])]
    settings = {"bundle_root": str(tmp_path), "dataset_dir": str(tmp_path / "data"), "num_workers": 0}
    settings.update(input_dir=str(tmp_path / "data" / "imagesTs"), output_dir=str(tmp_path / "out"))

    def weights_loader(**overrides):
        parser = ConfigParser()
        parser.read_config([*configs, str(_configs(bundle_dir(name)) / config)])
        parser.update({**settings, **overrides})
        key = "validate#handlers" if config == "evaluate.yaml" else "handlers"
        handlers = parser.get_parsed_content(key, instantiate=True)
        return parser, next(h for h in handlers if isinstance(h, WeightsLoader))

    parser, _ = weights_loader(num_classes=2, class_names=["class1"])
    (tmp_path / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "models" / "model.pt")
    with pytest.raises(CheckpointError) as raised:
        weights_loader()[1](None)
    assert str(raised.value).endswith(
        "the weights were trained with num_classes 2, this run sets num_classes 3; run with the plan they were "
        "trained with (plan.json beside them), or --num_classes 2 --class_names \"['class1']\" (a name for each "
        "class after the background), or train weights with num_classes 3 first."
    )
    weights_loader(num_classes=2, class_names=["class1"])[1](None)  # what the message says is accepted


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_mr_tissue_of_negative_values_stays_inside_the_crop_to_the_body(name, tmp_path):
    """A z-scored MR (background 0, tissue of both signs) planned and preprocessed as the bundle trains and infers:
    the crop keeps the non-zero region, where a crop to the positive voxels cut a negative structure away."""
    import nibabel as nib
    import numpy as np
    from monai.transforms import Compose
    from monai_unets.data.plan import plan_dataset, save_plan

    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    x = np.arange(32)[:, None, None]
    body = np.broadcast_to((np.abs(x - 16) <= 12) & (np.abs(np.arange(32)[None, :, None] - 16) <= 12), (32, 32, 8))
    organ = body & (x > 22)  # at the body's edge, negative after z-scoring
    image = np.where(body, rng.normal(0.8, 0.3, body.shape), 0.0).astype(np.float32)
    image[organ] = rng.normal(-1.5, 0.3, int(organ.sum()))
    training = []
    for i in range(2):
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(tmp_path / "imagesTr" / f"c{i}.nii.gz"))
        nib.save(nib.Nifti1Image(organ.astype(np.uint8), np.eye(4)), str(tmp_path / "labelsTr" / f"c{i}.nii.gz"))
        training.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    dataset = {"modality": {"0": "T1"}, "labels": {"0": "background", "1": "organ"}, "training": training}
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    plan = plan_dataset(tmp_path, device="cpu")
    # where training reads it, and where inference does (beside the weights, bundle_root/models)
    save_plan(plan, tmp_path / "plan.json")
    save_plan(plan, tmp_path / "models" / "plan.json")
    case = {"image": str(tmp_path / "imagesTr" / "c0.nii.gz"), "label": str(tmp_path / "labelsTr" / "c0.nii.gz")}
    for config, key in (("train.yaml", "image_preprocessing"), ("inference.yaml", "preprocessing")):
        parser = ConfigParser()
        parser.read_config(str(_configs(bundle_dir(name)) / config))
        parser["bundle_root"] = parser["dataset_dir"] = str(tmp_path)
        out = Compose(parser.get_parsed_content(key))(dict(case))
        # the crop keeps the whole body: 25 x 25 voxels across, organ included
        assert tuple(out["image"].shape[1:3]) == (25, 25), config
        if config == "train.yaml":
            assert int((out["label"] > 0).sum()) == int(organ.sum())


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
@pytest.mark.parametrize("device", ["cpu", "$torch.device('cpu')", "cuda:0"])
def test_ct_inference_runs_channels_last_on_the_cpu_whatever_form_the_device_takes(name, device):
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle_dir(name)) / "inference.yaml"))
    parser["device"] = device
    assert parser.get_parsed_content("channels_last") == (device != "cuda:0")


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_ct_evaluation_assembles_a_volume_where_inference_does(name):
    # evaluation had no stitch_device: a CT too large for the GPU could be inferred, with the sums on the CPU, but
    # not evaluated
    parser = ConfigParser()
    parser.read_config([str(_configs(bundle_dir(name)) / c) for c in ("train.yaml", "evaluate.yaml")])
    parser["device"] = "cuda:0"

    def devices() -> tuple[str, str]:
        parser.ref_resolver.reset()
        return tuple(str(parser.get_parsed_content(f"validate#window_inferer#{k}")) for k in ("sw_device", "device"))

    assert devices() == ("cuda:0", "cuda:0")
    parser["stitch_device"] = "cpu"
    assert devices() == ("cuda:0", "cpu")


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_ct_evaluation_slides_the_windows_inference_slides(name, tmp_path):
    # the Attention U-Net trains on patches of at most 48^3 on a CPU: weights planned and trained with 96^3 windows
    # on a GPU had been scored on a CPU with 48^3 windows, and inferred with 96^3
    from monai_unets.data.plan import load_plan, save_plan

    save_plan({**load_plan(None), "patch_size": [96, 96, 96]}, tmp_path / "models" / "plan.json")
    sizes = []
    for configs, key in (
        (["train.yaml", "evaluate.yaml"], "validate#window_inferer"),
        (["inference.yaml"], "window_inferer"),
    ):
        parser = ConfigParser()
        parser.read_config([str(_configs(bundle_dir(name)) / c) for c in configs])
        parser["bundle_root"] = parser["dataset_dir"] = str(tmp_path)
        parser["device"] = "cpu"
        sizes.append(list(parser.get_parsed_content(key).roi_size))
    assert sizes == [[96, 96, 96]] * 2


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
@pytest.mark.parametrize("device", ["cpu", "cuda:0"])
def test_ct_inference_inverts_where_the_output_was_assembled(name, device):
    from monai_unets.transforms import InvertArgmaxd, SaveProbabilityMapsd

    parser = ConfigParser()
    parser.read_config(str(_configs(bundle_dir(name)) / "inference.yaml"))
    parser["device"] = device
    # a large CT assembled on the CPU (the docs' advice when it does not fit) is inverted there too
    for stitch, expected in ((None, device), ("cpu", "cpu")):
        if stitch is not None:
            parser["stitch_device"] = stitch
        post = parser.get_parsed_content("postprocessing").transforms
        (label,) = [t for t in post if isinstance(t, InvertArgmaxd)]
        (maps,) = [t for t in post if isinstance(t, SaveProbabilityMapsd)]
        inverters = [*label.invert_scores.values(), *label.invert_codes.values(), maps.invert]
        assert [str(d) for invert in inverters for d in invert.device] == [expected] * 3  # one device per key


@pytest.mark.parametrize("name", BUNDLES)
@pytest.mark.parametrize(
    "config", ["inference.yaml", "train.yaml", ["train.yaml", "evaluate.yaml"], ["train.yaml", "multi_gpu_train.yaml"]]
)
def test_a_size_the_network_cannot_take_stops_the_run_at_start(name, config):
    parser = ConfigParser()
    parser.read_config([str(_configs(bundle_dir(name)) / c) for c in ([config] if isinstance(config, str) else config)])
    key = "patch_size" if "pancreas" in name else "image_size"
    assert "@input_size_check" in parser["initialize"]
    parser.get_parsed_content("input_size_check")  # the bundle's own size fits
    # checked on a copy: the bundle's network is not made before initialize sets the seed
    assert "network_def" not in parser.ref_resolver.resolved_content
    parser[key] = [8] * len(parser.get_parsed_content(key))
    with pytest.raises(RuntimeError) as raised:
        parser.get_parsed_content("input_size_check")
    assert f"{key} [8, 8" in str(raised.value.__cause__) and "does not fit the network" in str(raised.value.__cause__)


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
@pytest.mark.parametrize(("folds", "weights"), [(1, "model.pt"), (3, "model_fold2.pt")])
def test_evaluation_scores_the_weights_of_its_fold(name, folds, weights, tmp_path):
    # the fold's held-out cases scored with model.pt (trained on some of them) had given optimistic figures
    parser = ConfigParser()
    parser.read_config([str(_configs(bundle_dir(name)) / c) for c in ("train.yaml", "evaluate.yaml")])
    parser["bundle_root"] = parser["dataset_dir"] = str(tmp_path)
    parser["num_folds"], parser["fold"] = folds, 2
    targets = [h.get("_target_") if isinstance(h, dict) else h for h in parser["validate#handlers"]]
    loader = targets.index("WeightsLoader")
    assert parser.get_parsed_content(f"validate#handlers#{loader}#load_path") == str(tmp_path / "models" / weights)
    assert parser.get_parsed_content("evaluation_report#settings#checkpoint").endswith(weights)


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
@pytest.mark.parametrize(("folds", "plan"), [(1, "plan.json"), (3, "plan_fold2.json")])
def test_training_writes_the_plan_of_its_fold_with_its_weights(name, folds, plan, tmp_path):
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle_dir(name)) / "train.yaml"))
    parser["bundle_root"] = parser["dataset_dir"] = str(tmp_path)
    parser["num_folds"], parser["fold"] = folds, 2
    written = str(tmp_path / "models" / plan)
    saver = parser.get_parsed_content("validate#best_model")
    assert saver.plan_file == written
    # with its fold, so that a copy of it over another fold's plan is refused
    assert saver.plan["fold"] == (None if folds == 1 else 2)
    # the post-processing validation chooses goes into the same plan
    handlers = [h for h in parser["validate#handlers"] if isinstance(h, dict)]
    assert [h["plan_file"] for h in handlers if h["_target_"] == "PostprocessingSelector"] == ["@plan_out"]
    assert parser.get_parsed_content("plan_out") == written
    # and its own checkpoint: a fold resumes its own run, also after another fold trained, and folds may train
    # side by side (each holds its own checkpoint's lock)
    checkpoint = next(h for h in parser["train#handlers"] if h.get("_target_") == "TrainingCheckpoint")
    index = parser["train#handlers"].index(checkpoint)
    path = parser.get_parsed_content(f"train#handlers#{index}#checkpoint_path")
    assert path == str(tmp_path / "models" / ("checkpoint.pt" if folds == 1 else "checkpoint_fold2.pt"))
    # a fold interrupted while folds shared models/checkpoint.pt goes on from it
    earlier = parser.get_parsed_content(f"train#handlers#{index}#earlier")
    assert earlier == ([] if folds == 1 else [str(tmp_path / "models" / "checkpoint.pt")])


@pytest.mark.parametrize("name", BUNDLES)
@pytest.mark.parametrize("configs", [["train.yaml"], ["train.yaml", "multi_gpu_train.yaml"]])
def test_training_holds_its_checkpoint_before_anything_is_written(name, configs):
    parser = ConfigParser()
    parser.read_config([str(_configs(bundle_dir(name)) / c) for c in configs])
    steps = [str(step) for step in parser["initialize"]]
    held = steps.index("$monai_unets.handlers.hold_training(@checkpoint_path, @output_dir)")
    # before it only the checks that write nothing (those that can fail come first, so that a process that goes on
    # after them, MONAI Label's run_sync training, holds no lock), the note of the process's settings and the error
    # hook (which write nothing for this refusal) and the process group that rank 0's lock is told through
    first = {"check_command_line()", "save_process_state()", "report_errors(", "check_settings(", "@input_size_check"}
    first |= {"import torch.distributed", "init_process_group(", "set_device("}
    assert all(any(step in before for step in first) for before in steps[:held]), steps[:held]
    # the checkpoint the trainer saves and takes the lock of, and the folder of its logs
    checkpoint = next(h for h in parser["train#handlers"] if h.get("_target_") == "TrainingCheckpoint")
    assert checkpoint["checkpoint_path"] == "@checkpoint_path"
    assert {
        h["log_dir"]
        for h in [*parser["train#handlers"], *parser["validate#handlers"]]
        if isinstance(h, dict) and "log_dir" in h
    } == {"@output_dir"}


@pytest.mark.parametrize("name", BUNDLES)
@pytest.mark.parametrize("task", ["train", "inference", "evaluate"])
def test_every_config_checks_its_command_line_first(name, task):
    # the multi-GPU configs had checked it after making the error log's path and the training lock: a path key
    # without a path ended in a traceback on every process, a '~' bundle root made a folder '~' before its refusal
    folder = _configs(bundle_dir(name))
    single = [str(folder / "train.yaml")] * (task == "evaluate") + [str(folder / f"{task}.yaml")]
    for configs in (single, [*single, str(folder / f"multi_gpu_{task}.yaml")]):
        parser = ConfigParser()
        parser.read_config(configs)
        assert str(parser["initialize"][0]) == "$monai_unets.bundles.check_command_line()", configs


def test_a_training_refused_for_a_running_one_writes_nothing_into_its_folders(tmp_path):
    from monai_unets.data.atomic import hold_folder, release_folder

    bundle, case = bundle_dir("egeunet_skin_lesion"), BUNDLE_CASES["egeunet_skin_lesion"]
    data = case.make_data(tmp_path / "data")
    models, logs = tmp_path / "models", tmp_path / "logs"
    assert hold_folder(models, ".training.lock")  # the running training
    args = ["--dataset_dir", str(data), "--ckpt_dir", str(models), "--output_dir", str(logs), "--num_workers", "0"]
    try:
        result = _run_bundle(bundle, [str(_configs(bundle) / "train.yaml")], *args, *case.train_args, returncode=1)
    finally:
        release_folder(models, ".training.lock")
    # it had made two empty TensorBoard files and its error log in the running training's logs/ before its trainer
    # took the lock
    assert not logs.exists()
    assert list(models.iterdir()) == []
    assert "Traceback" not in result.stderr and "full traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"ERROR: {models}: another training is running with this folder for its checkpoint checkpoint.pt and "
            "weights; wait for it to end, or give this one another bundle folder (--bundle_root) or --ckpt_dir. It is "
            f"held by process {os.getpid()} ("
        )
    )


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_ensemble_inference_reads_each_member_s_plan(name, tmp_path):
    models = tmp_path / "models"
    plan = {**load_plan(None), "spacing": [1.0, 1.0, 2.5], "patch_size": [32, 32, 32]}
    save_plan({**plan, "postprocessing": {"keep_largest": [1, 2]}}, models / "plan_fold0.json")
    save_plan({**plan, "postprocessing": {"keep_largest": [1]}}, models / "plan_fold1.json")
    # the plan of the fold trained last, as every fold had written it
    save_plan({**plan, "spacing": [3.0, 3.0, 3.0]}, models / "plan.json")
    for fold in (0, 1):
        (models / f"model_fold{fold}.pt").touch()
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle_dir(name)) / "inference.yaml"))
    parser["bundle_root"] = str(tmp_path)
    parser["ensemble"] = ["model_fold0.pt", "model_fold1.pt"]
    assert parser.get_parsed_content("pixdim") == [1.0, 1.0, 2.5]
    keep = next(t for t in parser["postprocessing"]["transforms"] if t["_target_"] == "KeepLargestComponentd")
    index = parser["postprocessing"]["transforms"].index(keep)
    assert parser.get_parsed_content(f"postprocessing#transforms#{index}#applied_labels") == [1]
    # a single model reads the plan beside model.pt
    parser["ensemble"] = []
    assert parser.get_parsed_content("pixdim") == [3.0, 3.0, 3.0]
    # one fold given by its name alone (--ensemble model_fold1.pt) had been read as one file a letter
    parser["ensemble"] = "model_fold1.pt"
    assert parser.get_parsed_content("model_files") == [str(models / "model_fold1.pt")]


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
@pytest.mark.parametrize("config", ["inference.yaml", "evaluate.yaml"])
def test_the_weights_that_run_are_preprocessed_with_their_own_plan(name, config, tmp_path):
    # weights given as model_files (the key suggested for a misspelt --model_file) had run with the plan beside
    # the bundle's own models/model.pt: 0.04 Dice where their own plan gave 0.965
    models = tmp_path / "models"
    save_plan({**load_plan(None), "spacing": [3.0, 3.0, 3.0]}, models / "plan.json")
    (models / "model.pt").touch()
    other = tmp_path / "runs" / "x" / "model.pt"
    save_plan({**load_plan(None), "spacing": [1.0, 1.0, 2.5]}, other.parent / "plan.json")
    other.touch()
    parser = ConfigParser()
    files = ["train.yaml", "evaluate.yaml"] if config == "evaluate.yaml" else [config]
    parser.read_config([str(_configs(bundle_dir(name)) / f) for f in files])
    parser["bundle_root"] = str(tmp_path)
    parser["dataset_dir"] = str(tmp_path / "no_dataset")
    assert parser.get_parsed_content("pixdim") == [3.0, 3.0, 3.0]
    parser["model_files"] = [str(other)]
    assert parser.get_parsed_content("pixdim") == [1.0, 1.0, 2.5]
    handlers = "validate#handlers" if config == "evaluate.yaml" else "handlers"
    index = next(i for i, h in enumerate(parser[handlers]) if isinstance(h, dict) and h["_target_"] == "WeightsLoader")
    assert parser.get_parsed_content(f"{handlers}#{index}#load_path") == str(other)


# two folds trained end to end (~45 s): the fold and ensemble rules have faster tests in tests/data/test_plan.py
@pytest.mark.slow
def test_each_fold_keeps_its_plan_and_an_ensemble_of_other_plans_is_refused(tmp_path):
    """Two folds trained with the dataset re-planned between them: each fold's plan survives the other's training,
    evaluation of fold 0 reads fold 0's plan, and an ensemble of both is refused naming both plan files."""
    name = "attention_unet_pancreas_ct"
    data = tmp_path / "data"
    generate_demo_ct(data, num_cases=2, num_test=0, shape=(24, 24, 8))
    bundle = tmp_path / name
    shutil.copytree(bundle_dir(name), bundle)
    models = bundle / "models"
    fast = ["--max_epochs", "1", "--val_interval", "1", "--num_workers", "0", "--patch_size", "[32, 32, 32]"]

    def train(fold: int) -> None:
        args = ["--dataset_dir", str(data), *fast, "--num_folds", "2", "--fold", str(fold), "--quiet", "True"]
        _run_bundle(bundle, [str(_configs(bundle) / "train.yaml")], *args)

    train(0)
    fold0 = (models / "plan_fold0.json").read_text()
    save_plan({**load_plan(None), "spacing": [2.0, 2.0, 2.5]}, data / "plan.json")
    train(1)
    assert (models / "plan_fold0.json").read_text() == fold0
    assert load_plan(models / "plan_fold1.json")["spacing"] == [2.0, 2.0, 2.5]
    assert sorted(p.name for p in models.glob("*.json")) == ["plan_fold0.json", "plan_fold1.json"]

    evaluation = ConfigParser()
    evaluation.read_config([str(_configs(bundle) / c) for c in ("train.yaml", "evaluate.yaml")])
    evaluation["bundle_root"], evaluation["dataset_dir"] = str(bundle), str(data)
    evaluation["num_folds"], evaluation["fold"] = 2, 0
    assert evaluation.get_parsed_content("plan_file") == str(models / "plan_fold0.json")
    assert evaluation.get_parsed_content("plan") == json.loads(fold0)

    inference = ConfigParser()
    inference.read_config(str(_configs(bundle) / "inference.yaml"))
    inference["bundle_root"] = str(bundle)
    inference["ensemble"] = ["model_fold0.pt", "model_fold1.pt"]
    with pytest.raises(RuntimeError) as raised:
        inference.get_parsed_content("settings")
    shown = explain(raised.value)
    assert str(models / "plan_fold0.json") in shown and str(models / "plan_fold1.json") in shown
    assert "differ in spacing" in shown

    # fold 0's plan copied over fold 1's: it records fold 0, and inference and evaluation of fold 1 refuse it
    assert load_plan(models / "plan_fold1.json")["fold"] == 1
    (models / "plan_fold1.json").write_text(fold0)
    evaluation["fold"] = 1
    for parser, key in ((evaluation, "plan"), (inference, "settings")):
        with pytest.raises(RuntimeError) as raised:
            parser.get_parsed_content(key)
        assert explain(raised.value).endswith(
            f"plan {models / 'plan_fold1.json'} records fold 0: it is that fold's plan, not fold 1's; put fold 1's own "
            "plan there, or train fold 1 again"
        )


@pytest.mark.parametrize("member", ["truncated", "listed twice", "model.pt truncated"])
def test_an_ensemble_member_that_cannot_take_part_stops_inference_before_any_study(member, tmp_path):
    # its weights had been read with the first study's window: every study failed in turn, each read and
    # preprocessed first, and a model listed twice had been averaged as two members
    bundle = tmp_path / "bundle"
    shutil.copytree(_configs(bundle_dir("egeunet3d_pancreas_ct")), _configs(bundle))
    models, studies = bundle / "models", tmp_path / "studies"
    plan = {**load_plan(None), "patch_size": [32, 32, 32]}
    for fold in (0, 1):
        save_plan(plan, models / f"plan_fold{fold}.json")
        (models / f"model_fold{fold}.pt").touch()
    torch.save(_network(bundle).state_dict(), models / "model_fold0.pt")
    (models / "model_fold1.pt").write_bytes((models / "model_fold0.pt").read_bytes()[:1000])
    (models / "model.pt").write_bytes((models / "model_fold0.pt").read_bytes()[:1000])  # without an ensemble
    generate_demo_ct(tmp_path / "data", num_cases=0, num_test=1, shape=(24, 24, 8))
    shutil.copytree(tmp_path / "data" / "imagesTs", studies)
    listed = {"truncated": "['model_fold0.pt','model_fold1.pt']", "listed twice": "['model_fold0.pt','model_fold0.pt']"}
    args = ["--input_dir", str(studies), "--output_dir", str(tmp_path / "out"), "--num_workers", "0"]
    if member in listed:
        args += ["--ensemble", listed[member]]
    result = _run_bundle(bundle, [str(_configs(bundle) / "inference.yaml")], *args, returncode=1)
    expected = {
        "truncated": f"ERROR: {models / 'model_fold1.pt'}: not a readable PyTorch checkpoint",
        "model.pt truncated": f"ERROR: {models / 'model.pt'}: not a readable PyTorch checkpoint",
        "listed twice": f"ERROR: {models / 'model_fold0.pt'}: is listed twice; the ensemble would count",
    }
    assert result.stderr.strip().splitlines()[-1].startswith(expected[member])
    assert "case(s)" not in result.stderr
    # models/model.pt alone is loaded as the evaluator starts, as in the 2D bundles, which leaves the failure
    # report the run had begun
    begun = {"failures.rank0.csv"} if member == "model.pt truncated" else set()
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"error.log"} | begun


def _two_folds(bundle: Path, network: str) -> Path:
    """``bundle/models`` with two folds of ``network``'s bundle (other weights each) and their plans, which differ
    only in the classes whose largest component they keep; the folder."""
    models = bundle / "models"
    plan = {**load_plan(None), "spacing": [2.0, 2.0, 2.5], "patch_size": [32, 32, 32]}
    save_plan({**plan, "postprocessing": {"keep_largest": [1, 2]}}, models / "plan_fold0.json")
    save_plan({**plan, "postprocessing": {"keep_largest": [1]}}, models / "plan_fold1.json")
    for fold in (0, 1):
        torch.manual_seed(fold)
        torch.save(_network(bundle_dir(network)).state_dict(), models / f"model_fold{fold}.pt")
    return models


def test_an_ensemble_of_folds_is_evaluated_as_inference_runs_it(tmp_path, capsys):
    # `monai-unets evaluate ... --ensemble` had been refused as an unknown key: evaluation could score one model file
    from monai_unets.scripts.cli import main

    name = "egeunet3d_pancreas_ct"
    bundle = tmp_path / "bundle"
    shutil.copytree(_configs(bundle_dir(name)), _configs(bundle))
    models = _two_folds(bundle, name)
    data = tmp_path / "data"
    generate_demo_ct(data, num_cases=3, num_test=0, shape=(24, 24, 8))
    ensemble = ["model_fold0.pt", "model_fold1.pt"]
    evaluation = tmp_path / "eval"
    args = ["--dataset_dir", str(data), "--eval_dir", str(evaluation), "--num_workers", "0", "--quiet"]
    assert main(["evaluate", str(bundle), *args, "--ensemble", str(ensemble)]) == 0, capsys.readouterr().err[-3000:]
    with open(evaluation / "metrics_per_case.csv") as f:
        assert len(list(csv.DictReader(f))) == 1  # the validation case of the seeded split
    members = [str(models / f"model_fold{fold}.pt") for fold in (0, 1)]
    settings = json.loads((evaluation / "run.json").read_text())["settings"]
    assert settings["checkpoint"] == ", ".join(members)

    # what that run was made of: the members averaged, preprocessed with their plan, and a class's largest
    # component kept where both chose it, as inference.yaml does
    parser = ConfigParser()
    parser.read_config([str(_configs(bundle) / c) for c in ("train.yaml", "evaluate.yaml")])
    parser.update({"bundle_root": str(bundle), "dataset_dir": str(data), "ensemble": ensemble})
    inferer = parser.get_parsed_content("validate#evaluator").inferer
    assert inferer.checkpoints == members and parser.get_parsed_content("validate#inferer") is inferer
    assert parser.get_parsed_content("pixdim") == [2.0, 2.0, 2.5]
    assert parser.get_parsed_content("plan")["postprocessing"]["keep_largest"] == [1]
    loaders = [h for h in parser.get_parsed_content("validate#handlers") if type(h).__name__ == "WeightsLoader"]
    assert not loaders  # the members are the inferer's; no model.pt is loaded into the network
    # one name alone is that model file
    parser["ensemble"] = "model_fold1.pt"
    assert parser.get_parsed_content("model_files") == [members[1]]


def test_evaluation_with_tta_mirrors_as_inference_does(tmp_path, capsys):
    # `monai-unets evaluate ... --tta True` had been refused as an unknown key: the test-time augmentation of
    # inference.yaml could not be scored
    from monai_unets.scripts.cli import main

    name = "egeunet3d_pancreas_ct"
    bundle = tmp_path / "bundle"
    shutil.copytree(_configs(bundle_dir(name)), _configs(bundle))
    _two_folds(bundle, name)
    data = tmp_path / "data"
    generate_demo_ct(data, num_cases=3, num_test=0, shape=(24, 24, 8))
    evaluation = tmp_path / "eval"
    args = ["--dataset_dir", str(data), "--eval_dir", str(evaluation), "--num_workers", "0", "--quiet"]
    args += ["--ensemble", "model_fold0.pt"]
    # a string is no switch ("false" would be true): refused at start, before any case is evaluated
    assert main(["evaluate", str(bundle), *args, "--tta", "false"]) != 0
    assert "tta must be True or False, got 'false'" in (evaluation / "error.log").read_text()
    assert not (evaluation / "metrics_per_case.csv").exists()

    assert main(["evaluate", str(bundle), *args, "--tta", "True"]) == 0, capsys.readouterr().err[-3000:]
    assert json.loads((evaluation / "run.json").read_text())["settings"]["tta"] == "True"
    parser = ConfigParser()
    parser.read_config([str(_configs(bundle) / c) for c in ("train.yaml", "evaluate.yaml")])
    parser.update({"bundle_root": str(bundle), "dataset_dir": str(data), "tta": True})
    assert parser.get_parsed_content("validate#evaluator").inferer.tta
    parser["tta"] = False
    assert not parser.get_parsed_content("validate#evaluator", lazy=False).inferer.tta


@pytest.mark.parametrize("member", ["missing", "listed twice", "of another network", "of another plan"])
def test_an_ensemble_member_that_cannot_take_part_stops_evaluation_at_start(member, tmp_path):
    name = "attention_unet_pancreas_ct"
    models = _two_folds(tmp_path, name)
    ensemble = ["model_fold0.pt", "model_fold1.pt"]
    if member == "missing":
        ensemble.append("model_fold2.pt")
    elif member == "listed twice":
        ensemble = ["model_fold0.pt", "model_fold0.pt"]
    elif member == "of another network":
        torch.save(_network(bundle_dir("egeunet3d_pancreas_ct")).state_dict(), models / "model_fold1.pt")
    else:
        save_plan({**load_plan(models / "plan_fold1.json"), "spacing": [3.0, 3.0, 3.0]}, models / "plan_fold1.json")
    generate_demo_ct(tmp_path / "data", num_cases=2, num_test=0, shape=(24, 24, 8))
    workflow = ConfigWorkflow(
        config_file=[str(_configs(bundle_dir(name)) / c) for c in ("train.yaml", "evaluate.yaml")],
        workflow_type="eval",
        bundle_root=str(tmp_path),
        dataset_dir=str(tmp_path / "data"),
        num_workers=0,
        ensemble=ensemble,
    )
    with pytest.raises(RuntimeError) as raised:
        workflow.initialize()
    expected = {
        "missing": f"{models / 'model_fold2.pt'}: model file of the ensemble does not exist",
        "listed twice": f"{models / 'model_fold0.pt'}: is listed twice; the ensemble would count that model twice",
        "of another network": f"{models / 'model_fold1.pt'}: does not fit the network AttentionGateUNet",
        "of another plan": f"{models / 'plan_fold0.json'} (plan of model_fold0.pt) and {models / 'plan_fold1.json'}",
    }
    assert explain(raised.value).startswith(expected[member]), explain(raised.value)
    assert not (tmp_path / "eval" / "metrics_per_case.csv").exists()


@pytest.mark.parametrize("name", BUNDLES)
@pytest.mark.parametrize(
    "configs",
    [
        ["inference.yaml", "multi_gpu_inference.yaml"],
        ["train.yaml", "multi_gpu_train.yaml"],
        ["train.yaml", "evaluate.yaml", "multi_gpu_evaluate.yaml"],
    ],
)
def test_multi_gpu_runs_make_the_checks_of_a_single_process_run(name, configs):
    # a multi-GPU config replaces `initialize` whole: it must repeat every start-up step of the single-process run
    single, multi = ConfigParser(), ConfigParser()
    single.read_config([str(_configs(bundle_dir(name)) / c) for c in configs[:-1]])
    multi.read_config([str(_configs(bundle_dir(name)) / c) for c in configs])
    # not the size check in DDP training: with it, one rank aborted at exit in 6 of 36 two-process runs
    left_out = {"@input_size_check"} if configs[-1] == "multi_gpu_train.yaml" else set()
    # torchrun gives each process one thread itself (OMP_NUM_THREADS=1), and the multi-GPU file is one for all bundles
    left_out.add("$torch.set_num_threads(@cpu_threads) if @cpu_threads else None")
    if configs[-1] == "multi_gpu_train.yaml":
        # each training process seeds its own augmentations, from the same seed on rank 0
        left_out.add("$monai.utils.set_determinism(seed=42)")
        assert "$monai.utils.set_determinism(seed=42 + dist.get_rank())" in multi["initialize"]
    missing = {str(step) for step in single["initialize"]} - {str(step) for step in multi["initialize"]}
    assert missing <= left_out, (configs[-1], missing - left_out)
    steps = "\n".join(str(item) for item in multi["initialize"])
    for check in ["report_errors", "check_settings", "check_command_line", "reuse_freed_memory"]:
        assert check in steps, (configs[-1], check)


@pytest.mark.parametrize("name", BUNDLES)
@pytest.mark.parametrize("configs", [["train.yaml"], ["inference.yaml"], ["train.yaml", "evaluate.yaml"]])
def test_every_run_reuses_freed_memory_and_freezes_its_startup_objects(name, configs):
    parser = ConfigParser()
    parser.read_config([str(_configs(bundle_dir(name)) / c) for c in configs])
    assert "$monai_unets.reuse_freed_memory()" in parser["initialize"]
    assert "$monai_unets.freeze_startup_objects()" in parser["initialize"]


@pytest.mark.parametrize("name", BUNDLES)
@pytest.mark.parametrize("configs", [["train.yaml"], ["inference.yaml"], ["train.yaml", "evaluate.yaml"]])
@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_keeps_warnings_only_from_initialize_on(name, configs, quiet):
    # MONAI logs its input summary once `initialize` has run, before the run builds the progress logger
    parser = ConfigParser()
    parser.read_config([str(_configs(bundle_dir(name)) / c) for c in configs])
    parser["quiet"] = quiet
    step = parser["initialize"].index("$monai_unets.handlers.log_warnings_only() if @quiet else None")
    try:
        parser.get_parsed_content(f"initialize#{step}")
        assert logging.root.manager.disable == (logging.INFO if quiet else logging.NOTSET)
    finally:
        logging.disable(logging.NOTSET)


def test_a_quiet_run_leaves_monai_s_input_summary_out_and_still_shows_its_error(tmp_path):
    (tmp_path / "empty").mkdir()
    bundle = bundle_dir("egeunet_skin_lesion")
    args = ["--input_dir", str(tmp_path / "empty"), "--output_dir", str(tmp_path / "out"), "--quiet", "True"]
    result = _run_bundle(bundle, [str(_configs(bundle) / "inference.yaml")], *args, returncode=1)
    assert "input summary" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"ERROR: FileNotFoundError: input folder {tmp_path}")


@pytest.mark.parametrize("name", BUNDLES)
@pytest.mark.parametrize("config", ["inference.yaml", "train.yaml"])
def test_every_switch_is_checked_at_start(name, config):
    # `monai.bundle run` passes `--tta false` as the string "false", which is true: unchecked, it would turn TTA on
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle_dir(name)) / config))
    switches = [key for key, value in parser.config.items() if isinstance(value, bool)]
    assert switches and set(switches) <= set(parser["settings"]), (config, switches)
    for key in switches:
        parser[key] = "false"
        with pytest.raises(SettingError, match=f"^{key} must be True or False"):
            check_settings(parser.get_parsed_content("settings", instantiate=True, lazy=False))
        parser[key] = False


@pytest.mark.parametrize("name", [n for n in BUNDLES if bundle_spatial_dims(n) == 3])
def test_the_surface_dice_tolerance_is_one_number_or_one_per_class_checked_at_start(name):
    # a number had failed every case after its inference, a list of the wrong length too, each in MONAI's words
    parser = ConfigParser()
    parser.read_config([str(_configs(bundle_dir(name)) / c) for c in ("train.yaml", "evaluate.yaml")])
    for tolerance in (1.0, [1.0, 3.0]):
        parser["nsd_tolerance_mm"] = tolerance
        check_settings(parser.get_parsed_content("settings", instantiate=True, lazy=False))
    parser["nsd_tolerance_mm"] = [1.0]
    with pytest.raises(SettingError, match=r"^nsd_tolerance_mm \[1.0\] has 1 value\(s\) for the 2 classes"):
        check_settings(parser.get_parsed_content("settings", instantiate=True, lazy=False))
    parser["nsd_tolerance_mm"] = "2mm"
    with pytest.raises(SettingError, match="^nsd_tolerance_mm must be a distance in mm >= 0"):
        check_settings(parser.get_parsed_content("settings", instantiate=True, lazy=False))
    # recorded with the evaluation's settings (run.json, the report)
    assert parser["evaluation_report"]["settings"]["nsd_tolerance_mm"] == "@nsd_tolerance_mm"


@pytest.mark.parametrize("name", BUNDLES)
def test_served_inference_reuses_freed_memory(name, monkeypatch):
    # MONAI Label's bundle app parses `inferer` (with `preprocessing` and `postprocessing`) but never `initialize`
    import monai_unets

    calls = []
    monkeypatch.setattr(monai_unets, "reuse_freed_memory", lambda: calls.append(1) or True)
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle_dir(name)) / "inference.yaml"))
    parser["bundle_root"] = str(bundle_dir(name))
    parser.get_parsed_content("inferer")
    assert calls == [1]


@pytest.mark.parametrize("name", BUNDLES)
@pytest.mark.parametrize(
    "device, cache, workers, expected",
    [
        # on a CPU, cached cases are cropped and flipped in the training process itself
        ("cpu", "memory", 2, 0),
        ("cpu", "disk", 2, 2),
        ("cpu", "none", 2, 2),
        ("cuda:0", "memory", 2, 2),
        ("cuda:0", "memory", 0, 0),
    ],
)
def test_training_loader_workers(name, device, cache, workers, expected):
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle_dir(name)) / "train.yaml"))
    parser.update({"num_workers": workers, "cache": cache, "device": f"$torch.device('{device}')"})
    assert parser.get_parsed_content("train#dataloader#num_workers") == expected
    # kept between epochs; torch refuses persistent workers without workers
    assert parser.get_parsed_content("train#dataloader#persistent_workers") is (expected > 0)
    # reading and checking the cases uses the workers wherever training runs
    assert parser.get_parsed_content("train#dataset#num_workers") == workers


@pytest.mark.parametrize("name", BUNDLES)
@pytest.mark.parametrize("workers", [0, 3])
def test_training_loader_override_keeps_a_valid_loader(name, workers):
    """The model zoo's way of setting a loader's workers, ``--train#dataloader#num_workers N``, on a GPU run."""
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle_dir(name)) / "train.yaml"))
    parser.update({"num_workers": 2, "device": "$torch.device('cuda:0')", "train#dataloader#num_workers": workers})
    assert parser.get_parsed_content("train#dataloader#num_workers") == workers
    assert parser.get_parsed_content("train#dataloader#persistent_workers") is (workers > 0)


def test_training_epochs_reuse_the_same_worker_processes(tmp_path):
    """Starting the workers anew each epoch doubled a short epoch's time; two epochs run on the same ones."""
    from ignite.engine import Events
    from monai_unets.scripts.demo_ct import generate_demo_ct

    generate_demo_ct(tmp_path, num_cases=3, num_test=0, shape=(56, 48, 24), spacing=(1.5, 1.5, 2.0))
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle_dir("egeunet3d_pancreas_ct")) / "train.yaml"))
    parser.update(
        {
            "bundle_root": str(tmp_path),
            "dataset_dir": str(tmp_path),
            "max_epochs": 2,
            "val_interval": 1000,
            "train#dataloader#num_workers": 1,
            "patch_size": [32, 32, 32],
            "train#handlers": [],
        }
    )
    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("train#trainer")
    workers: list[list[int]] = []
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED, lambda engine: workers.append([w.pid for w in engine.data_loader._iterator._workers])
    )
    trainer.run()
    assert trainer.state.epoch == 2 and len(workers) == 2
    assert workers[0] == workers[1] and len(workers[0]) == 1


@pytest.fixture(scope="module", params=BUNDLES)
def trained(request, tmp_path_factory):
    """A copy of the bundle trained for one epoch on small generated data, then run and evaluated."""
    name = request.param
    case = BUNDLE_CASES[name]
    root = tmp_path_factory.mktemp(name)
    data = case.make_data(root / "data")
    bundle = root / name
    shutil.copytree(bundle_dir(name), bundle)
    fast = ["--num_workers", "0", "--batch_size", "2"]
    train = [str(_configs(bundle) / "train.yaml")]
    # model-zoo style command with a run id
    _run_bundle(
        bundle, train, "--dataset_dir", str(data), "--max_epochs", "1", "--val_interval", "1", *fast, *case.train_args,
        run_id="training",
    )  # fmt: skip

    # inference on a folder holding the test inputs and one corrupt file
    inputs = root / "inputs"
    inputs.mkdir()
    sources = case.make_inputs(data, inputs)
    (inputs / case.bad_input_name).write_bytes(b"not an image at all")
    predictions = root / "predictions"
    # the corrupt file makes the run end with status 1, after every other input got its prediction
    inference = _run_bundle(
        bundle,
        [str(_configs(bundle) / "inference.yaml")],
        "--dataset_dir", str(data), "--input_dir", str(inputs), "--output_dir", str(predictions), "--num_workers", "0",
        *case.infer_args, returncode=1,
    )  # fmt: skip

    evaluation = root / "evaluation"
    _run_bundle(
        bundle,
        train + [str(_configs(bundle) / "evaluate.yaml")],
        "--dataset_dir", str(data), "--eval_dir", str(evaluation), "--num_workers", "0", *case.train_args,
        *case.infer_args,
    )  # fmt: skip
    return {"name": name, "case": case, "bundle": bundle, "data": data, "sources": sources,
            "predictions": predictions, "evaluation": evaluation, "inference_stderr": inference.stderr,
            "inference_stdout": inference.stdout}  # fmt: skip


def _network(bundle: Path) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle) / "inference.yaml"))
    parser["bundle_root"] = str(bundle)
    return parser.get_parsed_content("network_def")


def test_training_writes_plain_state_dict_weights(trained):
    weights = torch.load(trained["bundle"] / "models" / "model.pt", map_location="cpu", weights_only=True)
    net = _network(trained["bundle"])
    net.load_state_dict(weights)  # strict: every key of the network, nothing else
    assert list((trained["bundle"] / "logs").glob("events.out.tfevents.*")), "no TensorBoard log"


def test_inference_writes_one_prediction_per_input_in_its_geometry(trained):
    case = trained["case"]
    for source in trained["sources"]:
        assert (trained["predictions"] / case.prediction_name(source)).is_file(), f"no prediction for {source.name}"
        case.check_prediction(source, trained["predictions"])


def test_inference_reports_the_corrupt_file_and_goes_on(trained):
    with open(trained["predictions"] / "failures.csv", newline="") as f:
        failures = list(csv.DictReader(f))
    assert [Path(row["file"]).name for row in failures] == [trained["case"].bad_input_name]
    assert failures[0]["stage"] == "reading"
    assert failures[0]["error"]
    cases = len(trained["sources"]) + 1
    assert trained["inference_stderr"].strip().splitlines()[-1].startswith(f"{cases} case(s): {cases - 1} ok, 1 failed")


def test_inference_log_says_what_was_written_without_highdicom_details(trained):
    # the bundle's logging.conf keeps highdicom's per-module INFO lines (nine per DICOM SEG) out of the log
    series = [source for source in trained["sources"] if source.is_dir()]
    if not series:
        pytest.skip("this bundle reads no DICOM series, so it writes no DICOM SEG")
    log = trained["inference_stdout"]
    for source in series:
        assert f"SaveDicomSeg: wrote {trained['predictions'] / f'{source.name}_seg.dcm'}" in log
    assert " - highdicom" not in log


def test_dicom_segs_name_their_bundle_and_code_their_classes(trained):
    # the SEG had named the package (monai_unets 0.1.0) for every bundle, and coded every class as "Tissue"
    series = [source for source in trained["sources"] if source.is_dir()]
    if not series:
        pytest.skip("this bundle reads no DICOM series, so it writes no DICOM SEG")
    metadata = json.loads((trained["bundle"] / "configs" / "metadata.json").read_text())
    for source in series:
        seg = pydicom.dcmread(trained["predictions"] / f"{source.name}_seg.dcm", stop_before_pixels=True)
        segments = [
            (
                item.SegmentLabel,
                item.SegmentedPropertyTypeCodeSequence[0].CodeMeaning,
                item.SegmentAlgorithmName,
                item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion,
            )
            for item in seg.SegmentSequence
        ]
        # every class of the demo's dataset.json, which names them as the Decathlon's pancreas task does
        assert segments == [
            ("pancreas", "Pancreas", metadata["name"], metadata["version"]),
            ("cancer", "Neoplasm", metadata["name"], metadata["version"]),
        ]


def test_evaluation_writes_per_case_metrics(trained):
    with open(trained["evaluation"] / "metrics_per_case.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == trained["case"].evaluated_cases(trained["data"])
    metrics = list(trained["case"].metrics)
    assert list(rows[0]) == ["case", "name", *metrics]
    for row in rows:
        values = {m: float(row[m]) for m in metrics}
        # overlap figures are fractions; distances (mm) are not bounded, and nan where a class is absent
        fractions = [v for m, v in values.items() if "hd95" not in m and "mae" not in m and not math.isnan(v)]
        assert all(0.0 <= v <= 1.0 for v in fractions), row
    with open(trained["evaluation"] / "metrics_summary.csv", newline="") as f:
        assert [r["metric"] for r in csv.DictReader(f)] == metrics
    assert (trained["evaluation"] / "metrics.csv").is_file()


@pytest.mark.parametrize("workflow_type, config", [("train", "train.yaml"), ("infer", "inference.yaml")])
def test_config_properties(trained, workflow_type, config):
    bundle = trained["bundle"]
    workflow = ConfigWorkflow(
        config_file=str(_configs(bundle) / config),
        meta_file=str(_configs(bundle) / "metadata.json"),
        workflow_type=workflow_type,
        bundle_root=str(bundle),
        dataset_dir=str(trained["data"]),
        num_workers=0,
    )
    workflow.initialize()
    assert workflow.check_properties() == []


def test_ckpt_export_reloads_to_the_same_outputs(trained):
    bundle = trained["bundle"]
    configs = _configs(bundle)
    exported = bundle / "models" / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(exported),
        ckpt_file=str(bundle / "models" / "model.pt"),
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.yaml"),
        bundle_root=str(bundle),
    )
    scripted = torch.jit.load(str(exported))
    net = _network(bundle)
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    image = json.loads((configs / "metadata.json").read_text())["network_data_format"]["inputs"]["image"]
    x = torch.rand(1, image["num_channels"], *[int(s) for s in image["spatial_shape"]])
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))


# float32 kernels differ between runtimes; relative to the output's range
ONNX_TOLERANCE = 1e-4


# the skin-lesion bundle's export runs in the default suite through its runtime switch (test_runtime_switch.py)
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "egeunet_skin_lesion" else n for n in BUNDLES]
)
def test_onnx_export_matches_eager(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from monai.bundle import onnx_export

    configs = _configs(bundle_dir(name))
    net = _network(bundle_dir(name)).eval()
    weights = tmp_path / "model.pt"
    torch.save(net.state_dict(), weights)
    image = json.loads((configs / "metadata.json").read_text())["network_data_format"]["inputs"]["image"]
    shape = [1, image["num_channels"], *[int(s) for s in image["spatial_shape"]]]
    exported = tmp_path / "model.onnx"
    onnx_export(
        net_id="network_def",
        filepath=str(exported),
        ckpt_file=str(weights),
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.yaml"),
        input_shape=shape,
    )
    x = torch.rand(*shape)
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        eager = net(x).numpy()
    assert onnx_out.shape == eager.shape
    assert abs(onnx_out - eager).max() <= ONNX_TOLERANCE * max(1.0, abs(eager).max())


@pytest.mark.parametrize("name", list_bundles())
def test_case_isolation_knows_every_file_inference_writes_for_a_case(name, tmp_path, monkeypatch):
    # a failed case's files from an earlier run are removed by name: every writer of the config must be known
    configs = _configs(bundle_dir(name))
    parser = ConfigParser()
    parser.read_meta(str(configs / "metadata.json"))
    parser.read_config(str(configs / "inference.yaml"))
    # the CT bundles' probability maps, off by default; a relative output folder, as users give it
    monkeypatch.chdir(tmp_path)
    parser.update({"bundle_root": str(tmp_path), "output_dir": "out", "write_probabilities": True})
    isolation = parser.get_parsed_content("case_isolation")
    # every file is placed when the config is parsed: ITK's module loading changes the working folder for a
    # moment, and a background thread writing to a relative path then would write elsewhere
    monkeypatch.chdir(tmp_path.parent)
    assert isolation.failure_log == tmp_path / "out" / "failures.csv"
    outputs = isolation.outputs
    names = sorted(path.name for path in case_output_paths(outputs, "ct_1.2"))
    if "pancreas" in name:
        assert names == ["ct_1.2_prob.nii.gz", "ct_1.2_seg.dcm", "ct_1.2_seg.nii.gz", "ct_1.2_uncertainty.nii.gz"]
    else:
        assert names == ["ct_1.2_seg.png"]
    assert {path.parent for path in case_output_paths(outputs, "ct_1.2")} == {tmp_path / "out"}


@pytest.mark.parametrize("name", list_bundles())
def test_served_inference_writes_no_file_on_the_server(name, tmp_path):
    # MONAI Label's bundle app takes the postprocessing's transforms and leaves out those that are SaveImaged; it
    # returns the label map itself. A writer left in would put files (a DICOM SEG with the patient's identifiers)
    # on the server that no one receives
    configs = _configs(bundle_dir(name))
    parser = ConfigParser()
    parser.read_meta(str(configs / "metadata.json"))
    parser.read_config(str(configs / "inference.yaml"))
    parser.update({"bundle_root": str(tmp_path), "output_dir": str(tmp_path / "out"), "write_probabilities": True})
    served = [t for t in parser.get_parsed_content("postprocessing").transforms if not isinstance(t, SaveImaged)]
    assert served and case_output_paths(served, "case") == []


# a multi-channel training and inference end to end (~30 s); the channel checks have faster tests
@pytest.mark.slow
def test_a_multi_modal_mr_dataset_trains_and_infers_with_all_its_channels(tmp_path):
    """A dataset of two MR channels in MSD's 4D NIfTI, planned, trained and inferred: the network takes both
    channels, the label map has the study's grid, the metadata says what the weights take, and a study of one
    channel is refused, naming what the weights want."""
    import nibabel as nib
    import numpy as np
    from monai_unets.data.plan import plan_dataset, save_plan
    from monai_unets.scripts.demo_mr import generate_demo_mr

    name = "egeunet3d_pancreas_ct"
    data = tmp_path / "data"
    generate_demo_mr(data, num_cases=2, num_test=0, shape=(24, 28, 20), sequences=("T1", "T2"))
    dataset = json.loads((data / "dataset.json").read_text())
    # placed off the origin, so that the label map's grid is checked against the study's own
    affine = np.diag([1.0, 1.2, 1.5, 1.0])
    affine[:3, 3] = [-10.0, 4.0, 7.5]
    for case in dataset["training"]:
        for key in ("image", "label"):
            nib.save(nib.Nifti1Image(np.asarray(nib.load(data / case[key]).dataobj), affine), data / case[key])
    save_plan(plan_dataset(data, device="cpu"), data / "plan.json")

    bundle = tmp_path / name
    shutil.copytree(bundle_dir(name), bundle)
    fast = ["--max_epochs", "1", "--val_interval", "1", "--num_workers", "0", "--patch_size", "[32, 32, 32]"]
    _run_bundle(bundle, [str(_configs(bundle) / "train.yaml")], "--dataset_dir", str(data), *fast, "--quiet", "True")
    inputs = json.loads((_configs(bundle) / "metadata.json").read_text())["network_data_format"]["inputs"]["image"]
    assert (inputs["num_channels"], inputs["modality"]) == (2, "MR")

    studies = tmp_path / "studies"
    studies.mkdir()
    study = data / dataset["training"][0]["image"]
    shutil.copy(study, studies / "mr.nii.gz")
    one_channel = nib.load(study)
    nib.save(nib.Nifti1Image(np.asarray(one_channel.dataobj)[..., 0], affine), studies / "t1_only.nii.gz")
    out = tmp_path / "out"
    args = ["--input_dir", str(studies), "--output_dir", str(out), "--num_workers", "0"]
    _run_bundle(bundle, [str(_configs(bundle) / "inference.yaml")], *args, returncode=1)
    label = nib.load(out / "mr_seg.nii.gz")
    assert label.shape == (24, 28, 20) and np.allclose(label.affine, affine)
    with open(out / "failures.csv", newline="") as f:
        (failure,) = list(csv.DictReader(f))
    assert failure["case"] == "t1_only"
    assert (
        "has 1 channel (shape (1, 24, 28, 20)); this bundle takes 2: give each case its 2 channels" in failure["error"]
    )
    # an nnU-Net imagesTs folder given as input_dir: each channel file alone; the message says where they pair up
    assert (
        "an nnU-Net dataset's dataset.json given as dataset_dir, not its image folder as input_dir"
        in (failure["error"])
    )
