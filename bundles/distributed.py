"""A bundle's ``torchrun`` job: the validation cases shared out among the processes, and the job's end once every
rank's collectives are done."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["end_process_group", "validation_sampler"]

# How long the ending process leaves Python's global lock free for gloo's worker threads (see end_process_group):
# they need it for microseconds once a collective is done; 0.1 s leaves a wide margin on a loaded machine.
_RELEASE_WAIT_S = 0.1


def end_process_group() -> None:
    """Ends this process's default process group once every rank is done with it; nothing without one.

    The multi-GPU configs call it in ``finalize``, on every rank. A barrier first makes sure no collective is in
    flight on any rank. Then, for gloo (CPU jobs), a short wait: each collective is run by one of gloo's C++ worker
    threads, which lets the waiting Python code go on and only then releases the collective's tensors. That
    release needs Python's global lock; when the main thread reached the interpreter's shutdown first, the worker
    thread aborted the whole process (SIGABRT, "terminate called without an active exception") after a run that
    had finished, in about one two-process training in 25. Sleeping leaves the lock free for those releases.

    Example::

        >>> end_process_group()  # no process group: nothing to end

        In a multi-GPU config: ``finalize: ["$monai_unets.bundles.end_process_group()"]``.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()
    time.sleep(_RELEASE_WAIT_S)


def validation_sampler(dataset: Any) -> Any:
    """MONAI's ``DistributedSampler`` that gives each process of the job its share of the validation cases, each
    case validated once (``even_divisible=False``, in order).

    Args:
        dataset: the validation dataset.

    Raises:
        SettingError: fewer validation cases than processes (MONAI's own message, "the dataset length is less
            than the number of participating ranks", named neither the list nor what to change).

    Example::

        In a multi-GPU config: ``validate#sampler: {_target_: monai_unets.bundles.validation_sampler, dataset:
        "@validate#dataset"}``.
    """
    import torch.distributed as dist
    from monai.data import DistributedSampler

    from ..handlers.errors import SettingError

    processes = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if len(dataset) < processes:
        raise SettingError(
            f"the validation list holds {len(dataset)} case(s), fewer than the {processes} processes of this job, "
            "which each validate a share of it: hold out more cases (val_fraction, val_max_cases) or start fewer "
            "processes (torchrun --nproc_per_node)."
        )
    return DistributedSampler(dataset, even_divisible=False, shuffle=False)
