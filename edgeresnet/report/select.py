"""Pick variants under deployment constraints, and say why every other one was left out.

A constraint on something a row did not measure excludes the row: a missing number never passes.
An accuracy drop is measured against the FP32 row of the row's own run (results file, device,
target), the baseline the report's "x FP32" columns divide by; a pruned model's, against the
dense model's FP32 (``fp32_rows``).
Only edgeresnet artifacts are candidates; peer rows (what a user would build by hand) are
references for the peer table, not choices.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeresnet.report.rows import (
    FROM_BUILD,
    Row,
    Runs,
    fp32_rows,
    rate,
    row_name,
    runs,
    unmeasured_top1,
)

RANKING = (
    "fastest batch-1 p50 latency first, then smaller artifact, then higher top-1 "
    "(rows with a measured top-1 first), then higher agreement with FP32"
)


@dataclass(frozen=True)
class Constraints:
    """Limits a deployment sets; None means no limit on that quantity."""

    max_latency_ms: float | None = None
    min_top1: float | None = None
    max_size_mb: float | None = None
    min_fps: float | None = None
    max_drop: float | None = None  # top-1 points below the FP32 of the row's own run

    @property
    def active(self) -> bool:
        return any(v is not None for v in self.__dict__.values())

    def flags(self) -> list[str]:
        """The command-line options that set these constraints."""
        names = {
            "max_latency_ms": "--max-latency-ms",
            "min_top1": "--min-top1",
            "max_size_mb": "--max-size-mb",
            "min_fps": "--min-fps",
            "max_drop": "--max-drop",
        }
        return [
            part
            for key, flag in names.items()
            if getattr(self, key) is not None
            for part in (flag, _exact(getattr(self, key)))
        ]

    def describe(self) -> list[str]:
        text = []
        if self.max_latency_ms is not None:
            text.append(f"p50 latency (batch 1) <= {_exact(self.max_latency_ms)} ms")
        if self.min_top1 is not None:
            text.append(f"top-1 >= {_exact(self.min_top1)} %")
        if self.max_size_mb is not None:
            text.append(f"size <= {_exact(self.max_size_mb)} MB")
        if self.min_fps is not None:
            text.append(f"throughput >= {_exact(self.min_fps)} img/s (at the benchmarked batch)")
        if self.max_drop is not None:
            text.append(f"top-1 drop against its run's FP32 <= {_exact(self.max_drop)} points")
        return text


@dataclass(frozen=True)
class Verdict:
    row: Row
    reasons: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class Selection:
    constraints: Constraints
    chosen: list[Row]  # ranked, best first
    excluded: list[Verdict]
    references: int = 0  # peer rows and re-timed artifacts: never candidates


def select(rows: list[Row], constraints: Constraints) -> Selection:
    """The candidate rows meeting every constraint, ranked by ``RANKING``, and the rest with why."""
    fp32 = fp32_rows(rows)
    verdicts = [Verdict(r, reasons(r, constraints, fp32.get(r.run))) for r in rows if r.candidate]
    chosen = sorted((v.row for v in verdicts if v.passed), key=_rank)
    references = sum(not r.candidate for r in rows)
    return Selection(constraints, chosen, [v for v in verdicts if not v.passed], references)


def reasons(row: Row, c: Constraints, fp32: Row | None = None) -> tuple[str, ...]:
    """Every constraint ``row`` fails, in words a reader can check against the tables.

    ``fp32`` is the FP32 row of ``row``'s run, which ``--max-drop`` measures the drop against.
    """
    out = []
    unmeasured = f"top-1 not measured ({unmeasured_top1(row)})"
    if c.max_latency_ms is not None:
        if row.p50_ms is None:
            out.append(f"p50 not measured{_why_unmeasured(row)}")
        elif row.p50_ms > c.max_latency_ms:
            shown = _past(row.p50_ms, c.max_latency_ms, above=True)
            out.append(f"p50 {shown} ms > {_exact(c.max_latency_ms)} ms")
    if c.min_top1 is not None:
        if row.top1 is None:
            out.append(unmeasured)
        elif row.top1 < c.min_top1:
            shown = _past(row.top1, c.min_top1, above=False, digits=2)
            out.append(f"top-1 {shown} % < {_exact(c.min_top1)} %")
    if c.max_size_mb is not None:
        if row.size_mb is None:
            out.append("size unknown")
        elif row.size_mb > c.max_size_mb:
            shown = _past(row.size_mb, c.max_size_mb, above=True)
            out.append(f"size {shown} MB > {_exact(c.max_size_mb)} MB")
    if c.min_fps is not None:
        if row.throughput is None:
            out.append(f"throughput not measured{_why_unmeasured(row)}")
        elif row.throughput < c.min_fps:
            shown = _past(row.throughput, c.min_fps, above=False, text=rate(row.throughput))
            out.append(
                f"throughput {shown} img/s (batch {row.throughput_batch}) "
                f"< {_exact(c.min_fps)} img/s"
            )
    if c.max_drop is not None:
        if row.top1 is None:
            if unmeasured not in out:  # --min-top1 said so already
                out.append(unmeasured)
        elif fp32 is None:
            out.append("top-1 drop unknown (its run has no FP32 row)")
        elif fp32.pruned:
            out.append(
                "top-1 drop unknown (a pruned model rebuilt from its channel spec: the dense "
                "model's FP32 on this device and target is not among the inputs, and its own "
                "FP32 is pruned too)"
            )
        elif fp32.top1 is None:
            out.append("top-1 drop unknown (its run's FP32 top-1 not measured)")
        elif (drop := _drop(fp32.top1, row.top1)) > c.max_drop:
            shown = _past(drop, c.max_drop, above=True)
            # The two top-1s with as many decimals as the drop, so that their difference is it.
            digits = max(2, len(shown.partition(".")[2]))
            out.append(
                f"top-1 drop {shown} points > {_exact(c.max_drop)} points "
                f"(FP32 {fp32.top1:.{digits}f} %, this {row.top1:.{digits}f} %)"
            )
    return tuple(out)


def _drop(reference: float, value: float) -> float:
    """Top-1 points lost against ``reference``. Rounded to 9 decimals: the figures are percentages
    with few decimals, and 76.1 - 75.6 must be the 0.5 a reader sees, not 0.500000000000007."""
    return round(reference - value, 9)


def _past(
    value: float, limit: float, *, above: bool, digits: int = 1, text: str | None = None
) -> str:
    """``value`` as ``text`` (the tables' figure) or with ``digits`` decimals, or with as many
    more as it takes to show it on its side of ``limit``: 74.996 against a floor of 75 is not
    "75.00 < 75", nor 20.04 against a ceiling of 20 "20.0 > 20"."""
    if above and abs(value) >= 1e9 and value > 10 * limit:  # 1e308 in three digits, not 309
        return f"{value:.3g}"
    shown = ([text] if text else []) + [f"{value:.{more}f}" for more in range(digits, 10)]
    past = (lambda t: float(t) > limit) if above else (lambda t: float(t) < limit)
    return next((t for t in shown if past(t)), repr(value))


def _exact(value: float) -> str:
    """A limit as typed back on a command line, without rounding: 20.01306, 1234567."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def format_text(selection: Selection) -> str:
    """The selection as a plain-text table for a terminal.

    Where the rows come from more than one run of a device and target, or from more than one
    model, a "model / run" column (e.g. "resnet18, a/onnx") tells them apart.
    """
    named = runs([*selection.chosen, *(v.row for v in selection.excluded)])
    lines = ["constraints: " + ("; ".join(selection.constraints.describe()) or "none")]
    lines.append(f"ranking: {RANKING}")
    header = ("rank", "device", "target", "variant", "precision", "p50 ms", "size MB")
    header += ("top-1 %", "top-5 %")
    header += ("img/s",) + (("model / run",) if named.shown else ())
    table = [header] + [
        (
            str(i),
            r.device,
            r.target,
            r.variant,
            r.precision_run,
            _fmt(r.p50_ms, ".2f"),
            _fmt(r.size_mb, ".1f"),
            _accuracy(r.top1, r),
            _accuracy(r.top5, r),
            rate(r.throughput),
            *((named.of(r),) if named.shown else ()),
        )
        for i, r in enumerate(selection.chosen, 1)
    ]
    if selection.chosen:
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines += [
            "",
            *(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                for row in table
            ),
        ]
        carried = [r for r in selection.chosen if r.accuracy_from and r.top1 is not None]
        lines += [
            f"{FROM_BUILD} {row_name(r, named)}: top-1 from {r.accuracy_from}" for r in carried
        ]
        lines += _without_top1(selection.chosen, named)
    elif not selection.excluded and selection.references:
        lines += [
            "",
            "no candidates: these files hold no edgeresnet variants of their own (peer rows, and "
            "artifacts re-timed in a peer run, are references for comparison, never choices)",
        ]
    elif not selection.excluded:
        lines += ["", "no candidates: these files hold no rows that could be read"]
    else:
        lines += ["", "no variant meets every constraint"]
    if selection.excluded:
        lines += ["", "excluded:"]
        for v in selection.excluded:
            lines.append(f"  {row_name(v.row, named)}: {'; '.join(v.reasons)}")
    return "\n".join(lines)


def _without_top1(chosen: list[Row], named: Runs) -> list[str]:
    """Why the table's "-" top-1s are not numbers: one line per reason."""
    reasons: dict[str, list[Row]] = {}
    for row in chosen:
        if row.top1 is None:
            reasons.setdefault(unmeasured_top1(row), []).append(row)
    if len(reasons) == 1 and len(next(iter(reasons.values()))) == len(chosen):
        return [f"top-1 not measured in any row: {next(iter(reasons))}"]
    return [
        f"top-1 not measured for {', '.join(row_name(r, named) for r in rows)}: {reason}"
        for reason, rows in reasons.items()
    ]


def _rank(row: Row) -> tuple[float, float, bool, float, float]:
    inf = float("inf")
    return (
        inf if row.p50_ms is None else row.p50_ms,
        inf if row.size_mb is None else row.size_mb,
        row.top1 is None,
        -(row.top1 or 0.0),
        -(row.agreement or 0.0),
    )


def _why_unmeasured(row: Row) -> str:
    note = next((n for n in row.notes if n.startswith("not benchmarked")), None)
    return f" ({note})" if note else ""


def _accuracy(value: float | None, row: Row) -> str:
    """A top-1 or top-5 for the table, marked where it is the build's (``FROM_BUILD``)."""
    mark = f" {FROM_BUILD}" if row.accuracy_from and value is not None else ""
    return _fmt(value, ".2f") + mark


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
