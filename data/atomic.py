"""Files written whole or not at all: a temporary file in the target's folder, renamed over the target."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write"]

# mkstemp makes owner-only files; a written file gets the permissions of an ordinary open() instead
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Opens a temporary file beside ``path``; on a clean exit it is flushed to disk and renamed to ``path``.

    After a kill, a full disk or an exception, ``path`` holds either its previous content or the new one,
    never a partial file; the temporary file (a hidden ``.<name>.*.tmp``) is removed on an exception.

    Args:
        path: the final file; its folder is created when missing.
        mode: ``"wb"`` or ``"w"``.

    Example::

        >>> with atomic_write("models/model.pt") as f:  # doctest: +SKIP
        ...     torch.save(network.state_dict(), f)
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes a new file: mode 'wb' or 'w', not {mode!r}.")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
