"""`flyway validate`: compare the files with the history; the rules are in `planning`."""

from __future__ import annotations

from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.database import Connect, read_history
from restore_assets.flyway.planning import validation_errors
from restore_assets.flyway.resolver import resolve


def validate(config: FlywayConfig, connect: Connect, *, pending_is_error: bool) -> list[str]:
    """Differences between the files and the history; empty means valid."""
    rows = read_history(config, connect)
    return validation_errors(config, resolve(config), rows, pending_is_error)
