"""Two-process ``torch.distributed`` jobs (gloo, CPU) for the tests of code that runs under ``torchrun``."""

from __future__ import annotations

import datetime
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp

# a collective that one process never reaches fails the test after this long instead of hanging it
COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=60)


def free_port() -> int:
    """A TCP port of this machine that is free now: for a process group's ``init_method``, or a test's server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    mp.spawn(_process, args=(free_port(), function, args), nprocs=2, join=True)


def run_script_in_two_processes(script: str) -> tuple[list[int], list[str]]:
    """Runs the Python ``script`` in two processes of one process group (gloo), each its own interpreter, as torchrun
    starts them; ``rank`` and ``dist`` (``torch.distributed``) are defined before it.

    Returns:
        the exit statuses and the standard outputs of rank 0 and rank 1.

    Example::

        >>> run_script_in_two_processes("print(rank)")  # doctest: +SKIP
        ([0, 0], ['0\\n', '1\\n'])
    """
    group = (
        "import sys, torch.distributed as dist; rank = int(sys.argv[1]); "
        f"dist.init_process_group('gloo', init_method='tcp://127.0.0.1:{free_port()}', rank=rank, world_size=2)\n"
    )
    jobs = [
        subprocess.Popen([sys.executable, "-c", group + script, str(rank)], stdout=subprocess.PIPE, text=True)
        for rank in (0, 1)
    ]
    outputs = [job.communicate(timeout=120)[0] for job in jobs]
    return [job.returncode for job in jobs], outputs
