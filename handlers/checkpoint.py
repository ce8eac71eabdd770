"""Checkpoints that survive a kill: atomic saves, resumable training, best weights kept, clear loading errors.

- :class:`BestModelSaver` (on the validator) writes the network's weights to ``model.pt`` whenever the key
  metric beats the best so far, atomically; its best score is part of the training checkpoint, so a resumed
  run never replaces a better ``model.pt`` with a worse one.
- :class:`TrainingCheckpoint` (on the trainer) writes ``checkpoint.pt`` (model, optimizer, scheduler, epoch,
  best metric) after every epoch, atomically, and resumes from it when training starts.
- :class:`WeightsLoader` loads ``model.pt`` (or any state dict) before inference or evaluation; a missing,
  truncated or mismatching file is an error that names the file and the missing / unexpected keys.

Every file is a plain ``torch.save`` of tensors and numbers: it loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import math
import os
import random
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.utils import min_version, optional_import

from ..bundles.distributed import hold_folder_for_job
from ..data.atomic import atomic_open, companion_name, hold_folder, naming_holder, release_folder
from ..data.cases import rank_and_world_size
from ..data.dataset import describe_error
from ..data.medical_io import OutputFolderError
from ..data.plan import (
    class_names_of,
    model_settings,
    record_classes_in_metadata,
    record_input_size_in_metadata,
    record_inputs_in_metadata,
    save_plan,
)

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = [
    "BestModelSaver",
    "CheckpointError",
    "TrainingCheckpoint",
    "TrainingDivergedError",
    "check_finite_weights",
    "WeightsLoader",
    "hold_training",
    "load_weights",
    "read_checkpoint",
    "read_weights",
    "release_training",
    "run_training",
    "save_atomic",
    "trained_cases",
    "trained_input_size",
    "weights_fingerprint",
]

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what to do.

    Example::

        >>> read_checkpoint("no/such/model.pt")
        Traceback (most recent call last):
        ...
        monai_unets.handlers.checkpoint.CheckpointError: no/such/model.pt: checkpoint does not exist; train the ...
    """


def _unwrap(obj: Any) -> Any:
    # DataParallel / DistributedDataParallel keep the network in .module; files hold the plain network's keys
    return obj.module if isinstance(obj, torch.nn.Module) and hasattr(obj, "module") else obj


def is_main_process() -> bool:
    """Whether this process is the first of its job (rank 0), or alone: the one that writes the job's files."""
    return rank_and_world_size()[0] == 0


class TrainingDivergedError(RuntimeError):
    """The network's weights hold NaN or infinite values: the training diverged, and what it would save is refused.

    A loss that became NaN (a learning rate too high, a normalisation of absurd values) turned the weights to NaN,
    and the run had gone on to its end with exit status 0, saving them as the best ``model.pt`` (their Dice of 0
    beat no score at all): inference then wrote empty label maps, also without an error.
    """


def check_finite_weights(network: torch.nn.Module, saving: str | os.PathLike, epoch: int | None) -> None:
    """Raises :class:`TrainingDivergedError` when ``network`` holds a weight that is NaN or infinite.

    Args:
        network: the network about to be saved (a DDP / DataParallel wrapper is unwrapped).
        saving: the file it was to be saved to, which the message names as not written.
        epoch: the training's epoch, for the message; ``None``: its last.

    Example::

        >>> check_finite_weights(torch.nn.Linear(2, 2), "models/model.pt", 3)
    """
    bad, total = _non_finite(_unwrap(network).parameters())
    if bad:
        raise TrainingDivergedError(
            f"the training diverged by {'its last epoch' if epoch is None else f'epoch {epoch}'}: {bad} of {total} "
            f"weights are NaN or infinite, so {saving} was "
            "not written (the files of earlier epochs are kept). Lower --learning_rate, or check the data and the "
            "plan's normalisation (monai-unets check-data, monai-unets plan)."
        )


def _non_finite(values: Iterable[Any]) -> tuple[int, int]:
    """How many of the floating-point weights among ``values`` are NaN or infinite, and how many there are."""
    weights = [v.detach() for v in values if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex())]
    return sum(int((~torch.isfinite(v)).sum()) for v in weights), sum(v.numel() for v in weights)


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through a temporary file and a rename: never a partial file under ``path``.

    Args:
        obj: what ``torch.save`` takes: a state dict, or a dict of them with epoch and iteration numbers.
        path: the final file; its folder is created when missing. If saving fails, ``path`` is left as it was
            (absent, or the previous complete file) and the temporary file is removed.

    Example::

        >>> save_atomic(network.state_dict(), "models/model.pt")  # doctest: +SKIP
    """
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def read_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu", remedy: str = "train again, or copy the file again"
) -> Any:
    """``torch.load(path, weights_only=True)``, with one line naming the file when it is missing or unreadable.

    Args:
        path: the checkpoint file.
        map_location: ``torch.load``'s ``map_location``.
        remedy: what the user can do about an unreadable file, ending its message.

    Raises:
        CheckpointError: the file is missing, truncated or not a file of tensors and numbers.

    Example::

        >>> state = read_checkpoint("pvt_v2_b2.pth", remedy="download it again")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: checkpoint does not exist; train the bundle first, or give the path of trained weights "
            "(--model_file of the 2D bundles, --model_files of the CT bundles)."
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets one message naming it
        # torch's own text may advise weights_only=False, which would run code from the file: not repeated here
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}); it is truncated, or not a file of "
            f"tensors and numbers: {remedy}."
        ) from error


def _class_counts(module: torch.nn.Module, state: Mapping[str, Any]) -> tuple[int, int] | None:
    """(trained, configured) number of classes when the file's output layer has other output channels.

    The output layer is the network's last 1x1 weight of two or more dimensions (the convolution head of every
    network here; a 3D EGE-UNet's full-resolution stem, a 3x3 convolution, comes after it), whose first dimension
    is ``out_channels``: the bundles' ``num_classes``. Layers that take the class maps as input (EGE-UNet's gated
    bridges, the Attention U-Net's head over its side outputs) then differ too, so only the output layer's number
    of output channels decides.
    """
    expected = module.state_dict()
    weights = [k for k, v in expected.items() if v.ndim >= 2 and all(side == 1 for side in v.shape[2:])]
    if set(expected) != set(state) or not weights:
        return None
    saved, wanted = state[weights[-1]], expected[weights[-1]]
    if not isinstance(saved, torch.Tensor) or saved.shape[2:] != wanted.shape[2:] or saved.shape[0] == wanted.shape[0]:
        return None
    return saved.shape[0], wanted.shape[0]


