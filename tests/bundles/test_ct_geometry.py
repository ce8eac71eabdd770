"""The 3D bundles' inference puts labels where the anatomy is, in the study's own geometry.

A trained model is not needed to check the geometry: the bundle's inference config runs with its network
replaced by an oracle that labels the phantom's enhancing organ from intensity alone. If any step of the
inverse transforms (crop, resampling, reorientation) or of the DICOM reading were off, the predicted organ
would not overlap the phantom's organ.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from monai_unets.bundles import bundle_dir
from monai_unets.scripts.demo_ct import generate_demo_ct, make_ct_phantom

SHAPE, SPACING = (48, 40, 24), (1.2, 1.2, 2.5)


class OrganOracle(torch.nn.Module):
    """Logits of (background, organ, tumour): organ where the windowed CT is brighter than 0.6 (about 85 HU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        organ = (x > 0.6).float()
        return torch.cat([1 - organ, organ, torch.full_like(x, -1.0)], dim=1) * 10


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct")
    generate_demo_ct(root, num_cases=0, num_test=1, shape=SHAPE, spacing=SPACING, seed=7, dicom=True)
    return root


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_predicted_organ_lies_on_the_phantom_organ(name, studies, tmp_path):
    configs = bundle_dir(name) / "configs"
    workflow = ConfigWorkflow(
        config_file=str(configs / "inference.yaml"),
        workflow_type="infer",
        bundle_root=str(tmp_path),
        input_dir=str(studies / "dicomTs"),
        output_dir=str(tmp_path / "out"),
        num_workers=0,
        patch_size=[32, 32, 32],
        network_def=OrganOracle(),
        # the oracle has no weights to load
        handlers=[],
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()

    _, truth = make_ct_phantom(SHAPE, SPACING, seed=7 * 1000 + 0)
    prediction = nib.load(tmp_path / "out" / "demo_000_seg.nii.gz")
    reference = nib.load(studies / "imagesTs" / "demo_000.nii.gz")
    assert prediction.shape == reference.shape
    np.testing.assert_allclose(prediction.affine, reference.affine, atol=1e-4)
    organ = np.asarray(prediction.dataobj) == 1
    # resampling to 1.5 x 1.5 x 2 mm and back blurs the boundary a little; a flip or shift would give ~0
    assert _dice(organ, truth == 1) > 0.85


class RandomScores(torch.nn.Module):
    """Smooth random logits of 3 classes: close calls everywhere, unlike a trained network's saturated ones."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(1, 3, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _run(name, studies, out, **overrides):
    workflow = ConfigWorkflow(
        config_file=str(bundle_dir(name) / "configs" / "inference.yaml"),
        workflow_type="infer",
        input_dir=str(studies / "dicomTs"),
        output_dir=str(out),
        num_workers=0,
        patch_size=[32, 32, 32],
        network_def=RandomScores(),
        handlers=[],
        **overrides,
    )
    workflow.initialize()
    return workflow


@pytest.mark.parametrize("name", ["attention_unet_pancreas_ct", "egeunet3d_pancreas_ct"])
def test_label_maps_equal_those_of_monai_argmax(name, studies, tmp_path):
    """The bundle's fast label map and DICOM SEG equal those of MONAI's AsDiscreted(argmax=True) on the scores."""
    from monai.transforms import AsDiscreted
    from monai_unets.transforms import ArgmaxLabeld

    fast = _run(name, studies, tmp_path / "fast")
    fast.run()
    reference = _run(name, studies, tmp_path / "reference")
    post = reference.parser.get_parsed_content("postprocessing")
    pre = reference.parser.get_parsed_content("preprocessing")
    swapped = [AsDiscreted(keys="pred", argmax=True) if isinstance(t, ArgmaxLabeld) else t for t in post.transforms]
    assert len(swapped) == len(post.transforms) and any(isinstance(t, ArgmaxLabeld) for t in post.transforms)
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
