"""ONNX export of a bundle's network that records the weights it was made from.

MONAI's ``python -m monai.bundle onnx_export`` writes the model only, so a later run of ``runtime: onnx`` cannot
tell an export of the current ``models/model.pt`` from one made before the network was trained again. This command
takes the same arguments, runs MONAI's export, and records the fingerprint of the checkpoint's weights
(:func:`~monai_unets.handlers.weights_fingerprint`) in the ONNX file's metadata, which
:class:`~monai_unets.networks.OnnxRuntimeNetwork` compares with ``models/model.pt`` at start.

Example::

    python -m monai_unets.bundles.export onnx_export network_def --filepath models/model.onnx \\
        --ckpt_file models/model.pt --meta_file configs/metadata.json --config_file configs/inference.yaml \\
        --input_shape "[1, 3, 256, 256]"
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import torch
from monai.bundle import onnx_export as monai_onnx_export
from monai.bundle.scripts import update_kwargs
from monai.utils import optional_import, pytorch_after

from ..data.atomic import atomic_path
from ..handlers.checkpoint import read_weights, weights_fingerprint
from ..handlers.errors import explain
from ..networks.runtime import WEIGHTS_FINGERPRINT_KEY

__all__ = ["onnx_export"]


def onnx_export(net_id: str | None = None, args_file: str | None = None, **kwargs: Any) -> None:
    """MONAI's ``onnx_export`` (same arguments), with the fingerprint of ``ckpt_file``'s weights in the ONNX metadata.

    The file appears at ``filepath`` only once complete; a failed export or check leaves an earlier one as it was.

    Args:
        net_id: the network's config key (``network_def``).
        args_file: a JSON or YAML file of default arguments, as for MONAI's command.
        kwargs: MONAI's ``onnx_export`` arguments (``filepath``, ``ckpt_file``, ``config_file``, ``meta_file``,
            ``key_in_ckpt``, ``input_shape``, ``converter_kwargs``, ...) and config overrides.

    Example::

        >>> onnx_export("network_def", filepath="models/model.onnx", ckpt_file="models/model.pt",
        ...             config_file="configs/inference.yaml", input_shape=[1, 3, 256, 256])  # doctest: +SKIP
    """
    onnx, _ = optional_import("onnx")
    args = update_kwargs(args=args_file, net_id=net_id, **kwargs)
    for required in ("filepath", "ckpt_file", "config_file"):
        if not args.get(required):
            raise ValueError(f"onnx_export needs --{required}.")
    # before the export's minutes: an unreadable weights file, or one of NaN weights, is named at once
    key = args.get("key_in_ckpt") or ""
    state = read_weights(args["ckpt_file"], key=key)
    fingerprint = weights_fingerprint(args["ckpt_file"], key)
    if args.get("use_trace") is None and not pytorch_after(2, 9):
        # before torch 2.9 MONAI scripts the network unless it traces it, and torch 2.8's TorchScript exporter
        # cannot export the scripted aten::is_grad_enabled; the export is for one input size, as a trace is
        args["use_trace"] = True
    with (
        atomic_path(args["filepath"]) as temporary,
        _naming(str(temporary), str(args["filepath"])),
        tempfile.TemporaryDirectory() as folder,
    ):
        # MONAI's export loads a plain state dict or one entry of a checkpoint: the weights as inference reads them
        # (a "state_dict" entry, data-parallel "module." names) had failed it with every key missing
        plain = os.path.join(folder, "model.pt")
        torch.save(dict(state), plain)
        monai_onnx_export(**{**args, "filepath": str(temporary), "ckpt_file": plain, "key_in_ckpt": ""})
        model = onnx.load(str(temporary))
        model.metadata_props.add(key=WEIGHTS_FINGERPRINT_KEY, value=fingerprint)
        onnx.save(model, str(temporary))


@contextlib.contextmanager
def _naming(temporary: str, final: str) -> Iterator[None]:
    """MONAI's export logs the file it wrote, here the temporary one: its line names the final file instead."""

    def rename(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if temporary in message:
            record.msg, record.args = message.replace(temporary, final), ()
        return True

    logger = logging.getLogger(monai_onnx_export.__module__)
    logger.addFilter(rename)
    try:
        yield
    finally:
        logger.removeFilter(rename)


def main(argv: list[str] | None = None) -> int:
    """``python -m monai_unets.bundles.export onnx_export ...``: the export, or one line saying why it failed.

    Returns:
        the exit status: 0 once the file is written, 1 with the error's line on standard error.
    """
    fire, _ = optional_import("fire")
    try:
        fire.Fire({"onnx_export": onnx_export}, command=argv, name="python -m monai_unets.bundles.export")
    except Exception as error:  # noqa: BLE001 - a user's mistake is one line, not the exporter's traceback
        print(f"onnx_export: error: {explain(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
