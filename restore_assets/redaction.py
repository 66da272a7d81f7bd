"""The one redaction rule: what may leave the process of a text that can carry a secret.

A `Redactor` is built from the settings (`Settings.redactor`) and applied at the boundaries
only — evidence writes, what a step hands Dagster (events, failures, log lines), and what the
CLI prints — so a new message needs no call of its own to be safe. Two rules:
- every secret value (the targets' passwords, the ZIP password) becomes `********`;
- a database error's DETAIL and CONTEXT lines are dropped: they can quote a row
  (`Failing row contains (…)`, `Key (userid)=(…)`, a COPY line), which is medical data;
- a configured URL (`RESTORE_FACILITY_API_URL`) is shown without its user info and query values.
And one for an exception turned into text (`describe`, `first_line`): a database error says its
condition and the names PostgreSQL reports with it (SQLSTATE, constraint, table, column) — its
primary message only where that cannot carry a value.

Standard library only (psycopg, when installed, only to name a SQLSTATE), so the settings
reader, the core and the shells can all use it.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "********"

_ROW_QUOTING = re.compile(r"^[ \t]*(?:DETAIL|CONTEXT):.*(?:\n|$)", re.MULTILINE)


class Redactor:
    """Callable: `redactor(text)` is `text` as it may be shown, stored or written."""

    def __init__(self, secrets: Iterable[str | None] = (), urls: Iterable[str | None] = ()):
        # A URL's password is a secret wherever it shows (an error can quote its netloc).
        urls = [u for u in urls if u]
        secrets = [*secrets, *(urlsplit(u).password for u in urls)]
        # Longest first: a password containing another must not be left half-visible.
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        self.urls = {u: shown_url(u) for u in sorted(urls, key=len, reverse=True)}

    def __call__(self, text: str) -> str:
        for url, shown in self.urls.items():
            text = text.replace(url, shown)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return _ROW_QUOTING.sub("", text)

    def hides(self, text: str) -> bool:
        """Whether `text` holds a secret (then it is not shown at all, e.g. a bad value)."""
        return any(secret in text for secret in self.secrets)

    def __repr__(self) -> str:
        return f"Redactor({len(self.secrets)} secret(s), {len(self.urls)} URL(s))"


def shown_url(url: str) -> str:
    """`url` as it may be shown: user info (`user:password@`, a token) and every query value
    and fragment masked, read by the parser urllib itself uses; scheme, host, port, path and
    query keys kept, so a person can still tell which endpoint was asked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    masked = urlencode([(key, REDACTED) for key, _ in query], safe="*")
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, masked, fragment))


def escaped(name: str) -> str:
    """A name from outside (a ZIP's file name) as a log line may carry it: Python's `repr` rule
    without the quotes — a newline, CR, escape or other unprintable character, and a backslash,
    become backslash escapes, so a name can never start a line of its own."""
    return repr(name)[1:-1]


_MARKUP = str.maketrans({c: "\\" + c for c in "`[]<>|"})


def shown_name(name: str) -> str:
    """A name someone else chose (a session's application_name or user) as the evidence's
    Markdown shows it: `escaped`, and the characters that make a link, a code span or a table
    cell backslash-escaped, so it is read as it is, never rendered."""
    return escaped(name).translate(_MARKUP)


# SQLSTATE classes whose primary message names objects and conditions only, never a value:
# connection, feature, transaction state, authorization, catalog/schema name, rollback, syntax
# or access rule (our statements carry values as parameters, never in their text), resources,
# limits, object state (locks), operator intervention, system error. Every other class may quote
# a value in the primary message itself — 22 data exceptions (`invalid input syntax for type
# integer: "…"`), a trigger's RAISE (P0001) — so it is described by its fields instead.
_NAMES_ONLY = frozenset(
    {"08", "0A", "25", "28", "3D", "3F", "40", "42", "53", "54", "55", "57", "58"}
)


def database_message(exc: BaseException) -> str | None:
    """A database error reported by the server (psycopg's: it has a SQLSTATE and diagnostics)
    as a message may carry it, without its SQLSTATE; None for any other error. Built from the
    diagnostic fields, never from the text: e.g. `not null violation on column email of table
    public.d_users` (never `Failing row contains (…)`, which the DETAIL says)."""
    sqlstate, diag = getattr(exc, "sqlstate", None), getattr(exc, "diag", None)
    if not isinstance(sqlstate, str) or diag is None:
        return None
    if sqlstate[:2] in _NAMES_ONLY and diag.message_primary:
        return diag.message_primary.strip().splitlines()[0]
    said = [_words(type(exc).__name__)]
    if diag.constraint_name:
        said.append(f"on constraint {diag.constraint_name}")
    if diag.column_name:
        said.append(f"on column {diag.column_name}")
    if diag.table_name:
        table = ".".join(n for n in (diag.schema_name, diag.table_name) if n)
        said.append(f"of table {table}")
    if diag.datatype_name:
        said.append(f"of type {diag.datatype_name}")
    return " ".join(said)


def _words(class_name: str) -> str:
    """psycopg names its error classes after the condition: NotNullViolation -> "not null
    violation"."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", class_name).lower()


_SQLSTATE = re.compile(r"[0-9A-Z]{5}")


def sqlstate_message(sqlstate: str, primary: str | None = None) -> str:
    """What a SQLSTATE may say when the error is known by its code only (psql's
    `VERBOSITY=sqlstate`, the Flyway CLI's report): `primary`'s first line where the class names
    objects only (`relation "x" does not exist (42P01)`), else the condition's name as psycopg
    knows it (`invalid text representation (22P02)`) — never a value. psycopg is imported here
    only, to name the condition; an unknown code is said as `SQLSTATE …`."""
    if not _SQLSTATE.fullmatch(sqlstate):
        raise ValueError("not a SQLSTATE")
    said = primary.strip().splitlines()[0] if primary and primary.strip() else ""
    if said and sqlstate[:2] in _NAMES_ONLY:
        return f"{said} ({sqlstate})"
    try:
        from psycopg import errors

        return f"{_words(errors.lookup(sqlstate).__name__)} ({sqlstate})"
    except (ImportError, KeyError):
        return f"SQLSTATE {sqlstate}"


def describe(exc: BaseException) -> str:
    """An error as it may leave the core: a database error by `database_message` and its
    SQLSTATE (e.g. `not null violation on column email of table public.d_users (23502)`),
    anything else by its own text."""
    message = database_message(exc)
    return str(exc) if message is None else f"{message} ({exc.sqlstate})"


def first_line(exc: BaseException) -> str:
    """An error as a message may carry it: the first line of `describe` (the DETAIL and CONTEXT
    lines a database error's text has after it can quote a row)."""
    return (describe(exc).strip().splitlines() or [type(exc).__name__])[0]


def traceback_text(exc: BaseException) -> str:
    """`traceback.format_exception(exc)`, each exception of the chain said by `describe`."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "".join(
        "".join(["Traceback (most recent call last):\n", *traceback.format_tb(e.__traceback__)])
        + f"{type(e).__module__}.{type(e).__qualname__}: {describe(e)}\n"
        for e in reversed(chain)
    )


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
