"""`flyway validate`: compare the files with the history (a view of `migration_info`)."""

from __future__ import annotations

from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.database import Connect, history_table, open_connection
from restore_assets.flyway.migration_info import MigrationInfoService
from restore_assets.flyway.placeholders import placeholder_values, resolve_replaced


def validate(config: FlywayConfig, connect: Connect, *, pending_is_error: bool) -> list[str]:
    """Differences between the files and the history; empty means valid."""
    with open_connection(connect) as conn:
        history = history_table(conn, config)
        resolved = resolve_replaced(config, placeholder_values(conn, config, history))
        infos = MigrationInfoService(config, resolved, history.rows(conn))
        return infos.validate(pending_is_error)
