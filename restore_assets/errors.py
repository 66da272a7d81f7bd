"""Errors that carry the CLI exit code of DESIGN.md's contract, so a Dagster failure can too."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BLOCKED = 2
EXIT_CONFIG = 3


class RestoreError(RuntimeError):
    exit_code = EXIT_FAILED


class SecretsBlocked(RestoreError):
    """Secrets missing or unusable: nothing was touched (runbook §0)."""

    exit_code = EXIT_BLOCKED


class ResetRefused(RestoreError):
    """A non-empty external target and no consent to reset it."""

    exit_code = EXIT_CONFIG


class PreflightFailed(RestoreError):
    """The target cannot take this dump (unreachable, too old, missing extension)."""

    exit_code = EXIT_FAILED
