"""The 3D bundles' inference puts labels where the anatomy is, in the study's own geometry.

A trained model is not needed to check the geometry: the bundle's inference config runs with its network
replaced by an oracle that labels the phantom's enhancing organ from intensity alone. If any step of the
inverse transforms (crop, resampling, reorientation) or of the DICOM reading were off, the predicted organ
would not overlap the phantom's organ.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from highdicom.seg import segread
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.transforms import Compose, LoadImage, SaveImaged
from monai_unets.bundles import bundle_dir
from monai_unets.data.medical_io import MedicalImageReader
from monai_unets.data.plan import DEFAULT_PLAN
from monai_unets.handlers.errors import root_cause
from monai_unets.scripts.demo_ct import generate_demo_ct, make_ct_phantom, write_dicom_series
from scipy import ndimage

from monai_unets import load_plan, save_plan
from tests.geometry import Grid, as_stored, rotation, world_centroid, write_enhanced_ct

SHAPE, SPACING = (48, 40, 24), (1.2, 1.2, 2.5)


class OrganOracle(torch.nn.Module):
    """Logits of (background, organ, tumour): organ where the CT is brighter than about 85 HU.

    Without a plan the bundles normalise CT with the pancreas defaults, (HU - 56) / 72, so 85 HU is 0.4.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        organ = (x > 0.4).float()
        return torch.cat([1 - organ, organ, torch.full_like(x, -1.0)], dim=1) * 10


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct")
    generate_demo_ct(root, num_cases=0, num_test=1, shape=SHAPE, spacing=SPACING, seed=7, dicom=True)
    return root


def _run_with_oracle(name: str, configs: list[str], tmp_path, **overrides) -> ConfigWorkflow:
    """The bundle's ``configs`` run with the oracle for a network; the workflow, initialized, run and finalized."""
    folder = bundle_dir(name) / "configs"
    workflow = ConfigWorkflow(
        config_file=[str(folder / config) for config in configs],
        workflow_type="infer" if configs == ["inference.yaml"] else "eval",
        bundle_root=str(tmp_path),
        num_workers=0,
        patch_size=[32, 32, 32],
        network=OrganOracle(),
        **overrides,
    )
    workflow.initialize()
    if overrides.get("tta"):
        assert workflow.evaluator.inferer.tta
    workflow.run()
    workflow.finalize()
    return workflow


