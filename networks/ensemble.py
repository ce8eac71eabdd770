"""Test-time augmentation by mirroring and ensembles of checkpoints, averaged as probabilities."""

from __future__ import annotations

import copy
import itertools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.inferers import Inferer
from torch import nn

from ..handlers.checkpoint import CheckpointError, load_weights

__all__ = ["EnsembleInferer", "load_models", "mirror_axes", "model_files", "served_model_file", "served_model_files"]


def mirror_axes(spatial_dims: int) -> list[tuple[int, ...]]:
    """Every subset of the spatial axes (as tensor dimensions of a (B, C, ...) batch), the empty one first.

    Args:
        spatial_dims: the number of spatial dimensions (2 or 3); the result has ``2 ** spatial_dims`` subsets, from
            the smallest to the largest, which :class:`EnsembleInferer` flips one pass each.

    Example::

        >>> mirror_axes(2)
        [(), (2,), (3,), (2, 3)]
    """
    dims = range(2, 2 + spatial_dims)
    return [axes for n in range(spatial_dims + 1) for axes in itertools.combinations(dims, n)]


def _file_state(path: str) -> tuple[int, int, int] | None:
    """What tells a rewritten file from the one read before: inode (a file renamed into place), size, modification
    time; ``None`` for a missing file, which :func:`load_weights` names."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _same_weights(first: nn.Module, second: nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def _same_file(first: str, second: str) -> bool:
    return os.path.realpath(first) == os.path.realpath(second)


class EnsembleInferer(Inferer):
    """Average the probabilities of mirrored inputs (TTA) and of several checkpoints (an ensemble).

    Each member is the wrapped ``inferer`` (e.g. a sliding window) run on one network and one mirroring of the
    input, its logits turned into probabilities, mirrored back and averaged. nnU-Net mirrors over every subset
    of the spatial axes (8 passes in 3D). Several output channels are classes (softmax); a single channel is one
    class against the rest (sigmoid), as a binary network with ``out_channels=1`` gives. The result is returned
    as logits of the averaged probabilities (log-probabilities; for one channel the log-odds): a later
    ``Activationsd(softmax=True)`` or ``sigmoid=True`` turns it back into the averaged probabilities exactly, so
    the bundles' post-processing is the same with and without averaging. With ``tta=False`` and no
    ``checkpoints`` the network's logits are returned unchanged.

    Args:
        inferer: the inferer of one pass (a ``SlidingWindowInferer``).
        checkpoints: model files; each is loaded into a copy of the network given at call time, on the first call
            and again whenever a file has changed since (another file under its name, another size or modification
            time: model.pt written by a later training). Empty: the given network alone.
        tta: mirror over all spatial axes.
        spatial_dims: number of spatial dimensions of the inputs; ``None``: those of each input (2D or 3D).
        map_location: where the checkpoints are loaded (default: the network's device).
        class_names: the run's class names, in a bundle that takes them with ``num_classes``: a checkpoint of
            another number of classes is then to be run with both (see :func:`~monai_unets.handlers.load_weights`).

    Example::

        >>> from monai.inferers import SlidingWindowInferer
        >>> inferer = EnsembleInferer(SlidingWindowInferer((64, 64, 64)), ["fold0.pt", "fold1.pt"], tta=True)
        >>> # image: a (1, 1, X, Y, Z) CT; network: the architecture the folds were trained with
        >>> log_probs = inferer(image, network)  # doctest: +SKIP
    """

    def __init__(
        self,
        inferer: Inferer,
        checkpoints: Sequence[str | os.PathLike] = (),
        tta: bool = False,
        spatial_dims: int | None = None,
        map_location: Any = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.inferer = inferer
        self.checkpoints = [os.fspath(c) for c in checkpoints or ()]
        self.tta = bool(tta)
        self.spatial_dims = spatial_dims
        self.map_location = map_location
        self.class_names = class_names
        self._members: list[nn.Module] | None = None
        self._template: nn.Module | None = None
        self._loaded: list[tuple[int, int, int] | None] = []

    def members(self, network: nn.Module) -> list[nn.Module]:
        """The networks averaged: copies of ``network`` with each checkpoint's weights, or ``network`` itself.

        The checkpoints are loaded on the first call (:func:`load_models` makes it before a run's first case).

        Raises:
            CheckpointError: a checkpoint is missing or unreadable, does not fit ``network``, or holds the same
                weights as another one (listed twice, or a copy): averaged, that model would count twice.
        """
        if not self.checkpoints:
            return [network]
        # a program may keep this inferer and its network between runs while a training rewrites model.pt: members
        # made from the earlier file would go on predicting with the earlier weights
        loaded = [_file_state(checkpoint) for checkpoint in self.checkpoints]
        if self._members is None or self._template is not network or loaded != self._loaded:
            device = self.map_location or next(network.parameters()).device
            members: list[nn.Module] = []
            # the first call may come under torch.inference_mode(): copies made there would hold inference
            # tensors, which later calls outside it (no_grad evaluators, training-time validation) cannot use
            with torch.inference_mode(False):
                for checkpoint in self.checkpoints:
                    member = copy.deepcopy(network)
                    load_weights(checkpoint, member, device, self.class_names)
                    twin = next((c for c, m in zip(self.checkpoints, members) if _same_weights(m, member)), None)
                    if twin is not None:
                        same = (
                            "is listed twice" if _same_file(twin, checkpoint) else f"holds the same weights as {twin}"
                        )
                        raise CheckpointError(
                            f"{checkpoint}: {same}; the ensemble would count that model twice: list each model once."
                        )
                    members.append(member.eval())
            self._members, self._template, self._loaded = members, network, loaded
        return self._members

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        members = self.members(network)
        flips = mirror_axes(self.spatial_dims or inputs.ndim - 2) if self.tta else [()]
        if len(members) == 1 and len(flips) == 1:
            return self.inferer(inputs, members[0], *args, **kwargs)
        total: torch.Tensor | None = None
        for member, axes in itertools.product(members, flips):
            x = torch.flip(inputs, axes) if axes else inputs
            logits = self.inferer(x, member, *args, **kwargs).float()
            # a softmax over one channel is 1 everywhere: a binary network's channel is a sigmoid's
            probs = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
            probs = torch.flip(probs, axes) if axes else probs
            total = probs if total is None else total + probs
        mean = total / (len(members) * len(flips))
        tiny = torch.finfo(mean.dtype).tiny
        if mean.shape[1] == 1:
            return torch.log(mean.clamp_min(tiny)) - torch.log((1 - mean).clamp_min(tiny))
        return torch.log(mean.clamp_min(tiny))


def model_files(
    folder: str | os.PathLike,
    ensemble: str | os.PathLike | Sequence[str | os.PathLike] | None,
    default: str = "model.pt",
) -> list[str]:
    """The model files of a bundle run: those an ``ensemble`` names in ``folder``, else ``default`` there.

    The CT bundles' inference and evaluation take their ``ensemble`` setting through this: a list of model files
    (``--ensemble "['model_fold0.pt','model_fold1.pt']"``), and one name alone (``--ensemble model_fold0.pt``,
    which the command line gives as a string) is that one file, not a list of its letters.

    Args:
        folder: the folder of the model files (the bundle's ``models/``).
        ensemble: the model files averaged, relative to ``folder``; empty or ``None`` for none.
        default: the model file of a run without an ensemble.

    Example::

        >>> model_files("models", ["model_fold0.pt", "model_fold1.pt"])
        ['models/model_fold0.pt', 'models/model_fold1.pt']
        >>> model_files("models", "model_fold1.pt"), model_files("models", [])
        (['models/model_fold1.pt'], ['models/model.pt'])
    """
    names = [ensemble] if isinstance(ensemble, (str, os.PathLike)) else list(ensemble or ()) or [default]
    return [os.path.join(folder, name) for name in names]


def served_model_files(folder: str | os.PathLike, default: str = "model.pt") -> list[str]:
    """The model files a bundle offers in MONAI Label (its ``model_filename`` option): ``default`` first, the weights
    a request runs when it chooses none, then the other ``.pt`` files of ``folder`` (cross-validation folds), shortest
    name first, as MONAI Label's bundle app lists them; training checkpoints (``checkpoint*.pt``) are no model.

    The CT bundles give this list as their ``displayable_configs`` option, so that the app passes each request's
    choice into the config, whose plan then follows the chosen weights (:func:`served_model_file`).

    Args:
        folder: the bundle's ``models/``.
        default: the bundle's own weights file.

    Example::

        >>> served_model_files("models")  # with model.pt, model_fold0.pt and model_fold1.pt there  # doctest: +SKIP
        ['model.pt', 'model_fold0.pt', 'model_fold1.pt']
    """
    names = sorted(
        (p.name for p in Path(folder).glob("*.pt") if p.name != default and not _is_checkpoint(p.name)),
        key=lambda name: (len(name), name),
    )
    return [default, *names] if (Path(folder) / default).is_file() else names


def _is_checkpoint(name: str) -> bool:
    # a training's checkpoint (checkpoint.pt, checkpoint_fold<k>.pt) holds its network's weights among the
    # optimizer's state: offered and chosen, it had been served as if it were a model; other names are weights a
    # user put there (checkpoint_best.pt), offered as such
    return re.fullmatch(r"checkpoint(_fold\d+)?\.pt", name) is not None


def served_model_file(folder: str | os.PathLike, choice: str | Sequence[str] | None, default: str = "model.pt") -> str:
    """The model file a MONAI Label request runs, by the app's rule: the name chosen (a string) in ``folder``;
    ``default`` there for a request that chose none (it gets the offered list, whose first is ``default``), for a
    name that is no file there and for a training checkpoint.

    Args:
        folder: the bundle's ``models/``.
        choice: the request's ``model_filename``, or the list :func:`served_model_files` offers.
        default: the bundle's own weights file.

    Example::

        >>> served_model_file("models", "model_fold1.pt")  # where that file exists  # doctest: +SKIP
        'models/model_fold1.pt'
        >>> served_model_file("models", ["model.pt", "model_fold0.pt"])
        'models/model.pt'
    """
    # only a name the list offers: a request naming previous/checkpoint.pt, or a path out of the folder, had been run
    offered = isinstance(choice, str) and choice in served_model_files(folder, default)
    return os.path.join(folder, choice if offered else default)


def load_models(inferer: Inferer, network: nn.Module) -> None:
    """Loads the model files an :class:`EnsembleInferer` averages now; any other inferer has none to load.

    An ensemble loads them on its first call, once the first case is read and preprocessed: a run calls this at
    start instead, so that a model file that cannot take part (missing, unreadable, of another network, listed
    twice) stops it in one line rather than failing every case in turn.

    Args:
        inferer: the run's inferer.
        network: the network the run gives it.

    Example::

        >>> load_models(EnsembleInferer(SimpleInferer(), ["fold0.pt", "fold1.pt"]), network)  # doctest: +SKIP
    """
    if isinstance(inferer, EnsembleInferer):
        inferer.members(network)
