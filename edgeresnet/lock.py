"""One build at a time per output folder: an exclusive, non-blocking file lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from edgeresnet.errors import UsageError

LOCK_NAME = ".edgeresnet.lock"


@contextlib.contextmanager
def output_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the duration; fail at once if another build holds it.

    The folders this call made are removed again where they hold nothing but the lock at the end
    (the run failed before writing anything), so a failed first run leaves no trace."""
    made = [parent for parent in (folder, *folder.parents) if not parent.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise UsageError(
                f"Another edgeresnet build is writing to {folder} (pid {owner}).",
                hint="Wait for it to finish, or pass a different --out.",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            if made and [entry.name for entry in folder.iterdir()] == [LOCK_NAME]:
                path.unlink()  # still held, so no other run locks this file meanwhile
                with contextlib.suppress(OSError):  # not empty: another run has written there
                    for empty in made:
                        empty.rmdir()
    finally:
        handle.close()  # closing releases the lock; a killed process releases it too
