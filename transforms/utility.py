"""Utility transforms: a chain whose independent writers run side by side."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from monai.transforms import Compose, apply_transform
from monai.transforms.compose import execute_compose

__all__ = ["ConcurrentCompose"]


class ConcurrentCompose(Compose):
    """MONAI's ``Compose``, except that consecutive transforms of the ``concurrent`` classes run side by side.

    A case's outputs (a NIfTI label map, a DICOM SEG) are written by steps that only read the case and do not
    depend on one another, and most of their time is spent in one thread: gzip compression, which releases the
    GIL, or building the SEG in Python. Run side by side, each in a thread, they take about as long as the
    slowest of them (on a 512 x 512 x 300 CT, the SEG) instead of their sum. Every transform of such a run goes
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
