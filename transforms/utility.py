"""Utility transforms: a chain whose independent writers run side by side, and one whose random part runs
without metadata."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from threading import current_thread, main_thread
from typing import Any

from monai.data import MetaTensor, get_track_meta, set_track_meta
from monai.transforms import Compose, RandomizableTrait, Transform, apply_transform
from monai.transforms.compose import execute_compose

__all__ = ["ConcurrentCompose", "MetaFreeRandomCompose"]


class ConcurrentCompose(Compose):
    """MONAI's ``Compose``, except that consecutive transforms of the ``concurrent`` classes run side by side.

    A case's outputs (a NIfTI label map, a DICOM SEG) are written by steps that only read the case and do not
    depend on one another, and most of their time is spent in one thread: gzip compression, which releases the
    GIL, or building the SEG in Python. Run side by side, each in a thread, they take about as long as the
    slowest of them (on a 512 x 512 x 300 CT, the SEG) instead of their sum. Such a transform may also declare
    ``prepare(data)``, called with the case as it enters the chain, to start in a thread the part of its work that
    does not depend on the steps before it (the SEG's reading of its source headers). Every transform of such a run goes
    to its end whatever the others do, so one failed output does not keep the others from being written; then
    the first failure in the chain's order is raised, wrapped as ``apply_transform`` wraps it, so that it names
    the transform that failed. The data goes on as it came to them: their return values are not used.

    The chain stays a flat ``Compose`` (``transforms`` lists every step), so tools that take a bundle's steps
    apart see the usual ones: MONAI Label, for one, drops the ``SaveImaged`` among them. Other arguments, and
    lazy resampling or ``start`` / ``end``, which run the chain as ``Compose`` does, are ``Compose``'s.

    Args:
        transforms: the chain.
        concurrent: class names of the transforms that may run side by side (a subclass counts as its base);
            each of them must leave its input unchanged.
        kwargs: ``Compose``'s keyword arguments.

    Example::

        >>> post = ConcurrentCompose(
        ...     [Invertd(...), ArgmaxLabeld("pred"), SaveImaged("pred", ...), SaveDicomSegd("pred", ...)],
        ...     concurrent=["SaveImaged", "SaveDicomSegd"],
        ... )  # doctest: +SKIP
    """

    def __init__(
        self, transforms: Sequence[Callable] | Callable | None = None, concurrent: Sequence[str] = (), **kwargs: Any
    ) -> None:
        super().__init__(transforms, **kwargs)
        self.concurrent = frozenset(concurrent)

    def _side_by_side(self, transform: Callable) -> bool:
        # __class__ rather than type(): a proxy that stands for a transform (a timer, a mock) counts as it
        return any(cls.__name__ in self.concurrent for cls in transform.__class__.__mro__)

    def __call__(self, input_, start=0, end=None, threading=False, lazy: bool | None = None):
        lazy_ = self._lazy if lazy is None else lazy
        if lazy_ or start != 0 or end is not None or not self.concurrent:
            return super().__call__(input_, start=start, end=end, threading=threading, lazy=lazy)
        runs: list[list[Callable]] = []
        for transform in self.transforms:
            # a run is either one transform or writers only, so its first one says which
            if runs and self._side_by_side(transform) and self._side_by_side(runs[-1][0]):
                runs[-1].append(transform)
            else:
                runs.append([transform])
        for transform in self.transforms:
            prepare = getattr(transform, "prepare", None) if self._side_by_side(transform) else None
            if callable(prepare):
                prepare(input_)
        data = input_
        for run in runs:
            if len(run) == 1:
                data = execute_compose(
                    data,
                    transforms=run,
                    map_items=self.map_items,
                    unpack_items=self.unpack_items,
                    lazy=False,
                    overrides=self.overrides,
                    threading=threading,
                    log_stats=self.log_stats,
                )
            else:
                self._run_side_by_side(run, data)
        return data

    def _run_side_by_side(self, run: Sequence[Callable], data: Any) -> None:
        def apply(transform: Callable) -> Any:
            return apply_transform(transform, data, self.map_items, self.unpack_items, log_stats=self.log_stats)

        with ThreadPoolExecutor(max_workers=len(run), thread_name_prefix="concurrent-compose") as pool:
            futures = [pool.submit(apply, transform) for transform in run]
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error


def _first_random(transform: Any) -> bool:
    # where MONAI's caching datasets stop caching: a random transform, or a callable that is not a Transform
    return isinstance(transform, RandomizableTrait) or not isinstance(transform, Transform)


def _without_meta(data: Any) -> Any:
    """``data`` with each ``MetaTensor`` (at the top level of a dictionary or list of them) as a plain tensor."""
    # not MONAI's convert_to_tensor: it would also turn a case's other values (numbers, lists of them, numpy arrays)
    # into tensors, which the transforms after it and the collation would then see in another type
    if isinstance(data, MetaTensor):
        return data.as_tensor()
    if isinstance(data, dict):
        return {key: value.as_tensor() if isinstance(value, MetaTensor) else value for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(_without_meta(item) for item in data)
    return data


class MetaFreeRandomCompose(Compose):
    """MONAI's ``Compose``, except that from its first random transform on the data runs as plain tensors, with
    MONAI's metadata tracking off.

    A training batch needs no metadata: the trainer takes its tensors, and nothing inverts its augmentation. Yet
    every random transform of a ``MetaTensor`` copies the metadata and records itself among the applied
    operations, and the collation gathers them all: on a 2D batch of eight 256 x 256 images, flips and a
    rotation took about twice as long with metadata as without. The deterministic head (reading, resampling,
    cropping, normalisation, what a caching dataset keeps) still runs with metadata, so the checks and readers
    that need a file's affine or name have it. The transforms are those of a flat ``Compose`` and draw their
    random numbers as they do there: the same seed gives the same samples.

    MONAI's metadata switch is one per process (``monai.data.set_track_meta``): while the random part runs,
    transforms in other threads of the process would make no metadata either (a reader's affine lost, a
    resampling skipped). So the switch is made only in a process's main thread, where a training's loader runs
    the chain (in its worker processes, or in the trainer's process without workers); in another thread (those of
    ``ThreadDataLoader``) the chain runs as ``Compose`` does, with metadata. So does a chain resampled lazily
    (``lazy=True``), whose random spatial transforms are combined through their metadata.

    Args:
        transforms: the chain, as for ``Compose``; nested ``Compose`` lists are not looked into, so pass a flat
            chain (``Compose(...).flatten().transforms``).
        kwargs: ``Compose``'s keyword arguments, below, passed to the head and the random part alike.
        map_items: apply each transform to every item of a list (as a multi-sample crop makes) rather than to the
            list; an integer is the depth of nested lists to map into (``True`` is 1).
        unpack_items: call each transform with the items of the data as separate arguments.
        log_stats: MONAI's logging of the chain: ``False`` none, ``True`` its default loggers, a string a logger name.
        lazy: MONAI's lazy resampling: ``False`` (the default) resamples transform by transform, ``True`` combines
            lazy transforms, ``None`` lets each transform's own ``lazy`` decide.
        overrides: arguments (``mode``, ``padding_mode``, ...) applied to the transforms when resampling lazily.

    Example::

        >>> import torch
        >>> from monai.transforms import RandFlipd, ScaleIntensityd
        >>> chain = MetaFreeRandomCompose([ScaleIntensityd("image"), RandFlipd("image", prob=1.0)])
        >>> out = chain({"image": MetaTensor(torch.ones(1, 4, 4))})
        >>> type(out["image"]).__name__
        'Tensor'
    """

    def __call__(self, input_, start=0, end=None, threading=False, lazy: bool | None = None):
        first = self.get_index_of_first(_first_random)
        stop = len(self.transforms) if end is None else end
        lazily = self.lazy if lazy is None else lazy
        if first is None or stop <= first or lazily is True or current_thread() is not main_thread():
            return super().__call__(input_, start=start, end=end, threading=threading, lazy=lazy)
        split = max(start, first)
        if split > start:
            input_ = super().__call__(input_, start=start, end=split, threading=threading, lazy=lazy)
        tracking = get_track_meta()
        set_track_meta(False)
        try:
            return super().__call__(_without_meta(input_), start=split, end=end, threading=threading, lazy=lazy)
        finally:
            set_track_meta(tracking)
