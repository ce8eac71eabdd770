"""A bundle run in a process that goes on gives back what its ``initialize`` changed for the whole process."""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import sys
import threading

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from monai_unets.bundles import bundle_dir, restore_process_state
from monai_unets.handlers.errors import explain
from PIL import Image


def _process_state() -> dict[str, object]:
    return {
        "excepthook": sys.excepthook,
        "threading.excepthook": threading.excepthook,
        "log record factory": logging.getLogRecordFactory(),
        "logging disabled": logging.root.manager.disable,
        "stdout": sys.stdout,
        "torch threads": torch.get_num_threads(),
        "frozen objects": gc.get_freeze_count() > 0,
    }


def _inference(tmp_path, **overrides) -> ConfigWorkflow:
    # no weights to load: the run's process-wide steps are what is checked, not its predictions
    return ConfigWorkflow(
        config_file=str(bundle_dir("egeunet_skin_lesion") / "configs" / "inference.yaml"),
        workflow_type="infer",
        bundle_root=str(tmp_path),
        input_dir=str(tmp_path / "inputs"),
        output_dir=str(tmp_path / "out"),
        **{"num_workers": 0, "handlers": [], **overrides},
    )


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "inputs").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "inputs" / "lesion.png")
    # what an earlier failed run of this process left noted is given back first: the state compared is the test's
    restore_process_state()
    return tmp_path


def test_an_inference_in_a_process_that_goes_on_gives_back_its_process_settings(inputs):
    before = _process_state()
    threads = 1 if before["torch threads"] != 1 else 2
    workflow = _inference(inputs, quiet=True, cpu_threads=threads)
    workflow.initialize()
    during = _process_state()
    assert during["logging disabled"] == logging.INFO and during["torch threads"] == threads
    assert during["excepthook"] is not before["excepthook"] and during["stdout"] is not before["stdout"]
    try:
        workflow.run()
    finally:
        workflow.finalize()
    assert (inputs / "out" / "lesion_seg.png").is_file()
    assert _process_state() == before


def test_a_failed_run_s_settings_are_given_back_by_the_next_run_s_finalize(inputs):
    before = _process_state()
    failed = _inference(inputs, quiet=True, num_workers=-1)
    with pytest.raises(RuntimeError) as raised:
        failed.initialize()
    assert "num_workers" in explain(raised.value)
    assert sys.excepthook is not before["excepthook"]
    workflow = _inference(inputs)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    assert _process_state() == before
    # what the process set itself stays: standard output redirected (as pytest's capture does for each test) had been
    # replaced by the stream noted before an earlier failed run
    with pytest.raises(RuntimeError):
        _inference(inputs, num_workers=-1).initialize()
    with contextlib.redirect_stdout(io.StringIO()) as redirected:
        workflow = _inference(inputs)
        workflow.initialize()
        workflow.run()
        workflow.finalize()
        assert sys.stdout is redirected
