"""``edgeresnet report``: merge the readable results files, keep copies, write the report.

A file that cannot be read is named with its reason and left out; the others still merge, and
the report lists what was left out. Only when no file can be read is that an error. Copies of the
inputs go to ``OUT/inputs/`` so the report can be regenerated from its own folder.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgeresnet.errors import ReportError
from edgeresnet.report.render import write_report
from edgeresnet.report.schema import load_many
from edgeresnet.report.select import Constraints

INPUTS = "inputs"


@dataclass(frozen=True)
class Merged:
    written: list[Path]
    problems: list[ReportError]


def merge_and_write(
    paths: list[Path], out_dir: Path, *, command: str, constraints: Constraints | None = None
) -> Merged:
    """Write the report of every readable file in ``paths``; raise only if none is readable."""
    documents, problems = load_many(paths)
    if not documents:
        raise ReportError(
            f"None of the {len(paths)} results file(s) could be read: "
            + " ".join(p.message for p in problems),
            hint="Pass results.json files written by `edgeresnet build`, `edgeresnet bench` "
            "or a bundle's on-device scripts.",
        )
    copies = _copy_inputs([Path(source) for source in documents], out_dir / INPUTS)
    regenerate = shlex.join(
        [
            "edgeresnet",
            "report",
            *map(str, copies),
            "--out",
            str(out_dir),
            *(constraints.flags() if constraints else []),
        ]
    )
    written = write_report(
        documents,
        out_dir,
        command=command,
        constraints=constraints if constraints and constraints.active else None,
        skipped=[p.message for p in problems],
        regenerate=regenerate,
    )
    return Merged(written + copies, problems)


def _copy_inputs(sources: list[Path], folder: Path) -> list[Path]:
    """Copy each results file into ``folder`` under a name that says where it came from."""
    folder.mkdir(parents=True, exist_ok=True)
    copies: list[Path] = []
    for source in sources:
        if source.resolve().parent == folder.resolve():
            copies.append(source)  # regenerating from the copies themselves
            continue
        parent = source.resolve().parent.name
        name = f"{parent}.{source.name}" if source.name == "results.json" else source.name
        target = folder / name
        n = 2
        while target in copies:
            target = folder / f"{Path(name).stem}-{n}.json"
            n += 1
        shutil.copyfile(source, target)
        copies.append(target)
    return copies
