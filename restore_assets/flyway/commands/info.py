"""`flyway info`: every migration, applied or not, with its state; the rules are in `planning`."""

from __future__ import annotations

from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.database import Connect, read_history
from restore_assets.flyway.planning import InfoRow, build_info
from restore_assets.flyway.resolver import resolve


def info(config: FlywayConfig, connect: Connect) -> list[InfoRow]:
    """Flyway's info table for the current files and history."""
    rows = read_history(config, connect)
    return build_info(config, resolve(config), rows)
