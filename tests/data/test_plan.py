from __future__ import annotations

import json
import os
import re
import warnings

import nibabel as nib
import numpy as np
import pytest
from monai_unets.data.plan import (
    DEFAULT_PLAN,
    MissingModelError,
    PlanMismatchError,
    choose_patch_size,
    choose_target_spacing,
    dataset_plan,
    ensemble_plan,
    find_plan_of,
    load_plan,
    make_plan,
    plan_dataset,
    plan_file_of,
    record_classes_in_metadata,
    record_inputs_in_metadata,
    save_plan,
    weights_plan_file,
)
from monai_unets.scripts.demo_ct import generate_demo_ct
from monai_unets.scripts.demo_mr import generate_demo_mr


def _edit_dataset(dataset_dir, edit) -> dict:
    """Applies ``edit`` to the dataset.json of ``dataset_dir`` (in place) and writes it back; returns it."""
    path = dataset_dir / "dataset.json"
    dataset = json.loads(path.read_text())
    edit(dataset)
    path.write_text(json.dumps(dataset))
    return dataset


def _drop_modality(dataset_dir):
    _edit_dataset(dataset_dir, lambda dataset: dataset.pop("modality"))


def _declare_modality(dataset_dir, name):
    _edit_dataset(dataset_dir, lambda dataset: dataset.update(modality={"0": name}))


def _small_ct(tmp_path):
    root = tmp_path / "ct"
    generate_demo_ct(root, num_cases=2, num_test=0, shape=(24, 24, 8))
    return root


@pytest.fixture(scope="module")
def mr_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mr")
    generate_demo_mr(root, num_cases=3, num_test=0, shape=(32, 36, 28), spacing=(1.0, 1.2, 1.0), modality=False)
    return root


@pytest.fixture(scope="module")
def ct_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct")
    generate_demo_ct(root, num_cases=3, num_test=0, shape=(40, 36, 16), spacing=(0.8, 0.8, 3.0))
    return root


def test_mr_without_modality_field_gets_per_image_zscore_and_its_spacing(mr_dir):
    plan = plan_dataset(mr_dir, device="cpu")
    assert plan["modality"] == "MR"
    assert plan["normalization"] == {"scheme": "zscore_nonzero"}
    assert plan["foreground_threshold"] is None  # the non-zero region
    assert plan["spacing"] == [1.0, 1.2, 1.0]
    assert plan["num_classes"] == 4
    assert plan["class_names"] == ["csf", "grey_matter", "white_matter"]
    assert plan["labels"] == {"1": "csf", "2": "grey_matter", "3": "white_matter"}


def test_ct_clips_to_foreground_percentiles_and_zscores_with_their_statistics(ct_dir):
    plan = plan_dataset(ct_dir, device="cpu")
    assert plan["modality"] == "CT"
    norm = plan["normalization"]
    assert norm["scheme"] == "ct"
    # the phantom's organ is 110 HU and its tumour 30 HU, with noise of 12 HU
    assert 0 < norm["clip"][0] < 30 < 110 < norm["clip"][1] < 160
    assert 60 < norm["mean"] < 110 and 10 < norm["std"] < 60
    assert plan["foreground_threshold"] == -500.0
    # the phantoms are written in LPS with (0.8, 0.8, 3.0) mm voxels; RAS keeps the axis order
    assert plan["spacing"] == [0.8, 0.8, 3.0]


def test_a_dataset_stored_in_meters_is_planned_in_mm(tmp_path):
    # the header's unit was ignored: the planned spacing came out in meters taken for mm, 1000 times too fine
    root = tmp_path / "ct"
    generate_demo_ct(root, num_cases=2, num_test=0, shape=(24, 24, 8), spacing=(0.8, 0.8, 3.0))
    for path in [*root.glob("imagesTr/*.nii.gz"), *root.glob("labelsTr/*.nii.gz")]:
        image = nib.load(path)
        in_meters = np.diag([1e-3, 1e-3, 1e-3, 1.0]) @ image.affine
        image = nib.Nifti1Image(np.asanyarray(image.dataobj), in_meters)
        image.header.set_xyzt_units("meter")
        nib.save(image, path)
    assert plan_dataset(root, device="cpu")["spacing"] == [0.8, 0.8, 3.0]


def test_ct_is_recognised_from_hounsfield_units_without_modality_field(ct_dir, tmp_path):
    copy = tmp_path / "ct"
    generate_demo_ct(copy, num_cases=2, num_test=0, shape=(24, 24, 8))
    _drop_modality(copy)
    assert plan_dataset(copy, device="cpu")["modality"] == "CT"


