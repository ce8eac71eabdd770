"""A bundle's ``torchrun`` job: the cases shared out among the processes (at least one each), the folders it holds,
the log of rank 0 alone, and the job's end once every rank's collectives are done."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from ..data.atomic import hold_folder, naming_holder
from ..data.cases import rank_and_world_size

__all__ = [
    "check_evaluation_shards",
    "end_process_group",
    "hold_folder_for_job",
    "log_from_rank_zero",
    "validation_sampler",
]

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


def hold_folder_for_job(
    folder: str | os.PathLike,
    lock_name: str,
    refusal: Exception,
    on_hold: Callable[[], Any] | None = None,
) -> Any:
    """Holds ``folder`` for this run (:func:`~monai_unets.data.atomic.hold_folder`), for every process of a
    ``torchrun`` job at once, before any of them writes there.

    Rank 0 takes the lock and tells the others whether it got it; without a process group the one process takes
    it. When another run holds the folder, every process stops: the process group is ended, rank 0 raises
    ``refusal`` and the others exit with status 1 (rank 0 says why).

    Args:
        folder: the folder to hold.
        lock_name: its lock file, one name per kind of work (``.run.lock``, ``.training.lock``).
        refusal: what rank 0 raises when another run holds the folder.
        on_hold: called on rank 0 once it holds the folder, before the other processes go on (to clear an earlier
            run's files); what it returns is given to every process.

    Returns:
        what ``on_hold`` returned (``None`` without it), on every process.

    Example::

        >>> hold_folder_for_job("out", ".run.lock", RuntimeError("out: another run is writing here"))  # doctest: +SKIP
    """
    rank, world = rank_and_world_size()
    held, result = True, None
    if rank == 0:
        held = hold_folder(folder, lock_name)
        if held and on_hold is not None:
            result = on_hold()
    if world > 1:
        import torch.distributed as dist

        # every process waits for rank 0's lock: none writes into a folder another run holds
        decision = [held, result]
        dist.broadcast_object_list(decision, src=0)
        held, result = decision
    if not held:
        end_process_group()
        if rank == 0:
            raise naming_holder(refusal, folder, lock_name)
        raise SystemExit(1)  # rank 0 says why
    return result


def _require_a_case_per_process(cases: int, listed: str, remedy: str, skipped: int = 0) -> None:
    from ..handlers.errors import SettingError

    processes = rank_and_world_size()[1]
    if cases < processes:
        held = f"{cases} case(s)" + (f" once the data check skipped {skipped} bad one(s)" if skipped else "")
        raise SettingError(
            f"{listed} holds {held}, fewer than the {processes} processes of this job, which each take a "
            f"share of it: {remedy}start fewer processes (torchrun --nproc_per_node)."
        )


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
    from monai.data import DistributedSampler

    # every bundle takes a datalist's "validation" list; only the CT bundles hold cases out of the training list
    # the cases as listed, where the data check skipped bad ones (CheckedCases)
    listed = getattr(getattr(dataset, "data", None), "listed", None)
    _require_a_case_per_process(
        len(dataset),
        "the validation list",
        'put more cases in the datalist\'s "validation" list (or, where a bundle holds them out of the training '
        "list, raise val_fraction and val_max_cases), or ",
        skipped=len(listed) - len(dataset) if listed is not None else 0,
    )
    return DistributedSampler(dataset, even_divisible=False, shuffle=False)


def check_evaluation_shards(dataset: Any) -> None:
    """Stops every process of an evaluation job at once when some process would get no case.

    A process without a case skips its evaluator's run, and the others then wait for it forever in the
    collectives that gather the metrics. Every process checks the same count, so all of them stop together.

    Args:
        dataset: the evaluation's :class:`~monai_unets.data.CaseDataset`, sharded or not (its ``total`` counts
            the cases of every process).

    Raises:
        SettingError: fewer cases than processes; the message gives both counts.

    Example::

        In a multi-GPU evaluation config, after the process group is made:
        ``"$monai_unets.bundles.check_evaluation_shards(@validate#dataset)"``.
    """
    _require_a_case_per_process(dataset.total, "the evaluation", "")


def log_from_rank_zero() -> None:
    """Leaves warnings and errors alone in the log of every process but rank 0 of the job; nothing on rank 0.

    The processes of a job run the same engines, so their information lines (epochs, learning rate, best metric)
    repeated rank 0's, and a process whose validator had not restored the best score called a worse one a new
    best. Called once the process group is made.

    Example::

        >>> log_from_rank_zero()  # one process, or rank 0: its log stays as it is
    """
    if rank_and_world_size()[0] > 0:
        logging.disable(logging.INFO)
