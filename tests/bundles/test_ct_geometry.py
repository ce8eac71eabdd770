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
