"""The end of a bundle's ``torchrun`` job: the process group is ended once every rank's collectives are done."""

from __future__ import annotations

import time

__all__ = ["end_process_group"]

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