def _mismatch(path: str | os.PathLike, module: torch.nn.Module, state: Mapping[str, Any]) -> str | None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} instead of {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape
    ]
    if not (missing or unexpected or shapes):
        return None

    def listed(label: str, items: list[str]) -> str:
        return f"{len(items)} {label} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})" if items else ""

    parts = [listed("missing keys", missing), listed("unexpected keys", unexpected), listed("other shapes", shapes)]
    widths = ", ".join(f"--network_def#{name}" for name in _width_arguments(module)) or "the network's arguments"
    return (
        f"{path}: does not fit the network {type(module).__name__}: {'; '.join(p for p in parts if p)}. It was "
        "saved from another network or other settings (spatial_dims, in_channels, out_channels, or the widths: a "
        f"training given {widths}); run with the settings it was trained with, or use weights trained with this "
        "bundle's configuration."
    )


#: arguments of the networks that set the widths of their layers
_WIDTHS = ("channels", "features", "encoder", "decoder_channels")


def _width_arguments(module: torch.nn.Module) -> list[str]:
    try:
        parameters = inspect.signature(type(module).__init__).parameters
    except (TypeError, ValueError):
        return []
    return [name for name in _WIDTHS if name in parameters]


#: folder beside the weights (``models/previous``) where a training that does not go on with the one before keeps
#: that one's weights, plan and checkpoint before it replaces them
PREVIOUS_FOLDER = "previous"

#: entries that hold a network's weights in a checkpoint of more: this project's training checkpoints ("model"), and
#: the ``{"state_dict": ..., "epoch": ...}`` that many training scripts write
_WEIGHTS_ENTRIES = ("model", "state_dict")

#: what a network wrapped for data-parallel training (DistributedDataParallel, DataParallel) puts before each name
_PARALLEL_PREFIX = "module."


def _weights_of(path: str | os.PathLike, map_location: Any = "cpu", key: str = "") -> Mapping[str, Any]:
    # ``key`` names the entry of the weights where the file holds more
    state = read_checkpoint(path, map_location)
    if key:
        if not isinstance(state, Mapping) or key not in state:
            raise CheckpointError(f"{path}: has no entry {key!r} of network weights.")
        state = state[key]
    elif isinstance(state, Mapping):
        state = next((state[k] for k in _WEIGHTS_ENTRIES if isinstance(state.get(k), Mapping)), state)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict of network weights.")
    if state and all(isinstance(name, str) and name.startswith(_PARALLEL_PREFIX) for name in state):
        # saved from the wrapper rather than the network it wraps: the same weights
        state = {name[len(_PARALLEL_PREFIX) :]: value for name, value in state.items()}
    return state


def read_weights(path: str | os.PathLike, map_location: Any = "cpu", key: str = "") -> Mapping[str, Any]:
    """The network weights a file holds, as a plain state dict, refused where one of them is NaN or infinite.

    The file is a state dict (``model.pt``), or a checkpoint holding one under ``key``, ``"model"`` (this project's
    training checkpoints) or ``"state_dict"`` (many training scripts'); names saved from a data-parallel wrapper
    (``module.``) are given without that prefix.

    Args:
        path: the weights file.
        map_location: ``torch.load``'s ``map_location``.
        key: the checkpoint's entry holding the weights (MONAI's ``key_in_ckpt``); default: found as above.

    Raises:
        CheckpointError: the file is missing or unreadable, holds no state dict, or a weight is NaN or infinite.

    Example::

        >>> state = read_weights("models/model.pt")  # doctest: +SKIP
    """
    state = _weights_of(path, map_location, key)
    bad, total = _non_finite(state.values())
    if bad:
        # a network of NaN weights outputs NaN, which every class's argmax turns into background: empty label maps,
        # each case reported as done
        raise CheckpointError(
            f"{path}: {bad} of {total} weights are NaN or infinite (a training that "
            "diverged, or a damaged file): no output of these weights would mean anything."
        )
    return state


