"""The one error tree of footctl.

Every error a user can see derives from :class:`FootctlError`. Each carries an
``exit_code`` (the CLI's contract), and where it helps, ``advice`` telling the
user what to do. bleak and Bumble errors are translated into these only inside
the transport layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ExitCode:
    """Process exit codes; scripts rely on them."""

    OK = 0
    OTHER = 1
    USAGE = 2
    UNREACHABLE = 3
    REFUSED = 4


class FootctlError(Exception):
    """Root of every footctl error."""

    exit_code: int = ExitCode.OTHER
    kind: str = "error"

    def __init__(self, message: str, *, advice: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.advice = advice

    def __str__(self) -> str:
        if self.advice:
            return f"{self.message} ({self.advice})"
        return self.message

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description, used by ``--json`` output."""
        out: dict[str, object] = {"error": self.kind, "message": self.message}
        if self.advice:
            out["advice"] = self.advice
        return out


class UsageError(FootctlError):
    """Bad input on the command line or in a file."""

    exit_code = ExitCode.USAGE
    kind = "usage"


@dataclass(frozen=True)
class ProfileProblem:
    """One thing wrong with a profile file."""

    file: Path | None
    field: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = str(self.file) if self.file else "<profile>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.field}: {self.reason}"


class ProfileError(UsageError):
    """A device profile is invalid; lists every problem with file, line and field."""

    kind = "profile"

    def __init__(self, problems: list[ProfileProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out["problems"] = [
            {
                "file": str(p.file) if p.file else None,
                "line": p.line,
                "field": p.field,
                "reason": p.reason,
            }
            for p in self.problems
        ]
        return out


class ConfigError(UsageError):
    """The configuration file is invalid; ``problems`` lists each with file, line and
    field (the same shape as a profile's)."""

    kind = "config"

    def __init__(
        self,
        message: str,
        *,
        advice: str | None = None,
        problems: list[ProfileProblem] | None = None,
    ) -> None:
        super().__init__(message, advice=advice)
        self.problems = list(problems or [])

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        if self.problems:
            out["problems"] = [
                {"file": str(p.file) if p.file else None, "line": p.line, "field": p.field,
                 "reason": p.reason}
                for p in self.problems
            ]
        return out


class CodecError(FootctlError):
    """Bytes could not be framed or parsed according to the profile."""

    kind = "codec"


class SafetyRefused(FootctlError):
    """The safety governor refused a request; ``reason`` is a stable machine-readable code."""

    exit_code = ExitCode.REFUSED
    kind = "refused"

    def __init__(self, reason: str, message: str, *, advice: str | None = None) -> None:
        super().__init__(message, advice=advice)
        self.reason = reason

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out["reason"] = self.reason
        return out


class DeviceUnavailable(FootctlError):
    """The massager was not found or could not be reached."""

    exit_code = ExitCode.UNREACHABLE
    kind = "unreachable"


class TransportError(FootctlError):
    """The BLE link failed during an operation."""

    exit_code = ExitCode.UNREACHABLE
    kind = "transport"


class ConfirmTimeout(FootctlError):
    """The device did not confirm a requested state in time."""

    kind = "timeout"
