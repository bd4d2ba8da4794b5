"""Publishing a finished output folder: all at once, with the modes the user's umask gives.

Builds and peer runs write into a private temporary folder beside their output (``mkdtemp``
makes it 0700, ``mkstemp`` files 0600) and replace the output with it in two renames, so a
reader sees the old folder or the new one, never half of either.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

from edgeresnet.errors import OutputError


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


def check_out(out: Path, what: str) -> None:
    """Refuse an output folder that cannot be made, before ``what`` (the job) does any work."""
    if out.exists() and not out.is_dir():
        raise OutputError(
            f"--out {out} is a file, not a folder: {what} writes a folder there.",
            hint="Pass a folder path for --out (it is created if missing).",
        )
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(
            f"Cannot write under {out}: {parent} is a file, not a folder.",
            hint="Pass an --out whose parent folders are folders, or move that file away.",
        )
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(
            f"Cannot write under {out}: {parent} is not writable.",
            hint="Check the folder's permissions, or pass another --out.",
        )


def output_error(
    exc: OSError,
    out: Path,
    what: str,
    *,
    space_hint: str = "Free disk space or pass --out on another disk.",
) -> OutputError:
    """``exc``, met while ``what`` (the job) wrote under ``out``, in words with a hint."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return OutputError(
            f"No space left on the device while writing under {out}{where}: {what} stopped, "
            "nothing was written there and the previous output, if any, was left as it was.",
            hint=space_hint,
        )
    return OutputError(
        f"Cannot write under {out}: {exc.strerror or exc}{where}. Nothing was published there; "
        "the previous output, if any, was left as it was.",
        hint="Check the folder's permissions and free space, or pass another --out.",
    )
