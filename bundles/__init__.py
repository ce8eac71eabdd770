"""The MONAI bundles shipped with monai_unets, one folder each (``configs/``, ``docs/``, ``LICENSE``)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .distributed import (
    check_evaluation_shards,
    end_process_group,
    hold_folder_for_job,
    log_from_rank_zero,
    validation_sampler,
)
from .overrides import check_command_line
from .process_state import restore_process_state, save_process_state

__all__ = [
    "BUNDLES_DIR",
    "bundle_dir",
    "bundle_metadata",
    "bundle_spatial_dims",
    "check_command_line",
    "check_evaluation_shards",
    "end_process_group",
    "hold_folder_for_job",
    "input_size",
    "list_bundles",
    "log_from_rank_zero",
    "restore_process_state",
    "save_process_state",
    "validation_sampler",
]

BUNDLES_DIR = Path(__file__).resolve().parent


def list_bundles() -> list[str]:
    """Names of the shipped bundles: every folder here with a ``configs/metadata.json``.

    Example::

        >>> list_bundles()
        ['attention_unet_pancreas_ct', 'egeunet3d_pancreas_ct', 'egeunet_skin_lesion', 'unetv2_polyp']
    """
    return sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "metadata.json").is_file())


def bundle_dir(name: str) -> Path:
    """Folder of the shipped bundle ``name``.

    Args:
        name: the bundle's folder name, one of :func:`list_bundles`.

    Raises:
        KeyError: no bundle of that name; the message lists the bundles there are.

    Example::

        >>> bundle_dir("egeunet_skin_lesion").name
        'egeunet_skin_lesion'
    """
    if name not in list_bundles():
        raise KeyError(f"no bundle named {name!r}; the bundles are: {', '.join(list_bundles())}.")
    return BUNDLES_DIR / name


def bundle_metadata(root: str | os.PathLike) -> dict[str, Any]:
    """The ``configs/metadata.json`` of the bundle folder ``root`` (a shipped bundle or a copy of it); empty where
    ``root`` has none (a config run with ``--bundle_root`` set to a folder of weights alone).

    Its configs take their name and version from it for the algorithm identification of the DICOM SEGs they write.

    Args:
        root: the bundle folder (``bundle_root``), which holds ``configs/metadata.json``.

    Raises:
        ValueError: the file is no JSON object, naming it.

    Example::

        >>> bundle_metadata(bundle_dir("egeunet3d_pancreas_ct"))["name"]
        'EGE-UNet 3D pancreas CT segmentation'
    """
    path = Path(root) / "configs" / "metadata.json"
    if not path.is_file():
        return {}
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} cannot be read as JSON: {error}") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{path} holds no JSON object.")
    return metadata


def input_size(
    root: str | os.PathLike,
    default: Sequence[int],
    model_file: str | os.PathLike | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[int]:
    """The size a 2D bundle's weights were trained at, as their training recorded it; else a guess, with a warning.

    The bundle's own ``models/model.pt`` has its size in the input ``spatial_shape`` of ``metadata.json``, which its
    training records together with the weights' fingerprint (``model_sha256``,
    :func:`~monai_unets.handlers.weights_fingerprint`); weights elsewhere (a training's
    ``ckpt_dir`` outside the bundle), or whose digest is not the one recorded (a ``model.pt`` copied into the
    bundle), have it in the training checkpoint beside them (:func:`~monai_unets.handlers.trained_input_size`).
    Weights with neither get the size of ``metadata.json`` (their own bundle's) or ``default``, with a warning.

    The 2D bundles' inference and evaluation resize images to it unless given an ``image_size``: weights trained at
    64 x 64 and run at 256 x 256 had scored 0.003 Dice against 0.17 at their own size, without a word.

    Args:
        root: the bundle folder.
        default: the size of weights whose size is not recorded.
        model_file: the weights the bundle runs with; default: its own ``models/model.pt``.
        metadata: the metadata the config was given (``@_meta_``), taken where ``root`` holds none: a TorchScript
            file's own, run from its embedded configs as MONAI Deploy runs it, whose export recorded the size
            (:func:`~monai_unets.bundles.export.ckpt_export`).

    Example::

        >>> input_size(bundle_dir("egeunet_skin_lesion"), [256, 256])
        [256, 256]
    """
    from ..data.plan import MODEL_DIGEST_KEY
    from ..handlers import CheckpointError, trained_input_size, weights_fingerprint

    own = os.path.join(root, "models", "model.pt")
    weights = own if model_file is None else os.fspath(model_file)
    metadata = bundle_metadata(root) or dict(metadata or {})
    size = [int(v) for v in default]
    if os.path.abspath(weights) == os.path.abspath(own):
        try:
            image = next(iter(metadata["network_data_format"]["inputs"].values()))
            size = [int(v) for v in image["spatial_shape"]]
        except (KeyError, TypeError, ValueError, StopIteration, AttributeError):
            pass
        # weights that are not there, or cannot be read, are named by the loader; the size does not matter then
        try:
            if not os.path.isfile(own) or metadata.get(MODEL_DIGEST_KEY) == weights_fingerprint(own):
                return size
        except CheckpointError:
            return size
    elif not os.path.isfile(weights):
        return size
    recorded = trained_input_size(weights)
    if recorded:
        return recorded
    warnings.warn(
        f"{weights}: the image size these weights were trained at is recorded neither in {root}/configs/metadata.json "
        f"(by the training that wrote them) nor in a training checkpoint beside them; images are resized to "
        f"{' x '.join(map(str, size))}. Weights trained at another size segment poorly at this one: give theirs "
        '(--image_size "[H, W]").',
        stacklevel=2,
    )
    return size


def bundle_spatial_dims(name: str) -> int:
    """Spatial dimensions (2 or 3) of the images the bundle ``name``'s network takes, from its metadata.

    Args:
        name: a shipped bundle, one of :func:`list_bundles`; its metadata's input ``image`` has a
            ``spatial_shape`` of one entry per spatial axis.

    Raises:
        KeyError: no bundle of that name (:func:`bundle_dir`), or its metadata has no input ``image`` with a
            ``spatial_shape``.

    Example::

        >>> bundle_spatial_dims("egeunet3d_pancreas_ct")
        3
    """
    metadata = bundle_metadata(bundle_dir(name))
    return len(metadata["network_data_format"]["inputs"]["image"]["spatial_shape"])
