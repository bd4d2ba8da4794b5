"""One build at a time per output folder: an exclusive, non-blocking file lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

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
            raise _held(folder, handle) from None
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


def check_unlocked(folder: Path) -> None:
    """Fail at once where another build holds ``folder``'s lock, before any input is checked
    (which can take minutes: hashing weights, reading image folders); creates nothing. A build
    that takes the lock between this check and ``output_lock`` is still refused there."""
    try:
        handle = open(folder / LOCK_NAME)  # noqa: SIM115 - closed below, which releases the probe
    except OSError:  # no lock file, or none readable: output_lock decides
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _held(folder, handle) from None


def _held(folder: Path, handle: IO[str]) -> UsageError:
    handle.seek(0)
    owner = handle.read().strip() or "unknown"
    return UsageError(
        f"Another edgeresnet build is writing to {folder} (pid {owner}).",
        hint="Wait for it to finish, or pass a different --out.",
    )
