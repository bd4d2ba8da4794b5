"""Publishing a finished output folder: all at once, with the modes the user's umask gives.

Builds and peer runs write into a private temporary folder beside their output (``mkdtemp``
makes it 0700, ``mkstemp`` files 0600) and replace the output with it in two renames, so a
reader sees the old folder or the new one, never half of either.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path


def umask() -> int:
    """The process's umask (reading it means setting it: it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def shareable(root: Path) -> None:
    """Give ``root`` and everything in it the modes a new file of the user's gets: a bundle is
    copied to devices and shared, and ``scp -r`` keeps a temporary folder's private modes."""
    mask = umask()
    for path in [root, *root.rglob("*")]:
        runnable = path.is_dir() or path.stat().st_mode & 0o111  # folders, shell scripts
        path.chmod((0o777 if runnable else 0o666) & ~mask)


def replace_folder(staging: Path, final: Path) -> None:
    """Replace ``final`` with ``staging``; if the second rename fails, ``final`` is put back."""
    shareable(staging)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(final, old)
    try:
        os.replace(staging, final)
    except OSError:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_stale(out: Path) -> None:
    """Remove the staging and replaced folders that killed runs left in ``out``; a run killed
    between its two renames left its previous output only as ``.NAME.old-...``: put back.

    Call it only while holding ``out``'s lock, so no other run's folders are touched.
    """
    for path in out.glob(".*"):
        if not path.is_dir():
            continue
        if ".old-" in path.name:
            previous = out / path.name[1:].partition(".old-")[0]
            if not previous.exists():
                os.replace(path, previous)
                continue
        if ".staging-" in path.name or ".old-" in path.name:
            shutil.rmtree(path, ignore_errors=True)
