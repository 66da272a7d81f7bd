"""`flyway info`: every migration, applied or not, with its state (a view of `migration_info`)."""

from __future__ import annotations

from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.database import Connect, history_table, open_connection
from restore_assets.flyway.migration_info import InfoRow, MigrationInfoService
from restore_assets.flyway.placeholders import placeholder_values, resolve_replaced


def info(config: FlywayConfig, connect: Connect) -> list[InfoRow]:
    """Flyway's info table for the current files and history."""
    with open_connection(connect) as conn:
        history = history_table(conn, config)
        resolved = resolve_replaced(config, placeholder_values(conn, config, history))
        return MigrationInfoService(config, resolved, history.rows(conn)).info()