def _infer_with_oracle(name: str, input_dir, tmp_path, **overrides) -> None:
    # the oracle has no weights to load, nor the settings of a real network to check
    overrides = {"handlers": [], **overrides}
    _run_with_oracle(
        name, ["inference.yaml"], tmp_path, input_dir=str(input_dir), output_dir=str(tmp_path / "out"), **overrides
    )


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_predicted_organ_lies_on_the_phantom_organ(name, studies, tmp_path):
    _infer_with_oracle(name, studies / "dicomTs", tmp_path)

    _, truth = make_ct_phantom(SHAPE, SPACING, seed=7 * 1000 + 0)
    prediction = nib.load(tmp_path / "out" / "demo_000_seg.nii.gz")
    reference = nib.load(studies / "imagesTs" / "demo_000.nii.gz")
    assert prediction.shape == reference.shape
    np.testing.assert_allclose(prediction.affine, reference.affine, atol=1e-4)
    organ = np.asarray(prediction.dataobj) == 1
    # resampling to 1.5 x 1.5 x 2 mm and back blurs the boundary a little; a flip or shift would give ~0
    assert _dice(organ, truth == 1) > 0.85


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_a_study_of_air_only_gets_a_background_label_map_on_its_grid(name, tmp_path):
    # nothing above the foreground threshold: the crop keeps the whole study (it had cropped it to nothing, and
    # the case failed in InvertArgmaxd with "narrow(): length must be non-negative")
    (tmp_path / "in").mkdir()
    affine = np.diag([-0.9, -0.9, 2.5, 1.0])
    nib.save(nib.Nifti1Image(np.full((40, 36, 12), -1000, np.int16), affine), tmp_path / "in" / "air.nii.gz")
    _infer_with_oracle(name, tmp_path / "in", tmp_path)
    labels = nib.load(tmp_path / "out" / "air_seg.nii.gz")
    assert labels.shape == (40, 36, 12) and np.allclose(labels.affine, affine)
    assert not np.asarray(labels.dataobj).any()


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_evaluation_overlays_show_the_study_itself(name, tmp_path, monkeypatch):
    # the overlays had shown the network's input taken back to the study's grid: a constant, drawn as mid-grey
    # tissue, where the body crop had cut the study's air off
    from monai_unets.handlers import evaluation_report
    from monai_unets.transforms import PlannedNormalize

    data = tmp_path / "data"
    generate_demo_ct(data, num_cases=2, num_test=0, shape=SHAPE, spacing=SPACING, seed=7)
    drawn = []
    draw = evaluation_report.render_overlay
    monkeypatch.setattr(evaluation_report, "render_overlay", lambda *args: drawn.append(args) or draw(*args))
    # the oracle has no weights to load; the overlays without the report, which needs every metric's table
    handlers = {"validate#handlers": ["@case_isolation", "@evaluation_report"], "evaluation_report#report": False}
    workflow = _run_with_oracle(
        name,
        ["train.yaml", "evaluate.yaml"],
        tmp_path,
        dataset_dir=str(data),
        eval_dir=str(tmp_path / "eval"),
        **handlers,
    )
    [(image, truth, prediction, _, affine)] = drawn
    source = Path(image.meta["filename_or_obj"])
    study = LoadImage(reader=MedicalImageReader(), image_only=True, ensure_channel_first=True)(source)
    normalize = PlannedNormalize(workflow.parser.get_parsed_content("normalization"))
    assert torch.equal(torch.as_tensor(image), normalize(study))
    np.testing.assert_allclose(affine, study.affine)
    assert prediction.shape == truth.shape == study.shape[1:] and _dice(prediction == 1, truth == 1) > 0.85
    assert (tmp_path / "eval" / "overlays" / f"{source.name.split('.')[0]}.png").is_file()


# End to end over orientations: the same oracle on phantoms written with many grids. Each output label map must
# have exactly its input's shape and affine, and the organ's world centroid (mm) must be the phantom's, within
# a fraction of a voxel: a flip moves the off-centre organ by many voxels, a one-voxel shift by one.
AIR, BODY, ORGAN = -1000, 0, 150  # HU; the body box makes CropForegroundd crop, so the crop is inverted too


def _phantom(grid: Grid) -> np.ndarray:
    volume = np.full(grid.shape, AIR, dtype=np.int16)
    sx, sy, sz = grid.shape
    volume[2 : sx - 4, 3 : sy - 2, 1 : sz - 2] = BODY  # off-centre body box: the crop is not symmetric
    volume[grid.blob((0.35, 0.6, 0.55))] = ORGAN
    return volume


