"""Command line: parses arguments and calls one library function per command.

Heavy imports (torch, onnxruntime) happen inside the command functions so ``--help`` is instant.
This is the only place that exits the process.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from edgeresnet import __version__
from edgeresnet.errors import EdgeResnetError
from edgeresnet.ondevice import common

if TYPE_CHECKING:
    from edgeresnet.report.select import Constraints


def _build(args: argparse.Namespace) -> int:
    from edgeresnet.pipeline import BuildRequest, build
    from edgeresnet.progress import console

    out = build(
        BuildRequest(
            target=args.target,
            model=args.model,
            weights=args.weights,
            calib=args.calib,
            calib_size=args.calib_size,
            eval=args.eval,
            eval_size=args.eval_size,
            input_size=args.input_size,
            threads=args.threads,
            seed=args.seed,
            out=args.out,
            device_name=args.device_name,
            prune=tuple(args.prune),
            prune_importance=args.prune_importance,
            prune_round_to=args.prune_round_to,
            prune_stem_round_to=args.prune_stem_round_to,
            bn_recalibrate=args.bn_recalibrate,
            distill_steps=args.distill_steps,
            train=args.train,
            fresh=args.fresh,
            calib_method=args.calib_method,
            percentile=args.percentile,
            max_drop=args.max_drop,
            sensitivity_images=args.sensitivity_images,
            rounds=args.rounds,
            pairs=args.pairs,
            command=common.command_line("edgeresnet"),
        )
    )
    console.print(f"[green]built[/green] {out}  (report: {out / 'report.md'})")
    return 0


def _targets(args: argparse.Namespace) -> int:
    from edgeresnet.config import available_targets, load_target

    lines = [("target", "backend", "device", "precisions", "description")]
    for name, path in available_targets().items():
        profile = load_target(str(path))
        precisions = ",".join(profile.precisions)
        lines.append((name, profile.backend, profile.device, precisions, profile.description))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    for *cells, description in lines:
        print("  ".join([*(c.ljust(w) for c, w in zip(cells, widths, strict=True)), description]))
    return 0


def _report(args: argparse.Namespace) -> int:
    from edgeresnet.progress import console, warn
    from edgeresnet.report.merge import merge_and_write

    merged = merge_and_write(
        args.results,
        args.out,
        command=common.command_line("edgeresnet"),
        constraints=_constraints(args),
    )
    for problem in merged.problems:
        warn(f"left out: {problem.message}")
    for clash in merged.clashes:
        warn(clash)
    for path in merged.written:
        console.print(f"wrote {path}")
    return 0


def _select(args: argparse.Namespace) -> int:
    from edgeresnet.progress import console, warn
    from edgeresnet.report import all_rows
    from edgeresnet.report.merge import load_readable, merge_and_write
    from edgeresnet.report.schema import device_clashes
    from edgeresnet.report.select import format_text, select

    documents, problems = load_readable(args.results)
    for problem in problems:
        warn(f"left out: {problem.message}")
    for clash in device_clashes(documents):
        warn(clash)
    selection = select(all_rows(documents), _constraints(args))
    print(format_text(selection))
    if args.out:
        merged = merge_and_write(
            args.results,
            args.out,
            command=common.command_line("edgeresnet"),
            constraints=_constraints(args),
        )
        console.print(f"wrote {merged.written[0].parent}/report.md and report.html")
    # 3 = read fine but nothing fits, so scripts can tell it from an error (1) or bad usage (2).
    return 0 if selection.chosen else 3


def _bench(args: argparse.Namespace) -> int:
    from edgeresnet.config import BenchmarkOptions
    from edgeresnet.errors import UsageError
    from edgeresnet.peers.run import PeerRequest, compare_peers
    from edgeresnet.progress import console

    if not args.compare_peers:
        raise UsageError(
            "`edgeresnet bench` measures the by-hand peers; it needs --compare-peers.",
            hint="edgeresnet bench --compare-peers --weights random --out build/peers",
        )
    out = compare_peers(
        PeerRequest(
            model=args.model,
            weights=args.weights,
            calib=args.calib,
            calib_size=args.calib_size,
            input_size=args.input_size,
            threads=args.threads,
            seed=args.seed,
            out=args.out,
            device_name=args.device_name,
            against=tuple(args.against),
            benchmark=BenchmarkOptions(
                batch_sizes=args.batch_sizes,
                warmup=args.warmup,
                min_iterations=args.min_iterations,
                min_seconds=args.min_seconds,
            ),
            rounds=args.rounds,
            command=common.command_line("edgeresnet"),
        )
    )
    console.print(f"[green]measured[/green] {out / 'results.json'}  (report: {out / 'report.md'})")
    return 0


def _constraints(args: argparse.Namespace) -> Constraints:
    from edgeresnet.report.select import Constraints

    return Constraints(
        max_latency_ms=args.max_latency_ms,
        min_top1=args.min_top1,
        max_size_mb=args.max_size_mb,
        min_fps=args.min_fps,
        max_drop=args.max_drop,
    )


def _verify(args: argparse.Namespace) -> int:
    from edgeresnet.bundle import verify_bundle

    manifest = verify_bundle(args.bundle)
    files = manifest["files"]
    total = sum(entry["bytes"] for entry in files)
    print(
        f"{args.bundle}: {len(files)} files, {total / 1e6:.1f} MB, all match manifest.json "
        f"(edgeresnet {manifest.get('edgeresnet_version', '?')}, target "
        f"{manifest.get('target', {}).get('name', '?')})"
    )
    for entry in files:
        print(f"  ok  {entry['sha256'][:16]}  {entry['bytes']:>12}  {entry['path']}")
    return 0


def _ratios(text: str) -> list[float]:
    try:
        ratios = [float(part) for part in text.split(",")]  # "0.3,,0.5" is a typo: refused
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected ratios like 0.3 or 0,0.2,0.5, got {text!r}"
        ) from None
    bad = [r for r in ratios if not 0.0 <= r < 1.0]
    if bad or not ratios:
        raise argparse.ArgumentTypeError(
            f"pruning ratios must be in [0, 1) (the share of channels removed), got {text!r}"
        )
    return ratios


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``low`` (and at most ``high``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low} to {high}, got {text}")
        if value < low:
            least = f"at least {low}" if low else "0 or more"
            raise argparse.ArgumentTypeError(f"must be {least}, got {value}")
        return value

    return parse


_positive = _whole(1)
_non_negative_int = _whole(0)
_seed = _whole(0, 2**32 - 1)


def _threads(text: str) -> int:
    """0 (the default) up to this machine's logical cores: more only queue for the cores."""
    value = _non_negative_int(text)
    cores = os.cpu_count() or 1
    if value > cores:
        raise argparse.ArgumentTypeError(
            f"must be 0 (the default) to {cores}, this machine's logical cores, got {value}"
        )
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):  # NaN fails every comparison
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def _percent(text: str) -> float:
    value = _non_negative(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"is a percentage, at most 100, got {text}")
    return value


