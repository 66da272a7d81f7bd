"""The one redaction rule: what may leave the process of a text that can carry a secret.

A `Redactor` is built from the settings (`Settings.redactor`) and applied at the boundaries
only — evidence writes, what a step hands Dagster (events, failures, log lines), and what the
CLI prints — so a new message needs no call of its own to be safe. Two rules:
- every secret value (the targets' passwords, the ZIP password) becomes `********`;
- a database error's DETAIL and CONTEXT lines are dropped: they can quote a row
  (`Failing row contains (…)`, `Key (userid)=(…)`, a COPY line), which is medical data.

Standard library only, so the settings reader, the core and the shells can all use it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "********"

_ROW_QUOTING = re.compile(r"^[ \t]*(?:DETAIL|CONTEXT):.*(?:\n|$)", re.MULTILINE)


class Redactor:
    """Callable: `redactor(text)` is `text` as it may be shown, stored or written."""

    def __init__(self, secrets: Iterable[str | None] = ()):
        # Longest first: a password containing another must not be left half-visible.
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return _ROW_QUOTING.sub("", text)

    def hides(self, text: str) -> bool:
        """Whether `text` holds a secret (then it is not shown at all, e.g. a bad value)."""
        return any(secret in text for secret in self.secrets)

    def __repr__(self) -> str:
        return f"Redactor({len(self.secrets)} secret(s))"


def first_line(exc: BaseException) -> str:
    """An error as a message may carry it: its first line only (a database error's primary
    message; the DETAIL and CONTEXT lines after it can quote a row)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class RedactingFilter(logging.Filter):
    """A logger's records leave redacted: attached to a step's log, before any handler (the
    console and Dagster's event log alike) sees the line."""

    def __init__(self, redact: Redactor):
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
