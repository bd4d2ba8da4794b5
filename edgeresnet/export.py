"""PyTorch -> FP32 ONNX, with the exporter and opset chosen by the target profile and recorded."""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch

from edgeresnet.config import DYNAMO_MIN_OPSET, EXPORTERS, ExportOptions
from edgeresnet.errors import ExportError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
STANDARD_DOMAINS = ("", "ai.onnx")  # the default domain's two spellings


@dataclass(frozen=True)
class ExportRecord:
    exporter: str
    opset: int
    torch_version: str
    onnx_ir_version: int
    dynamic_batch: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def export_onnx(
    model: torch.nn.Module, path: Path, *, input_size: int, options: ExportOptions
) -> ExportRecord:
    """Export ``model`` (eval mode) to ``path`` with a dynamic batch axis and inline weights."""
    if options.exporter not in EXPORTERS:
        raise ExportError(
            f"Unknown exporter '{options.exporter}'.", hint="Use 'torchscript' or 'dynamo'."
        )
    if options.exporter == "dynamo" and options.opset < DYNAMO_MIN_OPSET:
        raise ExportError(
            f"The dynamo exporter cannot produce opset {options.opset}.",
            hint=f"Use opset >= {DYNAMO_MIN_OPSET} with 'dynamo', or exporter = 'torchscript'.",
        )
    model = model.eval()
    dummy = torch.zeros(1, 3, input_size, input_size)
    try:
        with torch.no_grad(), warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            if options.exporter == "torchscript":
                torch.onnx.export(
                    model,
                    (dummy,),
                    str(path),
                    dynamo=False,
                    opset_version=options.opset,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                    do_constant_folding=True,
                )
            else:
                batch = torch.export.Dim("batch", min=1, max=1024)
                program = torch.onnx.export(
                    model,
                    (dummy,),
                    dynamo=True,
                    opset_version=options.opset,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_shapes=({0: batch},),
                    external_data=False,
                )
                program.save(str(path), external_data=False)
    except Exception as exc:  # the exporters raise many unrelated types
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    proto = onnx.load(str(path), load_external_data=False)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ExportError(
            f"The exported ONNX model {path} is invalid: {exc}",
            hint="Try the other exporter (export.exporter in the target profile) or opset.",
        ) from exc
    return ExportRecord(
        exporter=options.exporter,
        opset=default_opset(proto) or options.opset,
        torch_version=torch.__version__,
        onnx_ir_version=proto.ir_version,
    )


def default_opset(proto: onnx.ModelProto) -> int | None:
    """The opset of the default (standard) domain, None where a model imports none."""
    return next((o.version for o in proto.opset_import if o.domain in STANDARD_DOMAINS), None)


@contextlib.contextmanager
def _quiet():
    """The exporters print diagnostics to stdout; keep the CLI's output readable."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