@pytest.mark.parametrize("name", ["CECT", "CTA", "NCCT", "Computed Tomography", "ct arterial", " CT "])
def test_ct_under_other_names_is_planned_as_ct(tmp_path, name):
    root = _small_ct(tmp_path)
    _declare_modality(root, name)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*intensities look like")
        plan = plan_dataset(root, device="cpu")
    assert (plan["modality"], plan["normalization"]["scheme"], plan["foreground_threshold"]) == ("CT", "ct", -500.0)


def test_declared_modality_that_the_intensities_contradict_is_kept_with_a_warning(ct_dir, mr_dir, tmp_path):
    root = _small_ct(tmp_path)
    _declare_modality(root, "T1")
    with pytest.warns(UserWarning, match=r"modality 'T1' is planned as MR, but the intensities look like CT"):
        assert plan_dataset(root, device="cpu")["modality"] == "MR"
    mr = tmp_path / "mr"
    generate_demo_mr(mr, num_cases=2, num_test=0, shape=(24, 24, 16), modality=False)
    _declare_modality(mr, "CT")
    with pytest.warns(UserWarning, match=r"modality 'CT' is planned as CT, but the intensities look like MR"):
        assert plan_dataset(mr, device="cpu")["modality"] == "CT"


def test_planning_prints_no_warning_of_monai_s_changed_orientation_default(tmp_path):
    # `monai-unets plan` printed MONAI's "Current default value of argument `labels` ... changed" on every run
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan_dataset(_small_ct(tmp_path), device="cpu")
    assert [str(w.message) for w in caught if "labels" in str(w.message)] == []


def test_anisotropic_data_takes_a_finer_coarse_axis_spacing():
    # median z spacing 5 mm against 0.7 mm in-plane, and few slices: nnU-Net's 10th percentile rule
    spacings = [[0.7, 0.7, 4.0], [0.7, 0.7, 5.0], [0.7, 0.7, 6.0]]
    assert choose_target_spacing(spacings, [[512, 512, 40]] * 3) == [0.7, 0.7, 4.2]
    # isotropic-ish data keep the median
    assert choose_target_spacing([[1, 1, 1.2], [1, 1, 1.5], [1, 1, 1.4]], [[100, 100, 100]] * 3) == [1.0, 1.0, 1.4]


def test_patch_fits_budget_and_follows_the_image_shape():
    patch = choose_patch_size([300, 300, 60], [0.8, 0.8, 3.0], 64**3)
    assert np.prod(patch) <= 64**3
    assert all(p % 32 == 0 for p in patch)
    # a small image gets a patch no larger than itself (rounded up to 32)
    assert choose_patch_size([40, 36, 20], [1, 1, 1], 128**3) == [64, 64, 32]


def test_patch_is_not_inflated_by_float32_or_rounded_spacings():
    # 64 voxels of 0.30000001 mm (a NIfTI header's float32 of 0.3) at the target 0.3 mm are 64.0000013 voxels
    resampled = 64 * float(np.float32(0.3)) / 0.3
    assert choose_patch_size([resampled, resampled, 6], [0.3, 0.3, 8.0], 64**3) == [64, 64, 32]
    # a target spacing rounded to 4 decimals: 512 voxels of 0.390625 mm at 0.3906 mm are 512.03 voxels
    assert choose_patch_size([512 * 0.390625 / 0.3906] * 3, [0.3906] * 3, 512**3) == [512, 512, 512]
    fingerprint = {
        "spacings": [[float(np.float32(0.3)), float(np.float32(0.3)), 8.0]] * 4,
        "shapes": [[64, 64, 6]] * 4,
        "foreground_intensity": {},
        "modality": "MR",
        "labels": {"0": "background", "1": "a"},
        "class_fractions": {"0": 0.9, "1": 0.1},
    }
    assert make_plan(fingerprint, "cpu")["patch_size"] == [64, 64, 32]


def test_batch_size_grows_for_small_patches():
    fingerprint = {
        "spacings": [[1, 1, 1]] * 2,
        "shapes": [[30, 30, 30]] * 2,
        "foreground_intensity": {},
        "modality": "MR",
        "labels": {"0": "background", "1": "a"},
        "class_fractions": {"0": 0.9, "1": 0.1},
    }
    plan = make_plan(fingerprint, "cpu")
    assert plan["patch_size"] == [32, 32, 32]
    assert plan["batch_size"] == 8  # 8 patches of 32^3 make the CPU's budget of one 64^3 patch
    fingerprint["shapes"] = [[200, 200, 200]] * 2
    assert make_plan(fingerprint, "cpu")["batch_size"] == 1  # small, frequent steps on a CPU


