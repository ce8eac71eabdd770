"""Shared test fixtures and paths."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# Property-based tests: a few reproducible examples in the default suite, many random ones with
# `pytest -m slow --hypothesis-profile slow` (or any run given that profile).
settings.register_profile(
    "suite", max_examples=5, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("slow", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")

REPO_ROOT = Path(__file__).resolve().parents[1]
# The official MONAI metadata schemas sit beside the checkout, so that verification runs offline.
SCHEMA_DIR = Path(os.environ.get("MONAI_UNETS_SCHEMA_DIR", REPO_ROOT.parent / "shared" / "schemas"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def assert_onnx_matches_eager(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], tmp_path: Path) -> None:
    """The legacy ONNX export of ``model`` gives eager's outputs in ONNX Runtime, within 1e-4."""
    ort = pytest.importorskip("onnxruntime")
    path = str(tmp_path / "model.onnx")
    torch.onnx.export(model, inputs, path, dynamo=False, opset_version=17)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {inp.name: t.numpy() for inp, t in zip(session.get_inputs(), inputs)}
    with torch.no_grad():
        expected = model(*inputs)
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    for got, want in zip(session.run(None, feeds), expected):
        torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=1e-4)


def assert_all_grads(model: torch.nn.Module) -> None:
    """Every parameter of ``model`` received a finite gradient."""
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradient for {bad}"


def run_with_closed_stdout(command: Sequence[str], **kwargs) -> subprocess.CompletedProcess[str]:
    """Runs ``command`` with standard output a pipe whose reader has gone (``| head`` done); stderr is captured."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(list(command), stdout=write, stderr=subprocess.PIPE, text=True, **kwargs)
    finally:
        os.close(write)


def processed_cases(cases: Sequence[dict], transform) -> tuple[list, list[dict]]:
    """The items of the cases that ``transform`` processed and the failure records of the others, in order, as a
    bundle's :class:`~monai_unets.data.CaseDataset` gives them to its evaluator."""
    from monai_unets.data import FAILURE_KEY, CaseDataset

    dataset = CaseDataset(list(cases), transform)
    items = [dataset[i] for i in range(len(dataset))]
    return [i for i in items if FAILURE_KEY not in i], [i[FAILURE_KEY] for i in items if FAILURE_KEY in i]
