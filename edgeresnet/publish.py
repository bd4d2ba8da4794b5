"""Publishing output all or nothing, with the modes the user's umask gives.

Everything is written into a private staging folder beside the output first (``mkdtemp``
makes it 0700, ``mkstemp`` files 0600), then published in one of two ways:

- ``replaced``: builds and peer runs replace their output folder with it in two renames, so a
  reader sees the old folder or the new one, never half of either;
- ``merged``: a report moves its files into ``--out``, replacing files of the same name and
  keeping the others, once every file was written.

A full disk, a missing permission or an ``--out`` that runs through a file leaves the output as
it was; ``output_error`` puts the ``OSError`` in words.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgeresnet.errors import OutputError, UsageError
from edgeresnet.ondevice.common import SCHEMA

RESULTS = "results.json"  # what a build or peer run writes in its folder


@contextmanager
def replaced(final: Path) -> Iterator[Path]:
    """A staging folder that replaces ``final`` when the block succeeds (``OSError`` passes
    through for the caller to put in words with ``output_error``)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=final.parent))
    try:
        yield staging
        replace_folder(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def work_folder(out: Path, name: str) -> Iterator[Path]:
    """A scratch folder under ``out`` that holds every temporary file of this process, and of
    the processes it starts, while the block runs: edgeresnet's own and those of the libraries
    it calls (ONNX Runtime's quantizer, NNCF). It is named as staging, so a run killed with -9
    leaves it for the next run's ``clean_stale`` rather than in the system's temporary folder."""
    with tempfile.TemporaryDirectory(prefix=f".{name}.work.staging-", dir=out) as work:
        # torch._dynamo, on import, makes its cache folder in the temporary folder and names it
        # in TORCHINDUCTOR_CACHE_DIR, which must not outlive the work folder.
        saved = {key: os.environ.get(key) for key in ("TMPDIR", "TORCHINDUCTOR_CACHE_DIR")}
        saved_tempdir = tempfile.tempdir
        tempfile.tempdir = os.environ["TMPDIR"] = work
        try:
            yield Path(work)
        finally:
            tempfile.tempdir = saved_tempdir
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextmanager
def merged(
    out_dir: Path, what: str = "the report", *, owned: tuple[str, ...] = ()
) -> Iterator[Path]:
    """A staging folder whose files move into ``out_dir`` when the block succeeds, replacing
    files of the same name and keeping the others, except the ``owned`` names (files or
    folders the writer makes whole each time), which go where the new output lacks them;
    every ``OSError`` is an ``OutputError``."""
    out_dir = Path(out_dir)
    anchor = _writable_anchor(out_dir, what)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-report-", dir=anchor))
        staging.chmod(0o777 & ~umask())  # mkdtemp's 0700 would stay on a new ``out_dir``
    except OSError as exc:
        raise output_error(exc, out_dir, what) from None
    try:
        yield staging
        _merge(staging, out_dir, owned)
    except OSError as exc:
        raise output_error(exc, out_dir, what) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _writable_anchor(out_dir: Path, what: str) -> Path:
    """The nearest existing folder at or above ``out_dir``'s parent; no file may be in the way."""
    for path in (out_dir, *out_dir.parents):
        if not path.exists() and not path.is_symlink():
            continue
        if not path.is_dir():
            blocker = "it is" if path == out_dir else f"{path} is"
            raise OutputError(
                f"Cannot write {what} to {out_dir}: {blocker} a file, not a folder; "
                "nothing was written.",
                hint="Pass --out a folder that can be written (it may not exist yet). Move the "
                "file away or choose another path.",
            )
        return path if path != out_dir else out_dir.parent
    return Path.cwd()


def _merge(staging: Path, out_dir: Path, owned: tuple[str, ...] = ()) -> None:
    """Move the staged files into ``out_dir``, replacing files of the same name, keeping others.

    Everything that could stop the move half way (a folder where a file goes, or the reverse) is
    checked before the first file moves.
    """
    if not out_dir.exists():
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(out_dir))
        return
    entries = sorted(staging.rglob("*"))  # a folder sorts before what it holds
    for path in entries:
        dest = out_dir / path.relative_to(staging)
        if path.is_dir() and dest.exists() and not dest.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of a folder", str(dest))
        if not path.is_dir() and dest.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder is in the way of a file", str(dest))
    for name in owned:  # what the last run wrote and this one did not: stale
        old = out_dir / name
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() and not (staging / name).exists():
            old.unlink()
    for path in entries:
        dest = out_dir / path.relative_to(staging)
        if path.is_dir():
            dest.mkdir(exist_ok=True)
        else:
            shutil.move(str(path), str(dest))


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


def clean_stale(out: Path, name: str | None = None) -> None:
    """Remove the staging and replaced folders that killed runs left in ``out``; a run killed
    between its two renames left its previous output only as ``.NAME.old-...``: put back.
    ``name`` limits the sweep to the folders of ``out/name``, where ``out`` is not edgeresnet's
    own (the folder that holds a peer run's ``--out``).

    Call it only while holding ``out``'s lock, so no other run's folders are touched.
    """
    for path in out.glob(".*" if name is None else f".{glob.escape(name)}.*"):
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


def results_file(path: Path) -> dict[str, Any] | None:
    """``path``'s document if it is an edgeresnet results file (by its schema), else None."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) and document.get("schema") == SCHEMA else None


def check_replaceable(
    folder: Path, tool: str, what: str, inputs: Iterable[tuple[str, str | Path | None]] = ()
) -> None:
    """Refuse, before any work, to replace ``folder`` as a whole where that would delete what
    the user has: files that no earlier run of ``tool`` wrote (its ``results.json`` names
    ``tool``), or one of the run's ``inputs`` (``(option, path)``) lying in it."""
    root = folder.resolve()
    for option, path in inputs:
        if path is not None and Path(path).exists() and Path(path).resolve().is_relative_to(root):
            raise UsageError(
                f"{option} {path} lies inside {folder}, which {what} replaces as a whole: it "
                "would be deleted.",
                hint=f"Move it out of {folder} first, or pass another --out.",
            )
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    document = results_file(folder / RESULTS) or {}
    producer = document.get("producer")
    if isinstance(producer, dict) and producer.get("tool") == tool:
        return
    raise UsageError(
        f"{folder} holds files that `{tool}` did not write, and {what} replaces that folder as "
        "a whole: they would be deleted.",
        hint=f"Pass an --out where {folder.name}/ is new, or move {folder} away first.",
    )


def check_not_inside(out: Path, folders: Iterable[tuple[str, Path | None]], what: str) -> None:
    """Refuse an ``out`` inside a folder of input images: the next run would read it as images."""
    for option, folder in folders:
        if folder is not None and out.resolve().is_relative_to(Path(folder).resolve()):
            raise UsageError(
                f"--out {out} lies inside {option} {folder}: the next run would read "
                "this run's output as images.",
                hint=f"Write {what} outside {folder}.",
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