def _grids(count: int, seed: int) -> list[tuple[str, Grid]]:
    """Named test grids: fixed hard cases first, then ``count`` random ones (orientation, spacing, origin)."""
    sagittal_mirrored = np.eye(3)[:, [2, 0, 1]] * [1, -1, 1]  # left-handed: slices against the DICOM normal
    feet_first = np.diag([1.0, -1.0, -1.0])  # axial, slice order reversed against the normal
    fixed = [
        ("nii_axial", Grid((34, 30, 14), (1.1, 0.9, 2.5), np.eye(3), (-20.0, 15.0, 40.0))),
        ("nii_sagittal", Grid((18, 30, 28), (2.5, 1.0, 1.2), sagittal_mirrored, (30.0, -10.0, 5.0))),
        (
            "nii_oblique",
            Grid((30, 28, 16), (1.0, 1.2, 2.0), as_stored(rotation(0.35, -0.2, 0.15)), (-5.0, 2.0, -8.0)),
        ),
        ("dcm_feet_first", Grid((32, 30, 14), (1.2, 1.0, 2.5), feet_first, (10.0, -30.0, 60.0))),
        ("dcm_sagittal", Grid((18, 30, 28), (2.5, 1.0, 1.2), sagittal_mirrored, (-40.0, 0.0, 12.0))),
        ("dcm_oblique", Grid((30, 28, 16), (1.0, 1.2, 2.0), as_stored(rotation(-0.3, 0.25, 0.4)), (7.0, -3.0, 21.0))),
        # one enhanced multi-frame file each
        ("mf_feet_first", Grid((32, 30, 14), (1.2, 1.0, 2.5), feet_first, (-15.0, 20.0, 35.0))),
        ("mf_oblique", Grid((30, 28, 16), (1.0, 1.2, 2.0), as_stored(rotation(0.2, -0.35, 0.3)), (4.0, 9.0, -12.0))),
    ]
    rng = np.random.default_rng(seed)
    extra = []
    for i in range(count):
        direction = as_stored(rotation(*rng.uniform(-np.pi, np.pi, 3))) if i % 2 else np.eye(3)[:, rng.permutation(3)]
        direction = direction * rng.choice([-1.0, 1.0], 3)
        spacing = tuple(float(v) for v in rng.integers(60, 300, 3) / 100)
        # 36 to 60 mm per axis, so that the organ spans several voxels of the 1.5 x 1.5 x 2 mm working grid too
        shape = tuple(max(14, int(extent / step)) for extent, step in zip(rng.uniform(36, 60, 3), spacing))
        origin = tuple(float(v) for v in rng.integers(-5000, 5000, 3) / 100)
        extra.append((f"{'dcm' if i % 3 else 'nii'}_random{i}", Grid(shape, spacing, direction, origin)))
    return fixed + extra


def _write_case(folder, name: str, grid: Grid) -> np.ndarray:
    volume = _phantom(grid)
    if name.startswith("nii"):
        nib.save(nib.Nifti1Image(volume, grid.ras_affine()), str(folder / f"{name}.nii.gz"))
    elif name.startswith("dcm"):
        n = grid.shape[2]
        write_dicom_series(
            volume, folder / name, grid.spacing, grid.origin, grid.direction, file_name=lambda k: f"{n - k:04d}.dcm"
        )
    else:
        series = write_dicom_series(volume, folder.parent / "series" / name, grid.spacing, grid.origin, grid.direction)
        write_enhanced_ct(series.folder, folder / f"{name}.dcm")
    return volume


def _source(input_dir, name: str):
    return input_dir / {"nii": f"{name}.nii.gz", "dcm": name, "mf": f"{name}.dcm"}[name.split("_")[0]]


