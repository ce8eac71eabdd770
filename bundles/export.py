"""Exports of a bundle's network (ONNX, TorchScript) that carry what their weights need.

MONAI's ``python -m monai.bundle onnx_export`` writes the model only, so a later run of ``runtime: onnx`` cannot
tell an export of the current ``models/model.pt`` from one made before the network was trained again. This
``onnx_export`` takes the same arguments, runs MONAI's export, and records the fingerprint of the checkpoint's
weights (:func:`~monai_unets.handlers.weights_fingerprint`) in the ONNX file's metadata, which
:class:`~monai_unets.networks.OnnxRuntimeNetwork` compares with ``models/model.pt`` at start.

MONAI's ``ckpt_export`` embeds the bundle's ``metadata.json`` and configs in the TorchScript file, which is all that
MONAI Deploy's bundle operator reads: not the plan beside the weights (the CT bundles' spacing, intensities,
patches and classes), nor the image size of weights trained outside the bundle. This ``ckpt_export`` records both
in the metadata it embeds (:data:`~monai_unets.data.EXPORTED_PLAN_KEY`, the input ``spatial_shape``), where the
inference configs take them when the weights file is not there.

Both read the weights as inference does (:func:`~monai_unets.handlers.read_weights`): checkpoints of other training
scripts export, and weights of NaN or infinite values are refused.

Example::

    python -m monai_unets.bundles.export onnx_export network_def --filepath models/model.onnx \\
        --ckpt_file models/model.pt --meta_file configs/metadata.json --config_file configs/inference.yaml \\
        --input_shape "[1, 3, 256, 256]"
    python -m monai_unets.bundles.export ckpt_export network_def --filepath models/model.ts \\
        --ckpt_file models/model.pt --meta_file configs/metadata.json --config_file configs/inference.yaml
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ckpt_export as monai_ckpt_export
from monai.bundle import onnx_export as monai_onnx_export
from monai.bundle.scripts import update_kwargs
from monai.utils import optional_import, pytorch_after

from ..data.atomic import atomic_path
from ..data.plan import EXPORTED_PLAN_KEY, find_plan_of, load_plan
from ..handlers.checkpoint import read_weights, weights_fingerprint
from ..handlers.errors import explain
from ..networks.runtime import WEIGHTS_FINGERPRINT_KEY

__all__ = ["ckpt_export", "onnx_export"]


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
    args = _arguments("onnx_export", args_file, net_id, kwargs)
    fingerprint = weights_fingerprint(args["ckpt_file"], args.get("key_in_ckpt") or "")
    if args.get("use_trace") is None and not pytorch_after(2, 9):
        # before torch 2.9 MONAI scripts the network unless it traces it, and torch 2.8's TorchScript exporter
        # cannot export the scripted aten::is_grad_enabled; the export is for one input size, as a trace is
        args["use_trace"] = True
    with _exporting(args, monai_onnx_export) as (temporary, exported):
        monai_onnx_export(**exported)
        model = onnx.load(str(temporary))
        model.metadata_props.add(key=WEIGHTS_FINGERPRINT_KEY, value=fingerprint)
        onnx.save(model, str(temporary))


def ckpt_export(net_id: str | None = None, args_file: str | None = None, **kwargs: Any) -> None:
    """MONAI's ``ckpt_export`` (same arguments), with what the weights need in the metadata it embeds.

    The embedded ``metadata.json`` records the plan beside ``ckpt_file`` (:func:`~monai_unets.data.find_plan_of`,
    under :data:`~monai_unets.data.EXPORTED_PLAN_KEY`) and, for a 2D bundle, the image size the weights were trained
    at (:func:`~monai_unets.bundles.input_size`) as the input ``spatial_shape``: run from the TorchScript file's own
    configs (MONAI Deploy's bundle operator), inference preprocesses as the weights were trained. The file appears at
    ``filepath`` only once complete.

    Args:
        net_id: the network's config key (``network_def``).
        args_file: a JSON or YAML file of default arguments, as for MONAI's command.
        kwargs: MONAI's ``ckpt_export`` arguments (``filepath``, ``ckpt_file``, ``config_file``, ``meta_file``,
            ``key_in_ckpt``, ``use_trace``, ``input_shape``, ...) and config overrides.

    Example::

        >>> ckpt_export("network_def", filepath="models/model.ts", ckpt_file="models/model.pt",
        ...             meta_file="configs/metadata.json", config_file="configs/inference.yaml")  # doctest: +SKIP
    """
    from . import input_size

    args = _arguments("ckpt_export", args_file, net_id, kwargs, ("meta_file",))
    metadata = json.loads(Path(args["meta_file"]).read_text(encoding="utf-8"))
    image = next(iter(metadata.get("network_data_format", {}).get("inputs", {}).values()), None)
    dims = len(image.get("spatial_shape", [])) if isinstance(image, dict) else 0
    plan = find_plan_of(args["ckpt_file"])
    if plan is not None:
        metadata[EXPORTED_PLAN_KEY] = load_plan(plan)
    elif dims == 3:
        warnings.warn(
            f"{args['ckpt_file']} has no plan file beside it (plan.json): the export records none, and the model "
            "run from its own configs (MONAI Deploy) preprocesses with the bundle's original pancreas CT recipe. "
            "Copy the plan.json of the training that made the weights beside them, and export again.",
            stacklevel=2,
        )
    if dims == 2:
        # the size given for the export, else the one recorded for the weights (the metadata's bundle folder
        # records its own weights' size)
        given = args.get("image_size")
        given = ast.literal_eval(given) if isinstance(given, str) else given
        root = Path(args["meta_file"]).resolve().parent.parent
        image["spatial_shape"] = (
            [int(v) for v in given] if given else input_size(root, image["spatial_shape"], args["ckpt_file"])
        )
    with _exporting(args, monai_ckpt_export) as (_, exported), tempfile.TemporaryDirectory() as folder:
        meta_file = os.path.join(folder, "metadata.json")
        Path(meta_file).write_text(json.dumps(metadata, indent=4), encoding="utf-8")
        monai_ckpt_export(**{**exported, "meta_file": meta_file})


def _arguments(
    command: str, args_file: str | None, net_id: str | None, kwargs: dict[str, Any], needed: tuple[str, ...] = ()
) -> dict[str, Any]:
    args = update_kwargs(args=args_file, net_id=net_id, **kwargs)
    for required in ("filepath", "ckpt_file", "config_file", *needed):
        if not args.get(required):
            raise ValueError(f"{command} needs --{required}.")
    if not Path(args["ckpt_file"]).is_file():
        raise FileNotFoundError(f"{args['ckpt_file']}: the weights to export (--ckpt_file) do not exist.")
    return args


@contextlib.contextmanager
def _exporting(args: dict[str, Any], export: Any) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The temporary file an export writes, renamed to ``filepath`` once the block ends without error, and the
    arguments of MONAI's ``export`` for it: the weights as a plain state dict, as inference reads them."""
    with (
        atomic_path(args["filepath"]) as temporary,
        _naming(str(temporary), str(args["filepath"]), export),
        tempfile.TemporaryDirectory() as folder,
    ):
        # before the export's minutes, weights of NaN are refused; MONAI's exports load a plain state dict or one
        # entry of a checkpoint: weights under a "state_dict" entry, or of data-parallel "module." names, had failed
        # them with every key missing
        plain = os.path.join(folder, "model.pt")
        torch.save(dict(read_weights(args["ckpt_file"], key=args.get("key_in_ckpt") or "")), plain)
        yield temporary, {**args, "filepath": str(temporary), "ckpt_file": plain, "key_in_ckpt": ""}


@contextlib.contextmanager
def _naming(temporary: str, final: str, export: Any) -> Iterator[None]:
    """MONAI's ``export`` logs the file it wrote, here the temporary one: its line names the final file instead."""

    def rename(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if temporary in message:
            record.msg, record.args = message.replace(temporary, final), ()
        return True

    logger = logging.getLogger(export.__module__)
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
        fire.Fire(
            {"onnx_export": onnx_export, "ckpt_export": ckpt_export},
            command=argv,
            name="python -m monai_unets.bundles.export",
        )
    except Exception as error:  # noqa: BLE001 - a user's mistake is one line, not the exporter's traceback
        command = next((a for a in argv or sys.argv[1:] if a in ("onnx_export", "ckpt_export")), "export")
        print(f"{command}: error: {explain(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
