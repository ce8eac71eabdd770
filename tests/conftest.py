"""Shared test fixtures and paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
# The official MONAI metadata schemas sit beside the checkout, so that verification runs offline.
SCHEMA_DIR = Path(os.environ.get("MONAI_UNETS_SCHEMA_DIR", REPO_ROOT.parent / "shared" / "schemas"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def assert_all_grads(model: torch.nn.Module) -> None:
    """Every parameter of ``model`` received a finite gradient."""
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradient for {bad}"