def _run_oracle(name: str, input_dir, output_dir) -> None:
    workflow = ConfigWorkflow(
        config_file=str(bundle_dir(name) / "configs" / "inference.yaml"),
        workflow_type="infer",
        bundle_root=str(output_dir),
        input_dir=str(input_dir),
        output_dir=str(output_dir),
        num_workers=0,
        patch_size=[32, 32, 32],
        network=OrganOracle(),
        handlers=[],
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def _assert_organ_in_place(grids, input_dir, output_dir) -> None:
    for name, grid in grids:
        volume = _phantom(grid)
        source = _source(input_dir, name)
        study = LoadImage(reader=MedicalImageReader(), image_only=True)(str(source))
        prediction = nib.load(output_dir / f"{name}_seg.nii.gz")
        assert prediction.shape == tuple(study.shape), name
        np.testing.assert_allclose(prediction.affine, study.affine.numpy(), atol=1e-4, err_msg=name)
        organ = np.asarray(prediction.dataobj) == 1
        offset_mm = world_centroid(organ, prediction.affine) - world_centroid(volume == ORGAN, grid.ras_affine())
        # in voxels of the study along each of its axes; resampling to 1.5 x 1.5 x 2 mm and back moves the
        # boundary a little (up to about 0.25 voxel here), a one-voxel shift by 1
        offset = np.linalg.solve(prediction.affine[:3, :3], offset_mm)
        assert np.abs(offset).max() < 0.4, f"{name}: organ centroid {offset_mm} mm ({offset} voxels) off"
        if name.startswith("mf"):
            # the DICOM SEG of the multi-frame file: each source frame's mask is that frame of the label map,
            # whose (columns, rows, frames) layout is the reader's
            header = pydicom.dcmread(source, stop_before_pixels=True)
            frames = list(range(1, int(header.NumberOfFrames) + 1))
            seg = segread(output_dir / f"{name}_seg.dcm")
            masks = seg.get_pixels_by_source_frame(header.SOPInstanceUID, frames, assert_missing_frames_are_empty=True)
            np.testing.assert_array_equal(masks[..., 0], organ.transpose(2, 1, 0), err_msg=name)


# the two CT bundles share their configs except the network, which the oracle replaces: one in the default suite
@pytest.mark.parametrize(
    "name", ["attention_unet_pancreas_ct", pytest.param("egeunet3d_pancreas_ct", marks=pytest.mark.slow)]
)
def test_organ_lands_on_the_phantom_organ_in_every_orientation(name, tmp_path):
    grids = _grids(count=0, seed=0)
    (tmp_path / "in").mkdir()
    for case, grid in grids:
        _write_case(tmp_path / "in", case, grid)
    _run_oracle(name, tmp_path / "in", tmp_path / "out")
    _assert_organ_in_place(grids, tmp_path / "in", tmp_path / "out")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_organ_lands_on_the_phantom_organ_in_random_orientations(seed, tmp_path):
    grids = _grids(count=12, seed=seed)[6:]
    (tmp_path / "in").mkdir()
    for case, grid in grids:
        _write_case(tmp_path / "in", case, grid)
    _run_oracle("attention_unet_pancreas_ct", tmp_path / "in", tmp_path / "out")
    _assert_organ_in_place(grids, tmp_path / "in", tmp_path / "out")


class RandomScores(torch.nn.Module):
    """Smooth random logits of 3 classes: close calls everywhere, unlike a trained network's saturated ones."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(1, 3, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class GradedOracle(torch.nn.Module):
    """Graded logits of (background, organ, the organ's rim) from the normalised CT: classes meet with close calls
    along the organ's boundary only, as a trained network's do."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # smoothed first: the phantom's noise would scatter the rim class through the body
        edge = torch.nn.functional.avg_pool3d(x, 3, 1, 1, count_include_pad=False) - 0.25
        return torch.cat([-4 * edge, 4 * edge, 2.5 - 8 * edge.abs()], dim=1)


def _run(name, studies, out, **overrides):
    workflow = ConfigWorkflow(
        config_file=str(bundle_dir(name) / "configs" / "inference.yaml"),
        workflow_type="infer",
        input_dir=str(studies / "dicomTs"),
        output_dir=str(out),
        num_workers=0,
        patch_size=[32, 32, 32],
        handlers=[],
        **{"network": RandomScores(), **overrides},
    )
    workflow.initialize()
    return workflow


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_label_maps_equal_those_of_monai_invertd_and_argmax(name, studies, tmp_path, monkeypatch):
    """The bundle's label map and DICOM SEG equal those of MONAI's Invertd then AsDiscreted(argmax=True)."""
    from monai.transforms import AsDiscreted, Invertd
    from monai_unets.transforms import InvertArgmaxd

    fast = _run(name, studies, tmp_path / "fast", network=GradedOracle())
    pre = fast.parser.get_parsed_content("preprocessing")
    post = fast.parser.get_parsed_content("postprocessing")
    (invert_argmax,) = [t for t in post.transforms if isinstance(t, InvertArgmaxd)]
    whole_volume = []
    monkeypatch.setattr(invert_argmax, "invert_scores", {"pred": lambda d: whole_volume.append(1)})
    fast.parser["preprocessing"] = pre
    fast.parser["postprocessing"] = post
    fast.run()
    assert not whole_volume, "the label map should come from the shortcut"
    reference = _run(name, studies, tmp_path / "reference", network=GradedOracle())
    post = reference.parser.get_parsed_content("postprocessing")
    pre = reference.parser.get_parsed_content("preprocessing")
    swapped = []
    for t in post.transforms:
        if isinstance(t, InvertArgmaxd):
            t = [Invertd("pred", pre, "image", nearest_interp=False), AsDiscreted(keys="pred", argmax=True)]
        swapped.extend(t if isinstance(t, list) else [t])
    assert len(swapped) == len(post.transforms) + 1
    post.transforms = tuple(swapped)
    # Invertd must keep the very preprocessing object whose operations it undoes
    reference.parser["preprocessing"] = pre
    reference.parser["postprocessing"] = post
    reference.run()
    ours = nib.load(tmp_path / "fast" / "demo_000_seg.nii.gz")
    theirs = nib.load(tmp_path / "reference" / "demo_000_seg.nii.gz")
    labels = np.asarray(ours.dataobj)
    assert len(np.unique(labels)) == 3
    np.testing.assert_array_equal(labels, np.asarray(theirs.dataobj))
    np.testing.assert_array_equal(ours.affine, theirs.affine)
    import pydicom

    seg_ours, seg_theirs = (pydicom.dcmread(tmp_path / d / "demo_000_seg.dcm") for d in ("fast", "reference"))
    assert seg_ours.PixelData == seg_theirs.PixelData


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_float32_resampling_gives_the_float64_label_maps(name, studies, tmp_path):
    """Resampling (and inverting) in float32 gives the label map of MONAI's default float64 on the phantom."""
    from monai_unets.transforms import ResampleSpacingd

    fast = _run(name, studies, tmp_path / "fast")
    fast.run()
    reference = _run(name, studies, tmp_path / "reference")
    pre = reference.parser.get_parsed_content("preprocessing")
    post = reference.parser.get_parsed_content("postprocessing")
    resampling = [t for t in pre.transforms if isinstance(t, ResampleSpacingd)]
    assert len(resampling) == 1 and resampling[0].dtype == (torch.float32,)
    resampling[0].dtype = (np.float64,)
    reference.parser["preprocessing"] = pre
    reference.parser["postprocessing"] = post
    reference.run()
    ours = np.asarray(nib.load(tmp_path / "fast" / "demo_000_seg.nii.gz").dataobj)
    theirs = np.asarray(nib.load(tmp_path / "reference" / "demo_000_seg.nii.gz").dataobj)
    assert len(np.unique(ours)) == 3
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_probability_and_uncertainty_maps_lie_on_the_study_grid(name, studies, tmp_path):
    _infer_with_oracle(name, studies / "imagesTs", tmp_path, tta=True, write_probabilities=True)

    reference = nib.load(studies / "imagesTs" / "demo_000.nii.gz")
    labels = np.asarray(nib.load(tmp_path / "out" / "demo_000_seg.nii.gz").dataobj)
    probs_file = nib.load(tmp_path / "out" / "demo_000_prob.nii.gz")
    entropy_file = nib.load(tmp_path / "out" / "demo_000_uncertainty.nii.gz")
    assert probs_file.shape == (*reference.shape, 3)
    assert entropy_file.shape == reference.shape
    for image in (probs_file, entropy_file):
        np.testing.assert_allclose(image.affine, reference.affine, atol=1e-4)
    probs, entropy = probs_file.get_fdata(), entropy_file.get_fdata()
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    # the label map is the probability map's argmax voxel for voxel: a flip or shift between them would show
    assert (probs.argmax(-1) == labels).mean() > 0.999
    assert entropy.min() >= 0 and entropy.max() <= 1 + 1e-6
    # uncertainty is highest on the organ's boundary (partial volume), not in the body
    organ = labels == 1
    assert entropy[organ].mean() > entropy[~organ].mean()


def _initialized_inference(bundle: str, studies: Path, bundle_root: Path, **overrides) -> ConfigWorkflow:
    """The bundle's inference.yaml on the NIfTI test studies, with ``bundle_root`` for its models; initialized."""
    workflow = ConfigWorkflow(
        config_file=str(bundle_dir(bundle) / "configs" / "inference.yaml"),
        workflow_type="infer",
        bundle_root=str(bundle_root),
        input_dir=str(studies / "imagesTs"),
        num_workers=0,
        **overrides,
    )
    workflow.initialize()
    return workflow


def test_ensemble_switch_names_model_files_in_the_bundle(studies, tmp_path):
    configs = bundle_dir("egeunet3d_pancreas_ct") / "configs"
    # the members are read at start: two folds of other weights
    parser = ConfigParser()
    parser.read_config(str(configs / "inference.yaml"))
    (tmp_path / "models").mkdir()
    for k in (0, 1):
        torch.manual_seed(k)
        torch.save(
            parser.get_parsed_content("network_def", lazy=False).state_dict(), tmp_path / "models" / f"model_fold{k}.pt"
        )
    workflow = _initialized_inference(
        "egeunet3d_pancreas_ct", studies, tmp_path, ensemble=["model_fold0.pt", "model_fold1.pt"]
    )
    inferer = workflow.evaluator.inferer
    assert inferer.checkpoints == [str(tmp_path / "models" / f"model_fold{k}.pt") for k in (0, 1)]
    assert not inferer.tta


@pytest.mark.parametrize("bundle", ["egeunet3d_pancreas_ct", "attention_unet_pancreas_ct"])
def test_without_an_ensemble_the_network_given_is_run_with_its_own_weights(bundle, studies, tmp_path):
    # MONAI Label loads the model file chosen in its `model_filename` option into a copy of network_def and calls
    # the bundle's inferer with it: that choice must be what runs (the inferer had loaded models/model.pt over it)
    workflow = _initialized_inference(
        bundle,
        studies,
        tmp_path,
        device="$torch.device('cpu')",
        patch_size=[32, 32, 32],
        bf16=False,  # the Attention U-Net's default on CPUs with AMX: compared exactly below
    )
    parser = workflow.parser
    network_def = parser.get_parsed_content("network_def", instantiate=True).eval()
    (tmp_path / "models").mkdir()
    torch.manual_seed(0)
    for name in ("model.pt", "model_fold0.pt"):
        weights = {
            k: v + 0.2 * torch.randn_like(v) if v.is_floating_point() else v
            for k, v in network_def.state_dict().items()
        }
        torch.save(weights, tmp_path / "models" / name)
    chosen = copy.deepcopy(network_def)
    chosen.load_state_dict(torch.load(tmp_path / "models" / "model_fold0.pt"))
    default = copy.deepcopy(network_def)
    default.load_state_dict(torch.load(tmp_path / "models" / "model.pt"))
    inferer = parser.get_parsed_content("inferer", instantiate=True)
    image = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        served, expected, other = inferer(image, chosen), chosen(image), default(image)
    assert (expected - other).abs().max() > 1e-2  # the two files' predictions differ
    torch.testing.assert_close(served, expected, atol=1e-4, rtol=1e-4)
    # a bundle run loads models/model.pt into `network` at start; an ensemble's members are the inferer's
    loaders = [h for h in parser.get_parsed_content("handlers") if type(h).__name__ == "WeightsLoader"]
    assert [(h.load_path, h.network) for h in loaders] == [
        (str(tmp_path / "models" / "model.pt"), parser.get_parsed_content("network"))
    ]
    parser["ensemble"] = ["model.pt", "model_fold0.pt"]
    assert not [h for h in parser.get_parsed_content("handlers", lazy=False) if type(h).__name__ == "WeightsLoader"]


class _ServedBundle:
    """The calls MONAI Label's bundle app (BundleInferTask of monailabel 0.8.5) makes on a bundle's inference config.

    The config is read and parsed once, when the server starts (``network_def`` for the network it serves). For each
    request the request's values of the options in ``displayable_configs`` are written into the config and the config
    is parsed again, where it has such options; then the app takes ``preprocessing``, ``inferer``
    and ``postprocessing`` (its writers left out) and runs them with the network it loaded from models/model.pt.
    """

    def __init__(self, bundle: str, bundle_root: Path) -> None:
        self.parser = ConfigParser()
        self.parser.read_config(str(bundle_dir(bundle) / "configs" / "inference.yaml"))
        self.parser.config.update({"bundle_root": str(bundle_root)})
        self.parser.get_parsed_content("network_def")
        self.options = dict(self.parser.get_parsed_content("displayable_configs", default={}))

    def parsed(self, **request) -> tuple[list, object, list]:
        """The preprocessing, inferer and writer-less postprocessing a request with these option values gets."""
        if self.options:
            self.parser["displayable_configs"].update(
                {key: request.get(key, value) for key, value in self.options.items()}
            )
            self.parser.parse()
        preprocessing = list(self.parser.get_parsed_content("preprocessing").transforms)
        postprocessing = self.parser.get_parsed_content("postprocessing").transforms
        served = [t for t in postprocessing if not isinstance(t, SaveImaged)]
        return preprocessing, self.parser.get_parsed_content("inferer"), served

    def infer(self, study: Path, network: torch.nn.Module) -> tuple[torch.Tensor, np.ndarray]:
        """The preprocessed image and the label map a request for ``study`` gets."""
        preprocessing, inferer, postprocessing = self.parsed()
        data = {"image": str(study), "image_path": str(study)}
        for transform in preprocessing:
            data = transform(data)
        image = data["image"]
        with torch.no_grad():
            data["pred"] = inferer(image[None], network)[0]
        for transform in postprocessing:
            data = transform(data)
        return image, np.asarray(data["pred"])


@pytest.mark.parametrize("bundle", ["egeunet3d_pancreas_ct", "attention_unet_pancreas_ct"])
def test_served_inference_follows_the_plan_a_training_rewrites(bundle, tmp_path):
    # MONAI Label keeps the config it parsed at start, and a /train rewrites models/model.pt and models/plan.json: the
    # app loads the new weights at the next request, whose spacing, crop, normalisation, windows and post-processing
    # must then be the new plan's (they had stayed those of the plan read at the server's start)
    volume = np.full((40, 40, 20), -1000, np.int16)
    volume[2:38, 2:38, 2:18] = 0
    # two bright organs: two components of class 1 for the oracle
    volume[5:17, 5:17, 4:12] = 150
    volume[25:31, 25:31, 4:10] = 150
    study = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.0, 1.0])), study)
    plan = {**load_plan(None), "patch_size": [32, 32, 32]}
    save_plan({**plan, "spacing": [1.0, 1.0, 2.0]}, tmp_path / "models" / "plan.json")
    server = _ServedBundle(bundle, tmp_path)
    image, label = server.infer(study, OrganOracle())
    assert image.pixdim.tolist() == [1.0, 1.0, 2.0]
    assert ndimage.label(label == 1)[1] == 2

    save_plan(
        {**plan, "spacing": [2.0, 2.0, 4.0], "postprocessing": {"keep_largest": [1]}}, tmp_path / "models" / "plan.json"
    )
    image, label = server.infer(study, OrganOracle())
    assert image.pixdim.tolist() == [2.0, 2.0, 4.0]
    assert label.shape == volume.shape
    assert ndimage.label(label == 1)[1] == 1
    assert (label == 1).sum() > 0.9 * (volume[5:17, 5:17, 4:12] == 150).sum()