def _add_constraints(parser: argparse.ArgumentParser) -> None:
    """Deployment limits shared by `report` and `select`; a row missing a number never passes."""
    g = parser.add_argument_group(
        "constraints (a selection section lists the variants meeting all of them, "
        "fastest first, and why each other one is excluded)"
    )
    g.add_argument("--max-latency-ms", type=_non_negative, help="batch-1 p50 latency limit")
    g.add_argument("--min-top1", type=_percent, help="least top-1 %% (rows without top-1 fail)")
    g.add_argument("--max-size-mb", type=_non_negative, help="artifact size limit (10^6 bytes)")
    g.add_argument(
        "--min-fps", type=_non_negative, help="least throughput, img/s at the benchmarked batch"
    )
    g.add_argument(
        "--max-drop",
        type=_percent,
        metavar="POINTS",
        help="most top-1 points below the FP32 row of the variant's own run "
        "(rows without top-1 fail)",
    )


class _Parser(argparse.ArgumentParser):
    """Reports a bad option as every other error: one ``error:`` line and a hint, exit 2."""

    commands: dict[str, argparse.ArgumentParser] = {}  # noqa: RUF012 - set once per parser

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}\n  hint: see '{self.prog} --help'.\n")

    def parse_command(self, argv: list[str] | None) -> argparse.Namespace:
        """``parse_args``, except that an option the command does not know is that command's
        error (``edgeresnet build: ...``, see ``edgeresnet build --help``), not the root's."""
        argv = sys.argv[1:] if argv is None else list(argv)
        args, unknown = self.parse_known_args(argv)
        if unknown:
            name = getattr(args, "command", None)
            command = argv.index(name) if name in argv else len(argv)
            first = argv.index(unknown[0]) if unknown[0] in argv else len(argv)
            owner = self.commands[name] if name in self.commands and first > command else self
            owner.error(f"unrecognized arguments: {' '.join(unknown)}")
        return args


