"""``edgeresnet report``: merge the readable results files, keep copies, write the report.

A file that cannot be read is named with its reason and left out, as is a row with a malformed
field; the rest still merges, and the report lists what was left out. Only when no file can be
read is that an error. Copies of the inputs go to ``OUT/inputs/`` so the report can be
regenerated from its own folder. Report and copies are written all together or not at all.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeresnet.errors import ReportError, UsageError
from edgeresnet.publish import merged, results_file
from edgeresnet.report.render import OWNED, render
from edgeresnet.report.rows import run_names
from edgeresnet.report.schema import device_clashes, load_many
from edgeresnet.report.select import Constraints

INPUTS = "inputs"


@dataclass(frozen=True)
class Merged:
    written: list[Path]
    problems: list[ReportError]
    clashes: list[str]  # device names that stand for more than one machine


def load_readable(paths: list[Path]) -> tuple[dict[str, dict[str, Any]], list[ReportError]]:
    """``load_many``, raising ``ReportError`` where none of ``paths`` can be read."""
    documents, problems = load_many(paths)
    if not documents:
        raise ReportError(
            f"None of the {len(paths)} results file(s) could be read: "
            + " ".join(p.message for p in problems),
            hint=problems[0].hint
            if len(problems) == 1 and problems[0].hint
            else "Pass results.json files written by `edgeresnet build`, `edgeresnet bench` "
            "or a bundle's on-device scripts.",
        )
    return documents, problems


def merge_and_write(
    paths: list[Path], out_dir: Path, *, command: str, constraints: Constraints | None = None
) -> Merged:
    """Write the report of every readable file in ``paths``; raise only if none is readable.

    Raises ``OutputError`` (and writes nothing) where ``out_dir`` cannot be written.
    """
    documents, problems = load_readable(paths)
    out_dir = Path(out_dir)
    _check_inputs_folder(out_dir / INPUTS)
    with merged(out_dir, owned=(*OWNED, INPUTS)) as staging:
        names = _copy_inputs(list(documents), staging / INPUTS)
        # Run in the report's folder, wherever it has been copied or committed.
        regenerate = shlex.join(
            [
                "edgeresnet",
                "report",
                *(f"{INPUTS}/{name}" for name in names),
                "--out",
                ".",
                *(constraints.flags() if constraints else []),
            ]
        )
        # Rendered from its own copies: the command that did it is the one in the folder.
        own = (out_dir / INPUTS).resolve()
        from_copies = all(Path(path).resolve().parent == own for path in paths)
        written = render(
            documents,
            staging,
            command=None if from_copies else command,
            constraints=constraints if constraints and constraints.active else None,
            skipped=[p.message for p in problems],
            regenerate=regenerate,
        )
        report = [out_dir / p.relative_to(staging) for p in written]
    copies = [out_dir / INPUTS / name for name in names]
    return Merged(report + copies, problems, device_clashes(documents))


def _check_inputs_folder(folder: Path) -> None:
    """Refuse an ``OUT/inputs/`` that holds anything but results files (an earlier report's
    copies of its inputs): the report replaces the folder as a whole."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for path in sorted(folder.iterdir()):
        if not (path.is_file() and results_file(path)):
            raise UsageError(
                f"{folder} holds {path.name}, which is not an edgeresnet results file, and the "
                f"report replaces {folder} as a whole with copies of its inputs: it would be "
                "deleted.",
                hint=f"Pass an --out without an {INPUTS}/ folder of your own, or move {folder} "
                "away first.",
            )


def _copy_inputs(sources: list[str], folder: Path) -> list[str]:
    """Copy each results file into ``folder`` under a name that says which run it holds.

    a/onnx/results.json and b/onnx/results.json become a-onnx.results.json and
    b-onnx.results.json; a copy read back from ``OUT/inputs/`` keeps its name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for source, run in run_names(sources).items():
        stem = run.replace("/", "-")
        name = f"{stem}.results.json" if Path(source).name.endswith("results.json") else None
        name = name or f"{stem}.json"
        n = 2
        while name in names:
            name = f"{stem}-{n}.json"
            n += 1
        shutil.copyfile(source, folder / name)
        names.append(name)
    return names