@pytest.mark.parametrize("bundle", ["egeunet3d_pancreas_ct", "attention_unet_pancreas_ct"])
def test_served_inference_preprocesses_with_the_plan_of_the_chosen_model_file(bundle, tmp_path):
    # MONAI Label offers every model file of models/ and loads the one a request chooses: a fold's weights had been
    # run on studies resampled by models/plan.json, not by the fold's own plan
    study = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((24, 24, 12), np.int16), np.diag([1.0, 1.0, 2.0, 1.0])), study)
    plan = {**load_plan(None), "patch_size": [32, 32, 32]}
    save_plan({**plan, "spacing": [1.0, 1.0, 2.0]}, tmp_path / "models" / "plan.json")
    save_plan({**plan, "spacing": [2.0, 2.0, 4.0], "fold": 0}, tmp_path / "models" / "plan_fold0.json")
    for name in ("model.pt", "model_fold0.pt", "checkpoint.pt"):
        torch.save({}, tmp_path / "models" / name)
    server = _ServedBundle(bundle, tmp_path)
    # the bundle's own weights first: what a request that chooses none runs; a training's checkpoint is no model
    assert server.options["model_filename"] == ["model.pt", "model_fold0.pt"]

    def spacing(**request):
        data = {"image": str(study)}
        for transform in server.parsed(**request)[0]:
            data = transform(data)
        return data["image"].pixdim.tolist()

    assert spacing(model_filename="model_fold0.pt") == [2.0, 2.0, 4.0]
    assert spacing() == [1.0, 1.0, 2.0]
    # a name that is no file there, or a checkpoint's: the app runs models/model.pt
    assert spacing(model_filename="model_fold7.pt") == [1.0, 1.0, 2.0]
    assert spacing(model_filename="checkpoint.pt") == [1.0, 1.0, 2.0]


