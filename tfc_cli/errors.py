"""Errors tfc reports to users, each with its exit code (see DESIGN.md: Exit codes)."""
from __future__ import annotations

from dataclasses import dataclass


class TfcError(Exception):
    """A failure reported as one clear message; exit code 1."""

    exit_code = 1


class UsageError(TfcError):
    """Bad input from the user (arguments, paths); nothing was written. Exit code 2."""

    exit_code = 2


MAX_MESSAGE = 1000  # a message quoting a user's value never grows with it


@dataclass(frozen=True)
class Problem:
    line: int | None
    message: str

    def format(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        message = self.message if len(self.message) <= MAX_MESSAGE else self.message[:MAX_MESSAGE] + " [...]"
        return f"{where}: {message}"


class RecipeError(UsageError):
    """One or more problems in a recipe, each with its line."""

    def __init__(self, file: str, problems: list[Problem]):
        self.file = file
        self.problems = problems
        super().__init__("\n".join(p.format(file) for p in problems))


class ModelNotFound(UsageError):
    """A model named by a local path that is not there (or not a model folder). Exit code 2."""


class HubUnavailable(TfcError):
    """A hub id whose config could not be fetched (offline, or no such repository). Exit code 1."""


class GateFailure(TfcError):
    """A quality gate failed; the report was still written. Exit code 3."""

    exit_code = 3

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report


class Interrupted(TfcError):
    """Stopped by SIGINT or SIGTERM; the message says what was and was not written. Exit code 130."""

    exit_code = 130


class AssetMissing(TfcError):
    """A demo asset is not installed; the message says how to fetch it."""
