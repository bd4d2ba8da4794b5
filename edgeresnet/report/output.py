"""Writing a report folder all or nothing.

Every file of a report goes to a staging folder beside the output first and is moved into place
only when all of them were written, so a full disk, a missing permission or an ``--out`` that
runs through a file leaves the output folder as it was. Every ``OSError`` becomes an
:class:`~edgeresnet.errors.OutputError` that names the folder and says what to do.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeresnet.errors import OutputError
from edgeresnet.publish import output_error, umask

_HINT = "Pass --out a folder that can be written (it may not exist yet)."


@contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """A staging folder for the files of ``out_dir``: moved there only when the block succeeds."""
    out_dir = Path(out_dir)
    anchor = _writable_anchor(out_dir)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-report-", dir=anchor))
        staging.chmod(0o777 & ~umask())  # mkdtemp's 0700 would stay on a new ``out_dir``
    except OSError as exc:
        raise output_error(exc, out_dir, "the report") from None
    try:
        yield staging
        _publish(staging, out_dir)
    except OSError as exc:
        raise output_error(exc, out_dir, "the report") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _writable_anchor(out_dir: Path) -> Path:
    """The nearest existing folder at or above ``out_dir``'s parent; no file may be in the way."""
    for path in (out_dir, *out_dir.parents):
        if not path.exists() and not path.is_symlink():
            continue
        if not path.is_dir():
            blocker = "it is" if path == out_dir else f"{path} is"
            raise OutputError(
                f"Cannot write the report to {out_dir}: {blocker} a file, not a folder; "
                "nothing was written.",
                hint=f"{_HINT} Move the file away or choose another path.",
            )
        return path if path != out_dir else out_dir.parent
    return Path.cwd()


def _publish(staging: Path, out_dir: Path) -> None:
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
    for path in entries:
        dest = out_dir / path.relative_to(staging)
        if path.is_dir():
            dest.mkdir(exist_ok=True)
        else:
            shutil.move(str(path), str(dest))