@pytest.mark.parametrize("bundle", ["egeunet3d_pancreas_ct", "attention_unet_pancreas_ct"])
def test_served_tta_option_is_checked(bundle, tmp_path):
    server = _ServedBundle(bundle, tmp_path)
    assert server.options["tta"] is False
    assert server.parsed(tta=True)[1].tta
    assert not server.parsed()[1].tta
    # a client's "false" is a string, which is true
    with pytest.raises(Exception) as error:
        server.parsed(tta="false")
    assert str(root_cause(error.value)) == "tta must be True or False, got 'false'."


@pytest.mark.parametrize("bundle", ["egeunet3d_pancreas_ct", "attention_unet_pancreas_ct"])
def test_a_volume_thinner_than_the_patch_is_padded_with_the_outside_of_the_body(bundle):
    # Padded with 0, the CT plan's foreground mean, a study cropped to its body and thinner than the patch had
    # slabs of pancreas-like "tissue" above and below it: a trained model then found a third of the organ
    plan = copy.deepcopy(DEFAULT_PLAN)
    plan["normalization"] = {"scheme": "ct", "clip": [-100.0, 200.0], "mean": 50.0, "std": 50.0}
    plan["patch_size"] = [32, 32, 32]
    outside = -3.0  # (-100 - 50) / 50: air, clipped and normalised
    configs = bundle_dir(bundle) / "configs"

    parser = ConfigParser()
    parser.read_config(str(configs / "inference.yaml"))
    parser["plan"] = plan
    inferer = parser.get_parsed_content("window_inferer")
    seen = []

    def network(window: torch.Tensor) -> torch.Tensor:
        seen.append(window.clone())
        return window

    thin = torch.ones(1, 1, 40, 36, 12)
    torch.testing.assert_close(inferer(thin, network), thin)
    values = torch.cat([w.flatten() for w in seen]).unique().tolist()
    assert values == [outside, 1.0]

    parser = ConfigParser()
    parser.read_config(str(configs / "train.yaml"))
    parser["plan"] = plan
    parser["device"] = "$torch.device('cpu')"
    prepare = Compose(parser.get_parsed_content("train#sampling_preparation"))
    case = prepare({"image": torch.ones(1, 40, 36, 12), "label": torch.ones(1, 40, 36, 12, dtype=torch.uint8)})
    image, label = case["image"], case["label"]
    assert image.shape[-1] == label.shape[-1] == 32
    inside = (slice(None), slice(0, 40), slice(0, 36), slice(10, 22))  # SpatialPadd centres the volume
    assert bool((image[inside] == 1.0).all()) and int((image == 1.0).sum()) == 40 * 36 * 12
    assert bool((image[image != 1.0] == outside).all())
    assert int(label.sum()) == 40 * 36 * 12  # the label is padded with background