def parser() -> _Parser:
    root = _Parser(
        prog="edgeresnet",
        description="Quantize, compile, verify and benchmark ResNets for edge targets.",
    )
    root.add_argument("--version", action="version", version=f"edgeresnet {__version__}")
    root.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    # Also after the command: `edgeresnet build ... --debug`.
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    root.commands = commands.choices

    def command(name: str, **options: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[debug], **options)

    b = command("build", help="build, verify and benchmark artifacts for a target")
    b.add_argument(
        "--target",
        required=True,
        help="profile name (see `edgeresnet targets`) or path to a .toml profile",
    )
    b.add_argument(
        "--model",
        help="resnet18, resnet34, resnet50, resnet101 or resnet152 (default resnet50, or the "
        "architecture a --weights channel spec names)",
    )
    b.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet[:V1|:V2] (downloaded once, sha256 checked), a state_dict FILE, "
        "or random[:SEED] (size/speed only) (default imagenet)",
    )
    b.add_argument(
        "--calib",
        type=Path,
        help="calibration images: a folder or labels/list file "
        "(default: the small embedded set in calibration/default)",
    )
    b.add_argument(
        "--calib-size",
        type=int,
        default=300,
        help="calibration images to draw, with --seed (default 300)",
    )
    b.add_argument(
        "--eval",
        type=Path,
        help="evaluation images: class folders, a folder with "
        "labels.tsv/labels.txt, synset-named files, or a labels file (top-1/top-5); a flat "
        "folder of images (agreement with FP32 only)",
    )
    b.add_argument("--eval-size", type=_positive, help="evaluate on a seeded subset of N images")
    b.add_argument(
        "--input-size",
        type=_positive,
        help="input resolution (default: the weights' own, else 224)",
    )
    b.add_argument(
        "--threads",
        type=_threads,
        default=0,
        help="runtime threads (default 0: the profile's, else one per physical core)",
    )
    b.add_argument(
        "--rounds",
        type=_positive,
        default=1,
        help="time every artifact N times, order reversed each round, and keep each figure "
        "from its least disturbed round (default 1; pass 3 on a shared machine)",
    )
    b.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="also time each variant against its reference (pruned: the dense variant of its "
        "precision; others: FP32) in N alternating batch-1 pairs, for a latency ratio with a "
        "95%% interval that holds on a noisy machine (default 0: off; 500 is typical)",
    )
    b.add_argument("--seed", type=_seed, default=0, help="seed of every random draw (default 0)")
    b.add_argument(
        "--out",
        type=common.a_folder,
        default=Path("build"),
        help="output folder; the target's bundle goes to OUT/<target> (default build)",
    )
    b.add_argument(
        "--device-name",
        type=common.a_name,
        help="name of this machine in reports (default: hostname)",
    )
    b.add_argument(
        "--fresh", action="store_true", help="redo every stage instead of resuming from OUT/.cache"
    )
    q = b.add_argument_group("INT8 calibration and accuracy budget")
    q.add_argument(
        "--calib-method",
        choices=("minmax", "percentile", "entropy"),
        help="activation range estimation (default: the profile's, minmax)",
    )
    q.add_argument(
        "--percentile",
        type=float,
        help="percentile for --calib-method percentile, 90 to 100 (default 99.999)",
    )
    q.add_argument(
        "--max-drop",
        type=float,
        metavar="POINTS",
        help="accuracy budget: add an 'int8-mixed' variant keeping the most sensitive "
        "layers in float until top-1 (or, without labels, agreement with FP32) drops "
        "by at most POINTS on the evaluation images",
    )
    q.add_argument(
        "--sensitivity-images",
        type=_positive,
        help="held-out images for the sensitivity ranking and the budget search: drawn from "
        "--eval, else from the --calib folder's images not drawn for calibration; never "
        "calibration images (default 500; the ranking runs on 100 of them)",
    )
    p = b.add_argument_group("structured pruning")
    p.add_argument(
        "--prune",
        type=_ratios,
        default=[],
        metavar="RATIOS",
        help="share of channels to remove, or a list for a sweep: 0.3 or 0,0.2,0.3,0.5;"
        " each ratio becomes its own variants next to the dense model",
    )
    p.add_argument(
        "--prune-importance",
        choices=("l1", "l2", "bn-scale"),
        help="channel importance criterion (default l2 magnitude)",
    )
    p.add_argument(
        "--prune-round-to",
        type=_positive,
        help="keep channel counts multiples of N, rounded down (default 8; OpenVINO on AVX-512 "
        "CPUs works in blocks of 16)",
    )
    p.add_argument(
        "--prune-stem-round-to",
        type=_non_negative_int,
        help="keep the stem (the convolution before the max pool) a multiple of N, the nearest "
        "(default 32: OpenVINO's INT8 max pool is fast over multiples of 32 on AVX2; 0: as "
        "--prune-round-to)",
    )
    p.add_argument(
        "--no-bn-recalibrate",
        dest="bn_recalibrate",
        action="store_false",
        help="skip re-estimating BatchNorm statistics after pruning",
    )
    p.add_argument(
        "--distill-steps",
        type=int,
        default=0,
        help="knowledge-distillation steps from the unpruned model (default 0: off); "
        "Ctrl-C stops early and keeps the best weights so far",
    )
    p.add_argument(
        "--train",
        type=Path,
        help="unlabelled images for distillation, with --distill-steps (default: the "
        "calibration images)",
    )
    b.set_defaults(func=_build)

    t = command("targets", help="list the target profiles")
    t.set_defaults(func=_targets)

    v = command("verify", help="check a bundle's files against its manifest")
    v.add_argument("bundle", type=common.a_folder, help="bundle folder (holding manifest.json)")
    v.set_defaults(func=_verify)

    r = command(
        "report",
        help="merge results.json files into one report",
        description="Merge results files from any number of devices and runs into one report. "
        "A file that cannot be read is named and left out; exit 1 only if none can be read.",
    )
    r.add_argument("results", nargs="+", type=Path, help="results.json files")
    r.add_argument(
        "--out", type=common.a_folder, required=True, help="folder for report.md/html and plots"
    )
    _add_constraints(r)
    r.set_defaults(func=_report)

    s = command(
        "select",
        help="variants that meet latency/accuracy/size/throughput limits, ranked",
        description="Print the variants meeting every constraint, fastest p50 first (then "
        "smaller, then more accurate), and why each other one is excluded. Exit 0 when at "
        "least one variant fits, 3 when none does.",
    )
    s.add_argument("results", nargs="+", type=Path, help="results.json files")
    s.add_argument(
        "--out", type=common.a_folder, help="also write the report with a selection section here"
    )
    _add_constraints(s)
    s.set_defaults(func=_select)

    m = command(
        "bench",
        help="measure the by-hand peers (PyTorch, ORT, OpenVINO, default INT8) side by side",
    )
    m.add_argument(
        "--compare-peers",
        action="store_true",
        help="build and time PyTorch eager FP32, ONNX Runtime FP32, OpenVINO f32, and INT8 from "
        "nncf.quantize and quantize_static with their defaults",
    )
    m.add_argument("--model", default="resnet50", help="architecture (default resnet50)")
    m.add_argument(
        "--weights", default="random", help="as for build (default random: speed and size only)"
    )
    m.add_argument(
        "--calib", type=Path, help="calibration images, the same as the build's (default embedded)"
    )
    m.add_argument(
        "--calib-size", type=int, default=300, help="images drawn with --seed (default 300)"
    )
    m.add_argument("--input-size", type=_positive, help="input resolution (default 224)")
    m.add_argument(
        "--threads", type=_threads, default=0, help="threads (default 0: one per physical core)"
    )
    m.add_argument("--seed", type=_seed, default=0, help="seed of every random draw (default 0)")
    m.add_argument(
        "--against",
        type=Path,
        nargs="+",
        default=[],
        metavar="BUNDLE",
        help="edgeresnet bundles (e.g. build/onnx build/openvino) to re-time in the same run",
    )
    m.add_argument(
        "--out",
        type=common.a_folder,
        default=Path("build/peers"),
        help="output (default build/peers)",
    )
    m.add_argument(
        "--device-name",
        type=common.a_name,
        help="name of this machine in reports (default: hostname)",
    )
    m.add_argument(
        "--batch-sizes",
        type=common.batch_sizes,
        default=[1, 8],
        help="default 1,8 (as the targets)",
    )
    m.add_argument(
        "--warmup", type=_non_negative_int, default=10, help="untimed runs first (default 10)"
    )
    m.add_argument("--min-iterations", type=_positive, default=50, help="default 50")
    m.add_argument("--min-seconds", type=_non_negative, default=3.0, help="default 3.0")
    m.add_argument(
        "--rounds",
        type=_positive,
        default=1,
        help="time every row N times, order reversed each round, and keep each row's fastest "
        "run, the one other processes disturbed least (default 1; pass 3 on a shared machine)",
    )
    m.set_defaults(func=_bench)
    return root


def run() -> NoReturn:
    """The ``edgeresnet`` command: ``main``'s exit code, kept while the process winds down."""
    common.exit_with(main())


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_command(argv)
    try:
        with common.sigterm_raises():
            return args.func(args)
    except EdgeResnetError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, common.Terminated) as exc:  # Ctrl-C, kill, timeout
        print("interrupted: no output was changed", file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 143
    except BrokenPipeError:  # `edgeresnet targets | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