def weights_fingerprint(path: str | os.PathLike, key: str = "") -> str:
    """The SHA-256 of the network weights in a checkpoint: names, dtypes, shapes and values, in name order.

    It depends on the weights only, not on how the file was written, so that an export records which weights it
    was made from and a later run can tell whether ``model.pt`` still holds them (retrained since, or replaced).

    Args:
        path: a state dict (``model.pt``) or a training checkpoint (its ``"model"`` entry).
        key: the checkpoint's entry holding the weights (MONAI's ``key_in_ckpt``); default: the file itself, or
            its ``"model"`` entry.

    Raises:
        CheckpointError: the file is missing or unreadable, or holds no state dict.

    Example::

        >>> weights_fingerprint("models/model.pt")  # doctest: +SKIP
        '9f2c...'
    """
    stat = os.stat(path)
    return _fingerprint(os.path.abspath(path), key, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _fingerprint(path: str, key: str, _size: int, _mtime_ns: int) -> str:
    # once per file content (its size and time of change): a served bundle's config is parsed for every request
    digest = hashlib.sha256()
    state = _weights_of(path, "cpu", key)
    for name in sorted(state):
        value = state[name]
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            value = value.detach().contiguous()
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
            # the raw bytes, whatever the dtype (numpy has no bfloat16)
            digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


# a setting a training checkpoint records: its name, the checkpoint's value, this run's, and how to go on
_Setting = tuple[str, Any, Any, str]


def _optimizer_settings(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> Iterator[_Setting]:
    # loading the optimizer's state brings back its hyperparameters: a learning rate or weight decay given for the
    # resumed run would otherwise be dropped without a word. The learning rate as configured is a scheduler's
    # initial_lr where one runs (its lr has moved on since), else lr.
    settings = {
        "learning rate": lambda g: g.get("initial_lr", g.get("lr")),
        "weight decay": lambda g: g.get("weight_decay"),
    }
    saved_groups = state.get("param_groups", [])
    for label, setting in settings.items():
        for group, saved_group in zip(optimizer.param_groups, saved_groups):
            now, saved = setting(group), setting(saved_group)
            if isinstance(now, (int, float)) and isinstance(saved, (int, float)):
                yield (
                    label,
                    saved,
                    now,
                    f"a resumed training goes on with the checkpoint's optimizer: resume with {label} {saved:g}, or "
                    "start fresh with --resume False.",
                )


# the CT bundles' command-line names of the plan entries whose overrides their training writes into the plan beside
# the weights (train.yaml's best_model#plan); the others come from the plan file alone, but for the classes
# (_classes_override)
_PLAN_OVERRIDES = {
    "spacing": "pixdim",
    "normalization": "normalization",
    "foreground_threshold": "foreground_threshold",
}
# what a resumed run may change: the network is fully convolutional, and a training moved from a GPU to a CPU
# takes smaller patches there (the Attention U-Net bundle's default)
_RESUMABLE_WITH_OTHER = frozenset({"patch_size"})


def _plan_settings(saver: BestModelSaver, state: Mapping[str, Any]) -> Iterator[_Setting]:
    # the resumed epochs would train the weights on input prepared otherwise, and the plan written beside them would
    # describe the epochs of one of the two runs. A checkpoint written before it recorded its plan has nothing to
    # compare.
    saved_size = state.get("input_size")
    if saver.input_size is not None and saved_size is not None:
        remedy = f'resume with --image_size "{list(saved_size)}", or train anew with another --ckpt_dir.'
        yield "image_size", list(saved_size), saver.input_size, remedy
    saved_plan = state.get("plan")
    if saver.plan is None or not isinstance(saved_plan, Mapping):
        return
    plan = model_settings(saver.plan)
    for key, saved in saved_plan.items():
        if key in plan and key not in _RESUMABLE_WITH_OTHER:
            option = _PLAN_OVERRIDES.get(key)
            if key in ("num_classes", "labels"):
                resume = _classes_override(saved_plan)
            elif option:
                resume = f'--{option} "{_shown(saved)}"'
            else:
                resume = "the plan file it was trained with"
            yield key, saved, plan[key], f"resume with {resume}, or train anew with another --ckpt_dir."


def _classes_override(saved_plan: Mapping[str, Any]) -> str:
    # the classes are overridden together: a num_classes without as many class_names is refused at start
    labels = saved_plan.get("labels")
    if "num_classes" not in saved_plan or not isinstance(labels, Mapping):
        return "the plan file it was trained with"
    return f'--num_classes {saved_plan["num_classes"]} --class_names "{class_names_of(labels)!r}"'


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _setting_change(path: str | os.PathLike, target: Any, state: Mapping[str, Any]) -> str | None:
    """One line naming the first setting of this run that differs from the one ``path`` recorded for ``target`` (an
    optimizer's learning rate and weight decay, a :class:`BestModelSaver`'s plan), or ``None``."""
    if isinstance(target, torch.optim.Optimizer):
        settings = _optimizer_settings(target, state)
    elif isinstance(target, BestModelSaver):
        settings = _plan_settings(target, state)
    else:
        return None
    for label, saved, now, remedy in settings:
        # numbers may have been through a scheduler or a JSON file: equal to a few units in the last place
        if isinstance(saved, (int, float)) and isinstance(now, (int, float)):
            changed = not math.isclose(now, saved, rel_tol=1e-6)
        else:
            changed = saved != now
        if changed:
            return f"{path}: was trained with {label} {_shown(saved)}, this run sets {_shown(now)}; {remedy}"
    return None


def load_weights(
    path: str | os.PathLike,
    network: torch.nn.Module,
    map_location: Any = "cpu",
    class_names: Sequence[str] | None = None,
) -> None:
    """Loads a state dict (``model.pt``; also a ``{"model": ...}`` training checkpoint) into ``network``, strictly.

    A checkpoint of the form ``{"state_dict": ..., "epoch": ...}`` is read too, and so are weights saved from a
    data-parallel wrapper (names beginning ``module.``).

    Args:
        path: the weights file.
        network: the network to load into.
        map_location: ``torch.load``'s ``map_location``.
        class_names: the run's names of the classes after the background, in a bundle that takes them together with
            ``num_classes`` (the CT bundles): weights of another number of classes are then to be run with both.

    Raises:
        CheckpointError: the file is missing or unreadable, or its keys or shapes do not fit the network; the
            message names the file and the keys, or, when the output layer differs only in its output channels, the
            number of classes the weights were trained for and the ``num_classes`` of this run. Also where a weight
            is NaN or infinite.

    Example::

        >>> load_weights("models/model.pt", network)  # doctest: +SKIP
    """
    state = read_weights(path, map_location)
    module = _unwrap(network)
    problem = _mismatch(path, module, state)
    if problem:
        counts = _class_counts(module, state)
        if counts:
            trained, configured = counts
            # the setting the user changed, not the shapes of every layer that follows from it
            raise CheckpointError(
                f"{path}: the weights were trained with num_classes {trained}, this run sets num_classes {configured}; "
                f"run with {_classes_setting(trained, class_names)}, or train weights with num_classes {configured} "
                "first."
            )
        raise CheckpointError(problem)
    module.load_state_dict(state)


def _classes_setting(num_classes: int, class_names: Sequence[str] | None) -> str:
    # a bundle that names its classes refuses a num_classes without as many names: both, in one step
    if class_names is None or num_classes < 2:
        return f"--num_classes {num_classes}"
    names = [f"class{k}" for k in range(1, num_classes)]
    return (
        f"the plan they were trained with (plan.json beside them), or --num_classes {num_classes} "
        f'--class_names "{names!r}" (a name for each class after the background)'
    )


class WeightsLoader:
    """Loads the weights of ``network`` from ``load_path`` when the engine starts (inference, evaluation).

    Like MONAI's ``CheckpointLoader`` for one network, with errors that name the file, and the missing,
    unexpected or mis-shaped keys (see :func:`load_weights`).

    Args:
        load_path: the weights file.
        network: the network to load into.
        map_location: ``torch.load``'s ``map_location``.
        class_names: the run's class names, in a bundle that takes them with ``num_classes`` (see
            :func:`load_weights`).

    Example::

        >>> WeightsLoader("models/model.pt", network).attach(evaluator)  # doctest: +SKIP
    """

    def __init__(
        self,
        load_path: str | os.PathLike,
        network: torch.nn.Module,
        map_location: Any = "cpu",
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.load_path = load_path
        self.network = network
        self.map_location = map_location
        self.class_names = class_names

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        load_weights(self.load_path, self.network, self.map_location, self.class_names)
        logger.info("loaded weights from %s", self.load_path)


class BestModelSaver:
    """Saves the network's weights to ``save_path`` each time the validator's key metric reaches a new best.

    The file is written atomically and holds the plain network's state dict. The best score is restored
    from a training checkpoint (``state_dict`` / ``load_state_dict``), so a resumed run keeps the better file,
    where the checkpoint's validation cases are the run's: a score of other cases is not compared (a warning says
    so, and the run's first validation replaces the file). The state also records the plan's preprocessing and
    classes (:func:`~monai_unets.data.model_settings`), so that
    :class:`TrainingCheckpoint` refuses to resume the weights with others.
    Given a ``plan``, the plan is written to ``plan_file`` with the weights, and only then: a run that writes no
    weights (a rerun of a finished training) leaves the plan of the weights there alone.

    Args:
        save_path: the weights file (``models/model.pt``).
        network: the network to save (a DDP / DataParallel wrapper is unwrapped).
        metric_name: metric to compare, higher is better; defaults to the engine's key metric.
        plan: the plan the network is trained with (``monai_unets.data.plan``), written without post-processing
            (:class:`~monai_unets.handlers.PostprocessingSelector` then records what validation chose).
        plan_file: where ``plan`` goes (``models/plan.json``; a cross-validation fold's ``models/plan_fold<k>.json``,
            :func:`~monai_unets.data.plan_file_of`), so that weights and plan stay a pair; needed with ``plan``.
        metadata_file: the bundle's ``configs/metadata.json`` where ``save_path`` is the bundle's own weights file
            (``models/model.pt``, which MONAI Label serves): the plan's classes are recorded there with the weights
            (:func:`~monai_unets.data.record_classes_in_metadata`), so that the served classes take their names, and
            so are its input channels and modality (:func:`~monai_unets.data.record_inputs_in_metadata`) and
            ``input_size`` (:func:`~monai_unets.data.record_input_size_in_metadata`). A file that cannot be
            rewritten is named in a warning; the training goes on.
        input_size: the spatial size a 2D bundle resizes its images to (``image_size``): recorded in the state, so
            that a resume at another size is refused, and in ``metadata_file``, which inference and evaluation take
            the size from.

    Example::

        >>> BestModelSaver("models/model.pt", network).attach(evaluator)  # doctest: +SKIP
    """

    def __init__(
        self,
        save_path: str | os.PathLike,
        network: torch.nn.Module,
        metric_name: str | None = None,
        plan: Mapping[str, Any] | None = None,
        plan_file: str | os.PathLike | None = None,
        metadata_file: str | os.PathLike | None = None,
        input_size: Sequence[int] | None = None,
    ) -> None:
        if plan is not None and plan_file is None:
            raise ValueError("BestModelSaver: a plan needs the plan_file to write it to.")
        self.save_path = Path(save_path)
        self.network = network
        self.metric_name = metric_name
        self.plan = plan
        self.plan_file = plan_file
        self.metadata_file = metadata_file
        self.input_size = None if input_size is None else [int(v) for v in input_size]
        self.best_metric = -math.inf
        self.best_metric_epoch = -1
        self._engine: Engine | None = None

    def attach(self, engine: Engine) -> None:
        self._engine = engine
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        name = self.metric_name or getattr(engine.state, "key_metric_name", None)
        if name is None or name not in engine.state.metrics:
            raise KeyError(f"BestModelSaver: no metric {name!r} in the validator's results.")
        score = float(engine.state.metrics[name])
        if math.isnan(score) or score <= self.best_metric:
            return
        self.best_metric, self.best_metric_epoch = score, int(engine.state.epoch)
        if is_main_process():
            self._save()
            logger.info("saved %s (%s %.4f at epoch %d)", self.save_path, name, score, self.best_metric_epoch)

    def _save(self) -> None:
        # the weights of a training that never validated are its last epoch's, which the message then names
        check_finite_weights(
            self.network, self.save_path, self.best_metric_epoch if self.best_metric_epoch >= 0 else None
        )
        save_atomic(_unwrap(self.network).state_dict(), self.save_path)
        if self.plan is not None:
            save_plan({**self.plan, "postprocessing": {"keep_largest": []}}, self.plan_file)
            if self.metadata_file is not None:
                names = class_names_of(self.plan["labels"])
                self._record(
                    lambda: record_classes_in_metadata(self.metadata_file, names),
                    "classes",
                    f"its output classes are now background, {', '.join(names)}, as {self.save_path} was trained "
                    "(MONAI Label names the served classes from it; restart a running server).",
                )
                channels, modality = int(self.plan.get("in_channels", 1)), str(self.plan.get("modality", "CT"))
                patch = self.plan.get("patch_size")
                self._record(
                    lambda: record_inputs_in_metadata(self.metadata_file, channels, modality, patch),
                    "inputs",
                    f"its input is now {channels} channel(s) of {modality}"
                    + (f" in patches of {' x '.join(map(str, patch))}" if patch else "")
                    + f", as {self.save_path} was trained.",
                )
        if self.input_size is not None and self.metadata_file is not None:
            self._record(
                lambda: record_input_size_in_metadata(
                    self.metadata_file, self.input_size, weights_fingerprint(self.save_path)
                ),
                "input size",
                f"its input size is now {self.input_size}, as {self.save_path} was trained (inference and evaluation "
                "resize images to it unless given an image_size).",
            )

    def _record(self, record: Callable[[], bool], what: str, changed: str) -> None:
        try:
            done = record()
        except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration) as error:
            # the weights are saved: a bundle installed read-only still trains, its metadata stays stale
            logger.warning(
                "%s: the %s of %s could not be recorded there (%s); inference and MONAI Label read it.",
                self.metadata_file,
                what,
                self.save_path,
                describe_error(error),
            )
            return
        if done:
            logger.warning("%s: %s", self.metadata_file, changed)

    def save_unvalidated(self) -> None:
        """Saves the weights as they are, for a training that validated no case at all (no validation cases): else
        it would end without a weights file, or with one of an earlier training."""
        if is_main_process():
            self._save()
            logger.warning(
                "no validation case was scored in this training, so %s holds the weights of its last epoch, "
                "not the best ones; give the training validation cases to keep the best.",
                self.save_path,
            )

    def state_dict(self) -> dict[str, Any]:
        """The best score and its epoch, with the validation cases' fingerprint and the plan and input size the
        weights are bound to, for the training checkpoint."""
        state: dict[str, Any] = {"best_metric": self.best_metric, "best_metric_epoch": self.best_metric_epoch}
        cases = _cases_fingerprint(self._engine)
        if cases is not None:
            # the validation cases the best score is of: a score of other cases is not one to beat
            state["validation_cases"] = cases
        if self.plan is not None:
            # what the weights are bound to, so that a resume with other preprocessing or classes is refused
            # (TrainingCheckpoint); JSON values, which load with weights_only=True
            state["plan"] = model_settings(self.plan)
        if self.input_size is not None:
            state["input_size"] = self.input_size
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Takes the best score of a resumed training, unless it was of other validation cases (then this run's first
        validation sets it)."""
        if _same_cases(state.get("validation_cases"), self._engine) is False:
            logger.warning(
                "the best score so far (%.4f, epoch %d) is of other validation cases than this run's, so it is not "
                "compared with this run's scores: its first validation replaces %s.",
                float(state["best_metric"]),
                int(state["best_metric_epoch"]),
                self.save_path,
            )
            return
        self.best_metric = float(state["best_metric"])
        self.best_metric_epoch = int(state["best_metric_epoch"])
        if self._engine is not None:
            # the validator's own record, so that its log does not call a worse score a new best
            self._engine.state.best_metric = self.best_metric
            self._engine.state.best_metric_epoch = self.best_metric_epoch


def _listed_cases(engine: Engine | None) -> list | None:
    """An engine's cases as the run was given them: the list before the data check skipped bad ones
    (:class:`~monai_unets.data.CheckedCases`); ``None`` when it has none (or there is no engine)."""
    data = getattr(getattr(getattr(engine, "data_loader", None), "dataset", None), "data", None)
    data = getattr(data, "listed", data)
    return list(data) if isinstance(data, (list, tuple)) and data else None


def _paths(value: Any) -> Iterator[str]:
    """The absolute paths among the strings of a case (its values, lists of them included)."""
    if isinstance(value, str):
        if os.path.isabs(value):
            yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _paths(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _paths(item)


def _relative(value: Any, root: str) -> Any:
    """A case with its absolute paths relative to ``root``."""
    if isinstance(value, str):
        return os.path.relpath(value, root) if os.path.isabs(value) else value
    if isinstance(value, Mapping):
        return {key: _relative(item, root) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_relative(item, root) for item in value]
    return value


def _digest(cases: Sequence[Any], located: bool = False, sized: bool = True, labels: bool = True) -> str:
    """A digest of ``cases`` (their files, in any order), the same wherever the dataset lies: its files are taken
    relative to the folder that holds them all, so a dataset moved, mounted elsewhere or reached through a link is
    the same one; with their sizes (``sized``), so that another dataset whose files have the same names (one made
    again, another export) is not, and with the contents of their label files (``labels``), so that a label
    corrected in place (MONAI Label's annotators save over it, often at the same size) makes another training.
    ``located``: of the paths as they are, without sizes; ``sized=False``: relative paths alone; ``labels=False``:
    relative paths and sizes (the digests checkpoints recorded before)."""
    sizes = [
        [_file_size(path) for path in _paths(case)] + (_label_contents(case) if labels else [])
        if sized and not located
        else []
        for case in cases
    ]
    if not located:
        folders = [os.path.dirname(path) for path in _paths(list(cases))]
        if folders:
            root = os.path.commonpath(folders)
            cases = [_relative(case, root) for case in cases]
    files = sorted(
        json.dumps([case, size] if size else case, sort_keys=True, default=str) for case, size in zip(cases, sizes)
    )
    return hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]


def _file_size(path: str) -> int | None:
    # a folder (a DICOM series) has no size of its own to compare; a file gone since is left to the run to name
    try:
        return os.path.getsize(path) if os.path.isfile(path) else None
    except OSError:
        return None


def _label_contents(case: Any) -> list[str | None]:
    """Digests of the contents of a case's label files (``label``; small, unlike images)."""
    label = case.get("label") if isinstance(case, Mapping) else None
    return [_content_digest(path) for path in _paths(label)]


def _content_digest(path: str) -> str | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None  # a file gone since is left to the run to name
    return _file_content_digest(path, stat.st_size, stat.st_mtime_ns) if os.path.isfile(path) else None


@functools.lru_cache(maxsize=None)
def _file_content_digest(path: str, size: int, mtime_ns: int) -> str:
    # keyed by the file's size and time too: each checkpoint of a training digests its labels, read once
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _cases_fingerprint(engine: Engine | None) -> str | None:
    """A digest of an engine's cases as listed (:func:`_listed_cases`, before the data check skips any), with the
    sizes of their files; ``None`` when it has none."""
    cases = _listed_cases(engine)
    return None if cases is None else _digest(cases)


def _same_cases(recorded: str | None, engine: Engine | None) -> bool | None:
    """Whether a checkpoint's digest of its cases (``recorded``) is of ``engine``'s cases; ``None`` where either is
    unknown. A digest of the paths as they were (what checkpoints of earlier versions recorded) matches too."""
    cases = _listed_cases(engine)
    if recorded is None or cases is None:
        return None
    earlier = (_digest(cases, labels=False), _digest(cases, sized=False), _digest(cases, located=True))
    return recorded in (_digest(cases), *earlier)


def trained_cases(model_files: Sequence[str | os.PathLike]) -> list[dict[str, str]]:
    """The images the weights of ``model_files`` were trained on, as their trainings' checkpoints record them.

    The checkpoint of ``model.pt`` is ``checkpoint.pt`` beside it, that of a cross-validation fold's
    ``model_fold<k>.pt`` is ``checkpoint_fold<k>.pt``; weights without one (trained elsewhere, or before
    checkpoints recorded their images) add nothing. With :func:`~monai_unets.data.warn_trained_on`, an evaluation
    says when it scores images the weights trained on (another split than the training's, or folds of an
    ensemble that trained on them).

    Args:
        model_files: weights files (an ensemble's members, or one).

    Example::

        >>> warn_trained_on(test_cases, trained_cases(["models/model.pt"]), "test")  # doctest: +SKIP
    """
    images: set[str] = set()
    for model_file in model_files:
        trainer = _training_record(model_file, "trainer", "the images {} trained on are not known")
        images.update(trainer.get("images", []) if isinstance(trainer, Mapping) else [])
    return [{"image": image} for image in sorted(images)]


def trained_input_size(model_file: str | os.PathLike) -> list[int] | None:
    """The image size the 2D weights of ``model_file`` were trained at, as their training's checkpoint records it
    (:class:`BestModelSaver`'s ``input_size``); ``None`` without one.

    The checkpoint is ``checkpoint.pt`` beside ``model.pt``, as for :func:`trained_cases`. Weights trained into a
    ``ckpt_dir`` outside their bundle have no ``metadata.json`` that records their size, only this.

    Args:
        model_file: the weights file.

    Example::

        >>> trained_input_size("/runs/skin/model.pt")  # doctest: +SKIP
        [128, 128]
    """
    saver = _training_record(model_file, "best_model", "the image size {} was trained at is not known")
    size = saver.get("input_size") if isinstance(saver, Mapping) else None
    return [int(v) for v in size] if size else None


def _training_record(model_file: str | os.PathLike, key: str, unknown: str) -> Any:
    """Entry ``key`` of the training checkpoint of ``model_file`` (``checkpoint.pt`` beside ``model.pt``,
    ``checkpoint_fold<k>.pt`` beside ``model_fold<k>.pt``), or ``None``: without one, or when it cannot be read,
    with the warning ``unknown`` (formatted with the weights' path) and why; the weights are used all the same.
    """
    path = Path(model_file)
    checkpoint = path.with_name(companion_name(path, "model", "checkpoint", ".pt"))
    if not checkpoint.is_file():
        return None
    try:
        state = read_checkpoint(checkpoint)
    except CheckpointError as error:
        logger.warning("%s: %s", unknown.format(path), error)
        return None
    return state.get(key) if isinstance(state, Mapping) else None


def _reseed_for_epoch(engine: Engine, epoch: int) -> None:
    """Seeds the random draws of a training resumed after ``epoch`` (shuffling, and augmentation in the loader's
    workers or in this process) from the run's seed and that epoch.

    The run seeded them at its start as a fresh run does, so a resumed run drew its first epochs' shuffles, crops
    and flips again for its later ones. It draws others now, reproducibly, though not those of the uninterrupted run,
    whose random states a checkpoint does not hold (they live in the loader's worker processes too).
    """
    from monai.data.utils import set_rnd

    seed = (torch.initial_seed() + epoch) % 2**32
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    loader = getattr(engine, "data_loader", None) or getattr(engine.state, "dataloader", None)
    dataset = getattr(loader, "dataset", None)
    if dataset is not None:
        # MONAI's DataLoader seeded the transforms of a loader without workers when it was made
        set_rnd(dataset, seed)


def _recorded_cases(state: Mapping[str, Any]) -> str | None:
    """The digest of the training cases a checkpoint records (:func:`_cases_fingerprint`), if any."""
    trainer = state.get("trainer")
    return trainer.get("cases") if isinstance(trainer, Mapping) else None


def _lock_name(checkpoint_path: str | os.PathLike) -> str:
    """The lock file of the training writing ``checkpoint_path``: ``checkpoint<rest>.pt`` -> ``.training<rest>.lock``
    (:func:`~monai_unets.data.atomic.companion_name`, hidden).

    One per checkpoint, so that cross-validation folds, each with its own checkpoint, weights and plan, can train
    side by side in one bundle (one GPU each), while a second training of the same fold is refused.

    Example::

        >>> _lock_name("models/checkpoint.pt"), _lock_name("models/checkpoint_fold2.pt"), _lock_name("models/run.pt")
        ('.training.lock', '.training_fold2.lock', '.run.training.lock')
    """
    return "." + companion_name(checkpoint_path, "checkpoint", "training", ".lock")


class _TrainingRunningError(CheckpointError, OutputFolderError):
    """Another training holds the checkpoint: the refused one writes nothing, not even its error log, which would go
    into the running training's ``logs/`` (:func:`~monai_unets.handlers.report_errors`)."""


def _training_running(checkpoint_path: Path) -> _TrainingRunningError:
    return _TrainingRunningError(
        f"{checkpoint_path.parent}: another training is running with this folder for its checkpoint "
        f"{checkpoint_path.name} and weights; wait for it to end, or give this one another bundle folder "
        "(--bundle_root) or --ckpt_dir."
    )


def _lock_folder(checkpoint_path: Path) -> None:
    """Holds the checkpoint's folder (its :func:`_lock_name`) for this process's training, or raises CheckpointError."""
    if not hold_folder(checkpoint_path.parent, _lock_name(checkpoint_path)):
        raise naming_holder(_training_running(checkpoint_path), checkpoint_path.parent, _lock_name(checkpoint_path))


def hold_training(checkpoint_path: str | os.PathLike, log_dir: str | os.PathLike | None = None) -> None:
    """Holds the checkpoint of this training (its lock, as :class:`TrainingCheckpoint` takes it) and the folder it
    writes its logs into, from the start of the run, before anything is written, in every process of a
    ``torchrun`` job.

    A bundle's ``initialize`` calls it, so that a second training of the same checkpoint (the same bundle, or fold)
    stops before it makes its TensorBoard files or an error log in the running training's ``logs/``: with the lock
    taken only when the trainer starts, those were made before. A training of another checkpoint (another
    ``--ckpt_dir``) with the same logs folder stops too: its TensorBoard files would be mixed with the running
    one's. The logs folder's lock has the checkpoint's lock name, so that folds, each with its own checkpoint, still
    train side by side with one logs folder. The checkpoint's lock is kept for the run: the trainer's
    :class:`TrainingCheckpoint` takes it again (a process may) and gives it up when training completes; the logs
    folder's is kept until the run's ``finalize`` (:func:`release_training`), a failed run's end
    (:func:`run_training`) or the process's.

    Args:
        checkpoint_path: the training's checkpoint file (``models/checkpoint.pt``, a fold's
            ``models/checkpoint_fold<k>.pt``).
        log_dir: the folder the training writes its logs into (``logs/``); ``None``: the checkpoint's alone.

    Raises:
        CheckpointError: another training holds the checkpoint or the logs folder (on rank 0; the other processes
            of a job exit with status 1). It is also an :class:`~monai_unets.data.medical_io.OutputFolderError`,
            for which :func:`~monai_unets.handlers.report_errors` writes no error log.

    Example::

        >>> hold_training("bundle/models/checkpoint.pt", "bundle/logs")  # doctest: +SKIP

        In a bundle config: ``initialize: [..., "$monai_unets.handlers.hold_training(@checkpoint_path,
        @output_dir)", ...]``.
    """
    path = Path(checkpoint_path)
    hold_folder_for_job(path.parent, _lock_name(path), _training_running(path))
    if log_dir is not None:
        refusal = _TrainingRunningError(
            f"{log_dir}: another training is writing its logs (TensorBoard files, error log) into this folder; wait "
            "for it to end, or give this one another --output_dir."
        )
        hold_folder_for_job(log_dir, _lock_name(path), refusal)


def release_training(checkpoint_path: str | os.PathLike, log_dir: str | os.PathLike | None = None) -> None:
    """Gives up what :func:`hold_training` holds, when a training ends in a process that goes on.

    A process that ends gives the locks up anyway. One that goes on (MONAI Label's server, which runs a
    ``/train?run_sync=true`` in its own process, or a notebook) had kept them: every later training of the bundle in
    another process (MONAI Label's background ``/train``) was refused as if this one still ran. The bundles'
    ``finalize`` calls it with :func:`hold_training`'s arguments.

    Args:
        checkpoint_path: the training's checkpoint file, as given to :func:`hold_training`.
        log_dir: its logs folder, as given to :func:`hold_training`.

    Example::

        >>> release_training("bundle/models/checkpoint.pt", "bundle/logs")  # doctest: +SKIP
    """
    path = Path(checkpoint_path)
    release_folder(path.parent, _lock_name(path))
    if log_dir is not None:
        release_folder(log_dir, _lock_name(path))


def run_training(trainer: Engine, checkpoint_path: str | os.PathLike, log_dir: str | os.PathLike | None = None) -> None:
    """Runs ``trainer``; a run that fails gives up what :func:`hold_training` holds before its error goes on.

    MONAI runs no ``finalize`` after a failed ``run``, so a process that goes on after the failure (MONAI Label's
    server, which runs a ``/train?run_sync=true`` itself, or a notebook) kept the locks: every later training of the
    bundle in another process (MONAI Label's background ``/train``) was refused as if the failed one still ran,
    until the server restarted. A run that completes keeps them for ``finalize`` (:func:`release_training`).

    Args:
        trainer: the training engine, run as it is.
        checkpoint_path: the training's checkpoint file, as given to :func:`hold_training`.
        log_dir: its logs folder, as given to :func:`hold_training`.

    Example::

        >>> run_training(trainer, "bundle/models/checkpoint.pt", "bundle/logs")  # doctest: +SKIP

        In a bundle config: ``run: ["$monai_unets.handlers.run_training(@train#trainer, @checkpoint_path,
        @output_dir)"]``.
    """
    try:
        trainer.run()
    except BaseException:
        release_training(checkpoint_path, log_dir)
        raise


def _replace_folder(folder: Path, files: Sequence[Path]) -> None:
    """Makes ``folder`` hold copies of ``files`` and nothing else, all of them or, on an error, none: the weights,
    plan and checkpoint of one training, never one file of a training beside another's (a disk filling up halfway
    had left a model.pt beside the checkpoint of the training before, whose image size it then ran at)."""
    partial = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    replaced = folder.with_name(f".{folder.name}.replaced-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        for path in files:
            shutil.copyfile(path, partial / path.name)
        if folder.is_dir():
            folder.rename(replaced)
        partial.rename(folder)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        if replaced.is_dir() and not folder.exists():
            replaced.rename(folder)
        raise OSError(
            error.errno,
            f"{folder}: the weights this training replaces could not be kept there ({error.strerror}); give the "
            "training another --ckpt_dir, or free the space",
        ) from error
    shutil.rmtree(replaced, ignore_errors=True)


class TrainingCheckpoint:
    """Saves everything training needs to go on after every ``interval`` epochs; resumes from it at start.

    ``checkpoint_path`` holds the state dict of each object of ``save_dict`` (network, optimizer, scheduler,
    :class:`BestModelSaver`, ...) and the trainer's epoch and iteration; it is written atomically. When the
    trainer starts and ``resume`` is true, an existing checkpoint is loaded and training goes on after its
    epoch (up to the trainer's ``max_epochs``, which may be raised on the command line to train longer), also
    with another batch size or number of processes. It is also saved when training ends, after the validation
    then (:class:`~monai_unets.handlers.FinalValidationHandler`), so that it holds the best score so far. While a
    training runs, its checkpoint is locked (``.training.lock`` in its folder, :func:`_lock_name`): a second
    training with the same checkpoint stops at start with a ``CheckpointError`` (the bundles take the lock before
    the run writes anything, :func:`hold_training`; it is taken here again).
    With ``resume`` false, training starts from epoch 0 and the checkpoint is overwritten. A checkpoint records its
    training cases (a digest of the dataset's list as given, before the data check skipped bad ones: a re-run in
    which an image has been damaged since goes on with its training): a training on other cases (more labelled
    images, another split) is another training, which starts at epoch 1 from the weights the run loaded, if any,
    instead of resuming, and a best score of other validation cases is not kept. A training that scored no
    validation case at all (none given) has its :class:`BestModelSaver` write the last epoch's weights when it ends.
    A resume whose optimizer has another learning rate or weight decay, or whose :class:`BestModelSaver` has a plan
    of other preprocessing or classes, stops at start with a ``CheckpointError`` naming the setting and both values
    (a checkpoint written before it recorded the plan is resumed without that comparison).

    Args:
        checkpoint_path: the checkpoint file (``models/checkpoint.pt``).
        save_dict: name -> object with ``state_dict`` / ``load_state_dict``.
        resume: load an existing checkpoint when training starts.
        interval: epochs between saves.
        earlier: checkpoints this training may have written under another name before (a cross-validation fold's
            ``models/checkpoint.pt``, which folds shared before each kept its own); while ``checkpoint_path`` does
            not exist, the first of them that records this run's training cases is resumed from.

    Example::

        >>> net = torch.nn.Linear(4, 2)
        >>> opt = torch.optim.Adam(net.parameters())
        >>> checkpoint = TrainingCheckpoint("models/checkpoint.pt", {"model": net, "optimizer": opt})
        >>> checkpoint.attach(trainer)  # trainer: the bundle's SupervisedTrainer  # doctest: +SKIP
    """

    def __init__(
        self,
        checkpoint_path: str | os.PathLike,
        save_dict: Mapping[str, Any],
        resume: bool = True,
        interval: int = 1,
        earlier: Sequence[str | os.PathLike] = (),
    ) -> None:
        if not isinstance(resume, bool):
            raise ValueError(f"resume must be True or False, got {resume!r}.")
        self.checkpoint_path = Path(checkpoint_path)
        self.earlier = [Path(path) for path in earlier or ()]
        self.save_dict = {k: v for k, v in save_dict.items() if v is not None}
        self.resume = resume
        self.interval = interval
        self._first_epoch = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._lock)
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.STARTED, self._save_when_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self.save)

    def _lock(self, engine: Engine) -> None:
        # one training per checkpoint folder: two at once (a second command in the same bundle) each kept their own
        # best score and overwrote each other's model file, so the better weights could be lost
        if is_main_process():
            _lock_folder(self.checkpoint_path)

    def _save_when_completed(self, engine: Engine) -> None:
        # registered when the run starts, after every handler attached before it, so that this save follows the
        # validation when training ends (FinalValidationHandler): the checkpoint then holds that validation's best
        # score, and a resumed run does not take a worse one for a new best and replace the better model file
        if not engine.has_event_handler(self.save, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self._save_weights_if_never_validated)
            engine.add_event_handler(Events.COMPLETED, self.save)
            engine.add_event_handler(
                Events.COMPLETED,
                lambda _: release_folder(self.checkpoint_path.parent, _lock_name(self.checkpoint_path)),
            )

    def _save_weights_if_never_validated(self, engine: Engine) -> None:
        # with no validation case (MONAI Label's first trainings on a few labels: its val_split leaves none) the
        # validator never runs, and the best-weights file would not be written at all
        if engine.state.epoch <= self._first_epoch:
            return  # no epoch trained in this run: the weights are as the last one left them
        for obj in self.save_dict.values():
            if isinstance(obj, BestModelSaver) and obj.best_metric_epoch < 0:
                obj.save_unvalidated()

    def save(self, engine: Engine) -> None:
        """Writes the checkpoint (on the first process of a job only)."""
        if not is_main_process():
            return
        for obj in self.save_dict.values():
            if isinstance(obj, torch.nn.Module):
                check_finite_weights(obj, self.checkpoint_path, int(engine.state.epoch))
        state = {name: _unwrap(obj).state_dict() for name, obj in self.save_dict.items()}
        state["trainer"] = {"epoch": int(engine.state.epoch), "iteration": int(engine.state.iteration)}
        cases = _listed_cases(engine)
        if cases is not None:
            state["trainer"]["cases"] = _digest(cases)
            # the images the weights train on, for an evaluation to tell when it scores some (trained_cases)
            state["trainer"]["images"] = sorted({str(case.get("image")) for case in cases})
        save_atomic(state, self.checkpoint_path)

    def load(self, engine: Engine) -> None:
        """Resumes from the checkpoint when there is one and resuming is on; a training that does not resume keeps
        the weights it will replace (:meth:`_keep_replaced`)."""
        self._first_epoch = int(engine.state.epoch)
        if not self._resumed(engine) and is_main_process():
            self._keep_replaced()

    def _keep_replaced(self) -> None:
        # the first validation of a training that does not go on with the one before overwrites that one's best
        # weights: a dataset given by mistake, or --resume False, had lost a long training's model for good
        saver = next((obj for obj in self.save_dict.values() if isinstance(obj, BestModelSaver)), None)
        if saver is None or not saver.save_path.is_file():
            return
        files = [Path(f) for f in (saver.save_path, saver.plan_file, self.checkpoint_path) if f and Path(f).is_file()]
        folder = saver.save_path.parent / PREVIOUS_FOLDER
        _replace_folder(folder, files)
        logger.warning(
            "this training replaces the weights of another (%s); they are kept in %s with their %s, until another "
            "training replaces the weights again (run them as other weights: --model_file, or --model_files of the CT "
            "bundles, %s).",
            saver.save_path,
            folder,
            "plan and checkpoint" if len(files) == 3 else "checkpoint" if self.checkpoint_path in files else "files",
            folder / saver.save_path.name,
        )

    def _resumed(self, engine: Engine) -> bool:
        if not self.resume:
            return False
        if not self.checkpoint_path.is_file():
            return self._resume_earlier(engine)
        state = read_checkpoint(self.checkpoint_path)
        if _same_cases(_recorded_cases(state), engine) is False:
            # another training, not the interrupted one: MONAI Label trains again once more images are labelled,
            # and its best score came from other validation cases
            trainer = state.get("trainer") if isinstance(state, Mapping) else None
            # a checkpoint of an earlier version that recorded no images knew its cases by their absolute paths only
            by_path = isinstance(trainer, Mapping) and "images" not in trainer
            logger.warning(
                "%s is of a training on other cases%s: this one starts at epoch 1 (from the weights the run loaded, "
                "if any) and overwrites it, and its first validation replaces the best weights.",
                self.checkpoint_path,
                " or paths (written by an earlier version, which knew its cases by their absolute paths only: a "
                "dataset moved, mounted elsewhere or reached through a link is another to it; to go on with that "
                "training, run it once from the dataset's old path)"
                if by_path
                else "",
            )
            return False
        self._restore(engine, state, self.checkpoint_path)
        return True

    def _resume_earlier(self, engine: Engine) -> bool:
        for path in self.earlier:
            if not path.is_file():
                continue
            state = read_checkpoint(path)
            if _same_cases(_recorded_cases(state), engine):
                logger.warning(
                    "%s does not exist yet: resuming from %s, which this training (the same cases) wrote before; "
                    "its next checkpoints go to %s.",
                    self.checkpoint_path,
                    path,
                    self.checkpoint_path,
                )
                self._restore(engine, state, path)
                return True
        return False

    def _restore(self, engine: Engine, state: Mapping[str, Any], path: Path) -> None:
        missing = [name for name in [*self.save_dict, "trainer"] if name not in state]
        if missing:
            raise CheckpointError(
                f"{path}: has no {', '.join(missing)}; it is not a training checkpoint of this "
                "configuration. Start fresh with --resume False (or move the file away)."
            )
        # every recorded setting before anything is loaded: another number of classes is named as such, not by the
        # shapes of the layers that follow from it
        for name, obj in self.save_dict.items():
            problem = _setting_change(path, _unwrap(obj), state[name]) if isinstance(state[name], Mapping) else None
            if problem:
                raise CheckpointError(problem)
        for name, obj in self.save_dict.items():
            target = _unwrap(obj)
            if isinstance(target, torch.nn.Module):
                problem = _mismatch(path, target, state[name])
                if problem:
                    raise CheckpointError(f"{problem} Or start fresh with --resume False.")
            try:
                target.load_state_dict(state[name])
            except (KeyError, ValueError, RuntimeError) as error:
                raise CheckpointError(
                    f"{path}: its {name!r} does not fit this configuration ({error}); start fresh with --resume False."
                ) from error
        epoch = self._first_epoch = int(state["trainer"]["epoch"])
        # the iterations of this run's epochs, not the saved count: another batch size or number of processes
        # gives another epoch length, and ignite stops once the iteration reaches epoch_length * max_epochs
        length = engine.state.epoch_length
        engine.state.epoch = epoch
        engine.state.iteration = epoch * length if length else int(state["trainer"]["iteration"])
        if epoch >= engine.state.max_epochs:
            logger.warning(
                "%s: training already reached epoch %d of max_epochs %d; nothing to do. Raise max_epochs to train "
                "longer (--max_epochs, or max_epochs in a MONAI Label /train request), or start over with --resume "
                "False.",
                path,
                epoch,
                engine.state.max_epochs,
            )
        else:
            _reseed_for_epoch(engine, epoch)
            logger.info("resumed from %s after epoch %d of %d", path, epoch, engine.state.max_epochs)