def test_load_plan_defaults_when_absent_and_round_trips(tmp_path):
    assert load_plan(tmp_path / "missing.json") == DEFAULT_PLAN
    plan = {**DEFAULT_PLAN, "spacing": [1.0, 1.0, 1.0], "num_classes": 4}
    save_plan(plan, tmp_path / "sub" / "plan.json")
    assert load_plan(tmp_path / "sub" / "plan.json") == plan
    assert not list((tmp_path / "sub").glob("*.tmp"))


def test_a_version_1_plan_crops_mr_to_its_non_zero_region(tmp_path):
    mr = {**DEFAULT_PLAN, "version": 1, "normalization": {"scheme": "zscore_nonzero"}, "foreground_threshold": 0.0}
    save_plan(mr, tmp_path / "mr.json")
    assert load_plan(tmp_path / "mr.json")["foreground_threshold"] is None
    # a CT plan, and a threshold the plan's version means as written, stay as they are
    save_plan({**DEFAULT_PLAN, "version": 1}, tmp_path / "ct.json")
    assert load_plan(tmp_path / "ct.json")["foreground_threshold"] == -500.0
    save_plan({**mr, "version": 2}, tmp_path / "v2.json")
    assert load_plan(tmp_path / "v2.json")["foreground_threshold"] == 0.0


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({**DEFAULT_PLAN, "spacing": [1, 0, 1]}), "'spacing' must be 3 positive numbers"),
        # cut or edited: the default recipe's spacing must not stand in for the one the weights were trained at
        (json.dumps({k: v for k, v in DEFAULT_PLAN.items() if k != "spacing"}), "has no 'spacing'; plan the"),
    ],
)
def test_bad_plan_file_is_named(tmp_path, content, message):
    path = tmp_path / "plan.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        load_plan(path)
    assert str(path) in str(error.value)


def test_undeclared_label_value_is_refused(ct_dir, tmp_path):
    root = _small_ct(tmp_path)
    label_path = root / "labelsTr" / "demo_000.nii.gz"
    label = nib.load(label_path)
    data = np.asarray(label.dataobj).copy()
    data[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(data, label.affine), label_path)
    with pytest.raises(ValueError, match=r"\[7\]"):
        plan_dataset(root, device="cpu")


def test_a_declared_class_without_any_voxel_is_warned_about(tmp_path):
    root = _small_ct(tmp_path)
    _edit_dataset(root, lambda dataset: dataset["labels"].update({"3": "metastasis"}))
    with pytest.warns(UserWarning, match=r"class 3 \(metastasis\) appears in none of the 2 training labels"):
        plan = plan_dataset(root, device="cpu")
    assert plan["class_fractions"]["3"] == 0.0


def _two_channel_mr(tmp_path, layout):
    """MR phantoms of two sequences: MSD's 4D NIfTI, or nnU-Net's file per channel."""
    root = tmp_path / layout
    generate_demo_mr(root, num_cases=3, num_test=0, shape=(32, 36, 28), sequences=("T1", "T2"))
    if layout == "msd":
        return root
    dataset = json.loads((root / "dataset.json").read_text())
    for case in dataset["training"]:
        path = root / case["image"]
        image = nib.load(path)
        case["image"] = [str(case["image"]).replace(".nii.gz", f"_{c:04d}.nii.gz") for c in range(2)]
        for c, name in enumerate(case["image"]):
            nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[..., c], image.affine), root / name)
        path.unlink()
    (root / "dataset.json").write_text(json.dumps(dataset))
    return root


@pytest.mark.parametrize("layout", ["msd", "files"])
def test_a_dataset_of_several_mr_channels_is_planned_with_them(tmp_path, layout):
    # MSD's 4D NIfTI (prostate T2 and ADC) and a list of one file per channel (nnU-Net's <case>_0000, _0001)
    plan = plan_dataset(_two_channel_mr(tmp_path, layout), device="cpu")
    assert plan["in_channels"] == 2 and plan["modality"] == "MR"
    # each channel of each image z-scored on its own: their scales are unrelated
    assert plan["normalization"] == {"scheme": "zscore_nonzero"}
    assert plan["median_shape"] == [32, 36, 28]


