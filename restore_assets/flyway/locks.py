"""Session advisory locks with a bounded, quiet wait (sleep, not spin) — one Flyway per history
table, and (the project uses it too) one restore per target."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg


@contextmanager
def advisory_lock(
    conn: psycopg.Connection,
    key: int,
    *,
    wait_seconds: float,
    busy: Callable[[], Exception],  # what to raise: the caller's own error
    on_wait: Callable[[], None] = lambda: None,
    poll_seconds: float = 0.2,
    shared: bool = False,
    report_seconds: float = 5.0,
) -> Iterator[None]:
    """Hold `pg_advisory_lock(key)` on `conn` (autocommit) for the block — `shared`: the shared
    form, which many holders may take at once but not beside an exclusive one; raise `busy()`
    when it is still held after `wait_seconds`. `on_wait` runs when we start waiting and every
    `report_seconds` after, so a long wait is never silent."""
    try_lock, unlock = _FUNCTIONS[shared]
    deadline = time.monotonic() + wait_seconds
    next_report = time.monotonic()
    while not conn.execute(try_lock, (key,)).fetchone()[0]:
        if time.monotonic() >= next_report:
            on_wait()
            next_report = time.monotonic() + report_seconds
        if time.monotonic() > deadline:
            raise busy()
        time.sleep(poll_seconds)
    try:
        yield
    finally:
        conn.execute(unlock, (key,))


_FUNCTIONS = {
    False: ("SELECT pg_try_advisory_lock(%s)", "SELECT pg_advisory_unlock(%s)"),
    True: ("SELECT pg_try_advisory_lock_shared(%s)", "SELECT pg_advisory_unlock_shared(%s)"),
}
