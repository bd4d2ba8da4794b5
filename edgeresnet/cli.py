"""Command line: parses arguments and calls one library function per command.

Heavy imports (torch, onnxruntime) happen inside the command functions so ``--help`` is instant.
This is the only place that exits the process.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import traceback
from pathlib import Path

from edgeresnet import __version__
from edgeresnet.errors import EdgeResnetError


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
            bn_recalibrate=args.bn_recalibrate,
            distill_steps=args.distill_steps,
            train=args.train,
            command=_command_line(),
        )
    )
    console.print(f"[green]built[/green] {out}  (report: {out / 'report.md'})")
    return 0


def _targets(args: argparse.Namespace) -> int:
    from edgeresnet.config import available_targets, load_target

    for name, path in available_targets().items():
        profile = load_target(str(path))
        print(
            f"{name:<16} {profile.backend:<12} {profile.device:<6} "
            f"{','.join(profile.precisions):<16} {profile.description}"
        )
    return 0


def _report(args: argparse.Namespace) -> int:
    from edgeresnet.progress import console
    from edgeresnet.report import load_results, write_report

    documents = {str(path): load_results(path) for path in args.results}
    written = write_report(documents, args.out, command=_command_line())
    for path in written:
        console.print(f"wrote {path}")
    return 0


def _command_line() -> str:
    return shlex.join(["edgeresnet", *sys.argv[1:]])


def _ratios(text: str) -> list[float]:
    try:
        ratios = [float(part) for part in text.split(",") if part.strip()]
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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="edgeresnet",
        description="Quantize, compile, verify and benchmark ResNets for edge targets.",
    )
    root.add_argument("--version", action="version", version=f"edgeresnet {__version__}")
    root.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = commands.add_parser("build", help="build, verify and benchmark artifacts for a target")
    b.add_argument(
        "--target",
        required=True,
        help="profile name (see `edgeresnet targets`) or path to a .toml profile",
    )
    b.add_argument(
        "--model",
        default="resnet50",
        help="resnet18, resnet34, resnet50, resnet101 or resnet152 (default resnet50)",
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
        help="calibration images to draw, with a fixed seed (default 300)",
    )
    b.add_argument(
        "--eval",
        type=Path,
        help="evaluation images: class folders, a folder with "
        "labels.tsv/labels.txt, synset-named files, or a labels file",
    )
    b.add_argument("--eval-size", type=_positive, help="evaluate on a seeded subset of N images")
    b.add_argument(
        "--input-size",
        type=_positive,
        help="input resolution (default: the weights' own, else 224)",
    )
    b.add_argument(
        "--threads",
        type=int,
        default=0,
        help="runtime threads (default: the profile's, else one per physical core)",
    )
    b.add_argument("--seed", type=int, default=0, help="seed for sampling and random weights")
    b.add_argument(
        "--out",
        type=Path,
        default=Path("build"),
        help="output folder; the target's bundle goes to OUT/<target> (default build)",
    )
    b.add_argument("--device-name", help="name of this machine in reports (default: hostname)")
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
        default="l2",
        help="channel importance criterion (default l2 magnitude)",
    )
    p.add_argument(
        "--prune-round-to",
        type=_positive,
        default=8,
        help="keep channel counts multiples of N (default 8)",
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
        help="unlabelled images for distillation (default: the calibration images)",
    )
    b.set_defaults(func=_build)

    t = commands.add_parser("targets", help="list the target profiles")
    t.set_defaults(func=_targets)

    r = commands.add_parser("report", help="merge results.json files into one report")
    r.add_argument("results", nargs="+", type=Path, help="results.json files")
    r.add_argument("--out", type=Path, required=True, help="folder for report.md/html and plots")
    r.set_defaults(func=_report)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgeResnetError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: no output was changed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