def test_a_case_of_other_channels_than_the_dataset_is_named_with_its_files(tmp_path):
    root = _small_ct(tmp_path)

    def second_case_of_two_files(dataset):
        dataset.pop("modality")
        second = dataset["training"][1]
        second["image"] = [second["image"], dataset["training"][0]["image"]]

    second = _edit_dataset(root, second_case_of_two_files)["training"][1]
    files = ", ".join(os.path.abspath(root / name) for name in second["image"])
    with pytest.raises(
        ValueError,
        match=rf"^{re.escape(files)}: the image has 2 channel\(s\); the dataset's first case has 1$",
    ):
        plan_dataset(root, device="cpu")
    # channels of CT and of another modality: refused from the dataset.json before any case is read
    nnunet = tmp_path / "nnunet"
    (nnunet / "labelsTr").mkdir(parents=True)
    (nnunet / "labelsTr" / "case.nii.gz").touch()
    raw = {"channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "a": 1}, "file_ending": ".nii.gz"}
    (nnunet / "dataset.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"dataset.json: its input channels .* mix CT with other modalities"):
        plan_dataset(nnunet, device="cpu")


def test_nnunet_label_tables_are_read_and_unreadable_cases_say_which_file_and_why(tmp_path):
    root = _small_ct(tmp_path)
    # nnU-Net writes its label table name -> value
    dataset = _edit_dataset(
        root, lambda dataset: dataset.update(labels={name: int(value) for value, name in dataset["labels"].items()})
    )
    plan = plan_dataset(root, device="cpu")
    assert plan["labels"] == {str(value): name for name, value in dataset["labels"].items() if value > 0}
    label = root / dataset["training"][1]["label"]
    label.write_bytes(label.read_bytes()[:60])  # an interrupted download
    with pytest.raises(ValueError, match=rf"{label}: cannot read the label: \w+Error: "):
        plan_dataset(root, device="cpu")
    label.unlink()
    with pytest.raises(ValueError, match=rf"{label}: label file does not exist"):
        plan_dataset(root, device="cpu")


def test_a_saved_plan_is_readable_as_the_weights_beside_it_are(tmp_path):
    import os
    import stat

    from monai_unets.data.plan import load_plan, save_plan

    # the plan beside model.pt is read by other accounts (a MONAI Label server's): it follows the umask as
    # model.pt does, where a NamedTemporaryFile had made it 0600
    previous = os.umask(0o022)
    try:
        path = save_plan({"spacing": [1.0, 1.0, 2.0]}, tmp_path / "models" / "plan.json")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["plan.json"]
    assert load_plan.__name__ and (tmp_path / "models" / "plan.json").read_text().startswith("{")


@pytest.mark.parametrize(
    ("weights", "plan"),
    [("model.pt", "plan.json"), ("model_fold3.pt", "plan_fold3.json"), ("ct_fold0.pt", "ct_fold0.plan.json")],
)
def test_each_weights_file_has_its_own_plan_file_beside_it(tmp_path, weights, plan):
    assert plan_file_of(tmp_path / "models" / weights) == str(tmp_path / "models" / plan)


def test_weights_without_their_own_plan_read_the_folder_s_plan_json(tmp_path):
    models = tmp_path / "models"
    assert find_plan_of(models / "model_fold0.pt") is None
    # folds trained before each kept its plan: their plan.json
    shared = save_plan(DEFAULT_PLAN, models / "plan.json")
    assert find_plan_of(models / "model_fold0.pt") == shared
    own = save_plan(DEFAULT_PLAN, models / "plan_fold0.json")
    assert find_plan_of(models / "model_fold0.pt") == own
    assert find_plan_of(models / "model.pt") == shared
    # a fold's training checkpoint (a model file MONAI Label offers) holds that fold's weights: its plan, not plan.json
    assert find_plan_of(models / "checkpoint_fold0.pt") == own
    assert find_plan_of(models / "checkpoint.pt") == shared


def test_weights_without_a_plan_of_their_own_take_the_dataset_s_or_the_default_one_with_a_warning(tmp_path):
    # a model.pt copied alone had run with the default recipe without a word, and its evaluation with the dataset's
    weights = tmp_path / "copied" / "model.pt"
    weights.parent.mkdir()
    weights.touch()
    with pytest.warns(UserWarning, match="model.pt has no plan file beside it .* original pancreas CT recipe"):
        assert weights_plan_file(weights) is None
    dataset = save_plan({**DEFAULT_PLAN, "spacing": [0.9, 0.9, 2.5]}, tmp_path / "Task07" / "plan.json")
    with pytest.warns(UserWarning, match=f"taken from the dataset's plan {re.escape(dataset)}"):
        assert weights_plan_file(weights, tmp_path / "Task07") == dataset
    with pytest.warns(UserWarning, match="the dataset's plan"):
        assert ensemble_plan([str(weights)], tmp_path / "Task07")["spacing"] == [0.9, 0.9, 2.5]
    own = save_plan(DEFAULT_PLAN, weights.parent / "plan.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert weights_plan_file(weights, tmp_path / "Task07") == own
        # weights that do not exist are named as missing by the loader: no plan is guessed for them
        assert weights_plan_file(tmp_path / "none" / "model.pt", tmp_path / "Task07") is None


def _fold_plan(models, k, **changes):
    save_plan({**DEFAULT_PLAN, **changes}, models / f"plan_fold{k}.json")
    weights = models / f"model_fold{k}.pt"
    weights.touch()  # the plan is what is compared; the inferer reads the weights
    return str(weights)


def test_an_ensemble_keeps_a_class_s_largest_component_where_every_member_chose_to(tmp_path):
    keep = ([1, 2], [2], [2, 1])
    members = [_fold_plan(tmp_path, k, postprocessing={"keep_largest": v}) for k, v in enumerate(keep)]
    plan = ensemble_plan(members)
    assert plan["postprocessing"]["keep_largest"] == [2]
    assert {k: v for k, v in plan.items() if k != "postprocessing"} == {
        k: v for k, v in load_plan(tmp_path / "plan_fold0.json").items() if k != "postprocessing"
    }
    # one model: its own choice
    assert ensemble_plan(members[:1])["postprocessing"]["keep_largest"] == [1, 2]


@pytest.mark.parametrize(
    "changes",
    [
        {"spacing": [1.0, 1.0, 2.0]},
        {"normalization": {"scheme": "zscore_nonzero"}},
        {"patch_size": [64, 64, 64]},
        {"labels": {"1": "liver", "2": "tumour"}},
        {"modality": "MR"},
    ],
)
def test_an_ensemble_of_members_trained_with_other_plans_is_refused_naming_the_files(tmp_path, changes):
    members = [_fold_plan(tmp_path, 0), _fold_plan(tmp_path, 1, **changes)]
    with pytest.raises(PlanMismatchError) as raised:
        ensemble_plan(members)
    message = str(raised.value)
    assert str(tmp_path / "plan_fold0.json") in message and str(tmp_path / "plan_fold1.json") in message
    assert f"differ in {next(iter(changes))}" in message


def test_a_fold_s_plan_that_records_another_fold_is_refused_naming_the_file(tmp_path):
    # a copy of fold 0's plan over fold 1's had been read as fold 1's: its post-processing and any overrides were
    # chosen for fold 0's weights
    members = [_fold_plan(tmp_path, 0, fold=0), _fold_plan(tmp_path, 1, fold=0)]
    message = f"plan {tmp_path / 'plan_fold1.json'} records fold 0: it is that fold's plan, not fold 1's"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_plan(tmp_path / "plan_fold1.json")
    with pytest.raises(ValueError, match=re.escape(message)):
        ensemble_plan(members)
    # its own fold, none (written before plans recorded it), null (no folds), and a fold under another name load
    _fold_plan(tmp_path, 1, fold=1)
    assert ensemble_plan(members)["fold"] == 0
    _fold_plan(tmp_path, 1)
    assert "fold" not in load_plan(tmp_path / "plan_fold1.json")
    save_plan({**DEFAULT_PLAN, "fold": None}, tmp_path / "plan_fold2.json")
    save_plan({**DEFAULT_PLAN, "fold": 3}, tmp_path / "plan.json")
    assert load_plan(tmp_path / "plan_fold2.json")["fold"] is None and load_plan(tmp_path / "plan.json")["fold"] == 3


def test_a_member_without_any_plan_file_is_compared_with_the_default_plan(tmp_path):
    members = [_fold_plan(tmp_path, 0, spacing=[1.0, 1.0, 2.0]), str(tmp_path / "other" / "model.pt")]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.pt").touch()
    with pytest.raises(PlanMismatchError, match="model.pt \\(no plan file: the default plan\\)"):
        ensemble_plan(members)


def test_a_member_that_does_not_exist_is_named_as_missing_not_as_another_plan(tmp_path):
    # it had been refused as a member of the default plan's spacing, normalisation and patch size
    members = [_fold_plan(tmp_path, 0, spacing=[1.0, 1.0, 2.0]), str(tmp_path / "model_fold1.pt")]
    members.append(str(tmp_path / "model_fold2.pt"))
    with pytest.raises(MissingModelError) as raised:
        ensemble_plan(members)
    assert str(raised.value) == (
        f"{members[1]}: model file of the ensemble does not exist (nor {members[2]}); train that fold first, or leave "
        "it out of the ensemble."
    )
    # one model file without a plan (a network served as it is) still has the default plan
    assert ensemble_plan([str(tmp_path / "model.pt")])["spacing"] == DEFAULT_PLAN["spacing"]


def test_planning_refuses_nnunet_s_ignore_label(tmp_path):
    root = _small_ct(tmp_path)
    _edit_dataset(root, lambda dataset: dataset.update(labels={"background": 0, "pancreas": 1, "ignore": 2}))
    with pytest.raises(ValueError, match=rf"{root / 'dataset.json'}: label 2 is nnU-Net's 'ignore' label"):
        plan_dataset(root, device="cpu")


def test_without_a_plan_the_default_recipe_names_the_classes_as_the_dataset_does(tmp_path):
    # the Decathlon's pancreas calls class 2 "cancer": the default recipe's "tumour" had named it in the DICOM SEG,
    # the metrics and the plan saved with the weights
    root = _small_ct(tmp_path)
    _edit_dataset(root, lambda dataset: dataset.update(labels={"background": 0, "cancer": 2, "pancreas": 1}))
    plan = dataset_plan(root / "plan.json", root / "dataset.json")
    assert plan["class_names"] == ["pancreas", "cancer"] and plan["labels"] == {"1": "pancreas", "2": "cancer"}
    assert {k: v for k, v in plan.items() if k not in ("class_names", "labels")} == {
        k: v for k, v in DEFAULT_PLAN.items() if k not in ("class_names", "labels")
    }


def test_without_a_plan_the_default_plan_is_refused_for_other_data(tmp_path):
    root = _small_ct(tmp_path)
    datalist, plan_file = root / "dataset.json", root / "plan.json"
    _edit_dataset(root, lambda dataset: dataset.update(labels={"0": "background", "1": "pancreas", "2": "tumour"}))
    assert dataset_plan(plan_file, datalist) == DEFAULT_PLAN
    _edit_dataset(root, lambda dataset: dataset.update(labels={"0": "background", "1": "liver"}))
    with pytest.raises(ValueError, match=r"declares 2 labels \(background, liver\), the default plan 3") as raised:
        dataset_plan(plan_file, datalist)
    assert str(raised.value).startswith(f"{datalist}: there is no plan {plan_file}")
    assert str(raised.value).endswith(f"Run `monai-unets plan --dataset-dir {root}` first.")
    _edit_dataset(root, lambda dataset: dataset.update(labels={"0": "background", "1": "a", "2": "b"}))
    _declare_modality(root, "T2")
    with pytest.raises(ValueError, match="its modality is 'T2', not CT"):
        dataset_plan(plan_file, datalist)
    # a plan made for the dataset is what `monai-unets plan` is for: it is used as it is
    save_plan(dict(DEFAULT_PLAN, modality="MR", spacing=[1.0, 1.0, 1.0]), plan_file)
    assert dataset_plan(plan_file, datalist)["spacing"] == [1.0, 1.0, 1.0]


def test_label_values_with_a_gap_are_refused_before_any_case(tmp_path):
    # {0, 1, 3} without a plan: the declared name of 3 had been dropped for the default plan's, and each case then
    # failed after its inference, told to set num_classes, which cannot help
    root = _small_ct(tmp_path)
    datalist, plan_file = root / "dataset.json", root / "plan.json"
    _edit_dataset(root, lambda dataset: dataset.update(labels={"0": "background", "1": "pancreas", "3": "cancer"}))
    for plan in (None, DEFAULT_PLAN):
        if plan is not None:
            save_plan(plan, plan_file)
        with pytest.raises(ValueError, match=r"label values must be 0..K-1 without gaps, got \[0, 1, 3\].*\(3 -> 2\)"):
            dataset_plan(plan_file, datalist)


def test_a_plan_made_before_the_labels_changed_is_refused(tmp_path):
    # two classes merged into one after planning: training had gone on with an output and a name for the class no
    # label holds any more, without a word
    root = _small_ct(tmp_path)
    datalist, plan_file = root / "dataset.json", root / "plan.json"
    save_plan(DEFAULT_PLAN, plan_file)
    _edit_dataset(root, lambda dataset: dataset.update(labels={"0": "background", "1": "pancreas_and_tumour"}))
    with pytest.raises(
        ValueError, match=r"declares 2 labels \(background, pancreas_and_tumour\), but its plan"
    ) as raised:
        dataset_plan(plan_file, datalist)
    assert str(raised.value).endswith(f"run `monai-unets plan --dataset-dir {root}` again.")


def test_recording_classes_in_metadata_sets_the_output_classes_and_keeps_the_rest(tmp_path):
    from monai_unets.bundles import bundle_dir

    shipped = bundle_dir("egeunet3d_pancreas_ct") / "configs" / "metadata.json"
    metadata_file = tmp_path / "metadata.json"
    metadata_file.write_bytes(shipped.read_bytes())
    # the shipped file's own classes: nothing to write
    assert not record_classes_in_metadata(metadata_file, ["pancreas", "tumour"])
    assert metadata_file.read_bytes() == shipped.read_bytes()
    assert record_classes_in_metadata(metadata_file, ["liver", "lesion", "cyst"])
    before, after = json.loads(shipped.read_text()), json.loads(metadata_file.read_text())
    output = after["network_data_format"]["outputs"]["pred"]
    assert output["channel_def"] == {"0": "background", "1": "liver", "2": "lesion", "3": "cyst"}
    assert output["num_channels"] == 4
    # the descriptions for people too, which had kept naming the pancreas
    assert after["label_classes"] == "0 background, 1 liver, 2 lesion, 3 cyst"
    assert after["pred_classes"] == "4 channels of logits: background, liver, lesion, cyst"
    # as MONAI Label's bundle app reads a served bundle's labels
    assert {v.lower(): int(k) for k, v in output["channel_def"].items() if v.lower() != "background"} == {
        "liver": 1,
        "lesion": 2,
        "cyst": 3,
    }
    del output["channel_def"], output["num_channels"], after["label_classes"], after["pred_classes"]
    shipped_output = before["network_data_format"]["outputs"]["pred"]
    del shipped_output["channel_def"], shipped_output["num_channels"], before["label_classes"], before["pred_classes"]
    assert after == before


def test_recording_inputs_in_metadata_describes_the_channels(tmp_path):
    from monai_unets.bundles import bundle_dir

    shipped = bundle_dir("egeunet3d_pancreas_ct") / "configs" / "metadata.json"
    metadata_file = tmp_path / "metadata.json"
    metadata_file.write_bytes(shipped.read_bytes())
    assert not record_inputs_in_metadata(metadata_file, 1, "CT")
    assert metadata_file.read_bytes() == shipped.read_bytes()
    assert record_inputs_in_metadata(metadata_file, 4, "MR")
    after = json.loads(metadata_file.read_text())
    assert after["network_data_format"]["inputs"]["image"]["num_channels"] == 4
    # the description for people had kept saying a single channel
    assert after["image_classes"].startswith("4 channels of MR, normalised as the dataset's plan says")
    # and the patch shapes the recipe's 96^3, whatever patches the plan trained on
    assert record_inputs_in_metadata(metadata_file, 4, "MR", (64, 64, 48))
    shapes = json.loads(metadata_file.read_text())["network_data_format"]
    assert shapes["inputs"]["image"]["spatial_shape"] == shapes["outputs"]["pred"]["spatial_shape"] == [64, 64, 48]
    assert not record_inputs_in_metadata(metadata_file, 4, "MR", [64, 64, 48])


def test_planning_refuses_fractional_labels_and_names_the_file_of_an_undeclared_value(tmp_path):
    # a label map resampled linearly (0.999999, 1.999998) had been cast to 0 and 1: the plan warned that class 2
    # was absent, or planned too few classes
    import nibabel as nib

    root = _small_ct(tmp_path)
    path = sorted((root / "labelsTr").glob("*.nii.gz"))[1]
    image = nib.load(path)
    values = np.asarray(image.dataobj).astype(np.float32)
    nib.save(nib.Nifti1Image(values * 0.999999, image.affine), path)
    with pytest.raises(ValueError, match=rf"{path}: label values 0.999\d+, 1.999\d+ are not whole class numbers"):
        plan_dataset(root, device="cpu")
    values[0, 0, 0] = 255
    nib.save(nib.Nifti1Image(values.astype(np.uint8), image.affine), path)
    with pytest.raises(
        ValueError, match=rf"hold values \[255\] that its 'labels' do not declare \(255 first in {path}\)"
    ):
        plan_dataset(root, device="cpu")


def test_planning_names_every_case_at_fault_not_only_the_first(tmp_path):
    # planning had stopped at the first unreadable case: a dataset with several took a run per case to mend
    root = tmp_path / "ct"
    generate_demo_ct(root, num_cases=4, num_test=0, shape=(24, 24, 8))
    labels = sorted((root / "labelsTr").glob("*.nii.gz"))
    labels[0].write_bytes(b"not a NIfTI file")
    image = nib.load(labels[2])
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj).astype(np.float32) * 0.5, image.affine), labels[2])
    with pytest.raises(ValueError) as raised:
        plan_dataset(root, device="cpu")
    lines = str(raised.value).splitlines()
    assert lines[0] == f"{root / 'dataset.json'}: 2 of its 4 labelled cases cannot be planned:"
    assert lines[1].startswith(f"  {labels[0]}: cannot read the label")
    assert lines[2].startswith(f"  {labels[2]}: label values 0.5 are not whole class numbers")
    assert len(lines) == 3


