"""Content-addressed cache of finished build stages, so an interrupted build resumes.

A stage's key is the sha256 of everything that decides its output (model and weights, data
hashes, options, tool versions). Every file is written under a temporary name and renamed when
complete. A stage that leaves files stores them as a folder, the folder's checksums and then its
record; the record marks the entry complete, so a build killed between the two leaves a folder
that is not an entry and is replaced by the next run. An entry damaged afterwards (a file cut
short or changed, unreadable JSON or array) counts as missing: its stage runs again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeresnet.ondevice.common import sha256_file
from edgeresnet.progress import warn


def stage_key(stage: str, **parts: Any) -> str:
    """A stable key: sha256 of the stage name and its inputs as canonical JSON."""
    blob = json.dumps({"stage": stage, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


class StageCache:
    """Finished stages under ``root``; with ``reuse=False`` every stage runs and is re-stored."""

    def __init__(self, root: Path, *, reuse: bool = True) -> None:
        self.root = root
        self.reuse = reuse
        self._stored: set[str] = set()  # keys this object stored: this run's own stages

    def from_earlier_run(self, key: str) -> bool:
        """Whether ``key``'s entry was stored before this run (a resumed stage), not by it: a
        second artifact of one file takes the first's timing, and that resumes nothing."""
        return key not in self._stored

    def entry(self, key: str) -> tuple[Path, Any] | None:
        """The cached folder of ``key`` and its record, or None unless both are complete and
        every file matches the checksums stored with it."""
        path = self.root / key
        record = self.json(key)
        if record is None or not path.is_dir():
            return None
        if self.json(f"{key}.files") != _checksums(path):
            warn(f"the cached stage {path} is damaged or incomplete; running it again")
            return None
        return path, record

    def store_entry(self, key: str, source: Path, record: Any) -> Path:
        """Copy ``source`` into the cache as ``key``, then its record; returns the folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        final = self.root / key
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        self.store_json(f"{key}.files", _checksums(final))
        self.store_json(key, record)
        return final

    def json(self, key: str) -> Any | None:
        path = self._file(key, ".json")
        if path is None:
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            warn(f"the cached record {path} is unreadable; running its stage again")
            return None

    def store_json(self, key: str, value: Any) -> None:
        self._write(key, ".json", json.dumps(value, sort_keys=True).encode("utf-8"))

    def array(self, key: str) -> np.ndarray | None:
        path = self._file(key, ".npy")
        if path is None:
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            warn(f"the cached array {path} is unreadable; running its stage again")
            return None

    def store_array(self, key: str, value: np.ndarray) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".npy", dir=self.root)
        with os.fdopen(handle, "wb") as out:
            np.save(out, value, allow_pickle=False)
        os.replace(tmp, self.root / f"{key}.npy")
        self._stored.add(key)

    def _file(self, key: str, suffix: str) -> Path | None:
        path = self.root / f"{key}{suffix}"
        return path if self.reuse and path.is_file() else None

    def _write(self, key: str, suffix: str, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{key}.", dir=self.root)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, self.root / f"{key}{suffix}")
        self._stored.add(key)


def _checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
