"""Two-process ``torch.distributed`` jobs (gloo, CPU) for the tests of code that runs under ``torchrun``."""

from __future__ import annotations

import datetime
import socket
from collections.abc import Callable
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp

# a collective that one process never reaches fails the test after this long instead of hanging it
COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=60)


def _process(rank: int, port: int, function: Callable[..., None], args: tuple[Any, ...]) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2, timeout=COLLECTIVE_TIMEOUT
    )
    try:
        function(rank, *args)
    finally:
        dist.destroy_process_group()


def run_in_two_processes(function: Callable[..., None], *args: Any) -> None:
    """Runs ``function(rank, *args)`` in two spawned processes of one process group and waits for both.

    ``function`` must be importable (a module-level function of a test module); an exception in either process
    fails the call.

    Example::

        >>> run_in_two_processes(_write_rank, str(tmp_path))  # doctest: +SKIP
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_process, args=(port, function, args), nprocs=2, join=True)