def test_planning_refuses_images_of_nan_or_absurd_values_and_normalisations_not_finite(tmp_path):
    # an all-NaN image made a normalisation of NaN (written as a NaN literal, not JSON), one of 1e30 HU an infinite
    # std that made every input -0: trained on either, the network's weights became NaN
    from monai_unets.transforms import PlannedNormalize

    root = _small_ct(tmp_path)
    path = sorted((root / "imagesTr").glob("*.nii.gz"))[1]
    image = nib.load(path)
    values = np.asarray(image.dataobj).astype(np.float32)
    nib.save(nib.Nifti1Image(np.full_like(values, np.nan), image.affine), path)
    with pytest.raises(ValueError, match=rf"{path}: {values.size} voxels are NaN, infinite or beyond float32's range"):
        plan_dataset(root, device="cpu")
    values[values > 0] = 1e30
    nib.save(nib.Nifti1Image(values, image.affine), path)
    with pytest.raises(ValueError, match="give no finite statistics .*'std': inf"):
        plan_dataset(root, device="cpu")
    with pytest.raises(ValueError, match="normalization must hold finite numbers and a positive std"):
        PlannedNormalize({"scheme": "ct", "clip": [19.0, 1e30], "mean": 1.98e29, "std": float("inf")})


def test_planning_refuses_the_labels_training_refuses(tmp_path):
    # a one-hot label had been planned from, its background channel taken as the label (the clip window went from
    # [35, 140] to [-1018, 134]); a label off its image's grid had been planned from as if it lay on it
    root = _small_ct(tmp_path)
    path = sorted((root / "labelsTr").glob("*.nii.gz"))[1]
    image = nib.load(path)
    values = np.asarray(image.dataobj).astype(np.uint8)
    one_hot = np.stack([values == k for k in range(3)], axis=-1).astype(np.uint8)
    nib.save(nib.Nifti1Image(one_hot, image.affine), path)
    with pytest.raises(ValueError, match=rf"{path}: label has 3 channels; it must be a single label map"):
        plan_dataset(root, device="cpu")
    shifted = image.affine.copy()
    shifted[0, 3] += 60.0  # ITK-SNAP's file of no qform or sform code, placed by pixdim alone
    nib.save(nib.Nifti1Image(values, shifted), path)
    with pytest.raises(ValueError, match=rf"{path}: label is placed up to 60 mm away from its image"):
        plan_dataset(root, device="cpu")
    # header drift that a training's --affine_tolerance may allow is planned from
    shifted[0, 3] -= 60.0 - 0.05
    nib.save(nib.Nifti1Image(values, shifted), path)
    assert plan_dataset(root, device="cpu")["num_classes"] == 3


