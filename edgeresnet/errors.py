"""Typed errors: library code raises these, only the CLI turns them into exit codes.

Every message says what was wrong and where; ``hint`` says how to fix it.
"""

from __future__ import annotations


class EdgeResnetError(Exception):
    """Base class of every error edgeresnet raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class UsageError(EdgeResnetError):
    """An option is out of range or options contradict each other."""

    exit_code = 2


class ConfigError(EdgeResnetError):
    """A target profile is missing, unknown or malformed."""

    exit_code = 2


class DataError(EdgeResnetError):
    """Images, folders or label files cannot be used."""


class WeightsError(EdgeResnetError):
    """Weights cannot be fetched, read, or do not fit the architecture."""


class PruneError(EdgeResnetError):
    """A model could not be pruned to the channel counts asked for."""


class ExportError(EdgeResnetError):
    """A model could not be exported or failed its export check."""


class QuantizationError(EdgeResnetError):
    """Quantization could not produce a usable artifact."""


class BackendUnavailableError(EdgeResnetError):
    """A runtime or device is not installed or not present on this machine."""


class VerificationError(EdgeResnetError):
    """An artifact did not behave like the model it was built from."""


class ReportError(EdgeResnetError):
    """A results file cannot be read or rendered."""


class OutputError(EdgeResnetError):
    """Outputs cannot be written (disk full, permissions)."""
