"""monai-unets plan: its options."""

from __future__ import annotations

import pytest
import torch
from monai_unets.scripts.cli import main


@pytest.mark.parametrize(
    "device, message",
    [
        # a torch RuntimeError traceback
        ("nosuchdevice", "'nosuchdevice' is not a device; give e.g. cpu, cuda or cuda:1"),
        (f"cuda:{torch.cuda.device_count()}", f"this machine has {torch.cuda.device_count()} CUDA devices"),
    ],
)
def test_a_device_this_machine_does_not_have_is_a_usage_error(device, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--dataset-dir", str(tmp_path), "--device", device])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("monai-unets plan: error: argument --device: ") and last.endswith(message)