def test_planning_refuses_an_image_of_one_value_under_a_drawn_label(tmp_path):
    # a black series of a failed export took its one value into the statistics: the clip window went from the
    # organs' [19, 142] to [-1024, 139]
    root = _small_ct(tmp_path)
    path = sorted((root / "imagesTr").glob("*.nii.gz"))[1]
    image = nib.load(path)
    nib.save(nib.Nifti1Image(np.full(image.shape, -1024, np.int16), image.affine), path)
    with pytest.raises(ValueError, match=rf"{path}: image holds one value everywhere \(-1024\) while its label"):
        plan_dataset(root, device="cpu")


def test_planning_labels_with_a_gap_says_how_to_relabel(tmp_path):
    # BraTS labels 0, 1, 2, 4: the refusal says which value becomes which
    root = _small_ct(tmp_path)
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = {"0": "background", "1": "pancreas", "3": "cancer"}
    (root / "dataset.json").write_text(json.dumps(meta))
    for path in (root / "labelsTr").glob("*.nii.gz"):
        label = nib.load(path)
        values = np.asarray(label.dataobj)
        nib.save(nib.Nifti1Image(np.where(values == 2, 3, values).astype(np.uint8), label.affine), path)
    with pytest.raises(
        ValueError,
        match=r"got \[0, 1, 3\] in .*; relabel the files \(3 -> 2\), and the 'labels' of a dataset.json",
    ):
        plan_dataset(root, device="cpu")
