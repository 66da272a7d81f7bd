"""Flyway's commands — info, validate, baseline, migrate, repair — with Flyway's semantics on
PostgreSQL (flyway-compat.md), behind one object so callers hold the config and connection once.

The work is elsewhere: `migration_info` (the state of every migration, pure),
`database`/`history` (PostgreSQL access) and `commands/` (one module per command).
"""

from __future__ import annotations

from restore_assets.flyway.commands import baseline, info, migrate, repair, validate
from restore_assets.flyway.commands.migrate import MigrateResult
from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.database import Connect, Log, open_connection, read_history, schemas
from restore_assets.flyway.history_row import HistoryRow
from restore_assets.flyway.migration_info import InfoRow
from restore_assets.flyway.resolver import ResolvedMigration, resolve

__all__ = ["Flyway"]


class Flyway:
    """The engine. `connect` returns a new psycopg connection to the target database."""

    def __init__(
        self,
        config: FlywayConfig,
        connect: Connect,
        log: Log = lambda message: None,
        lock_wait_seconds: float = 600,
    ):
        self.config = config
        self._connect = connect
        self.log = log
        self.lock_wait_seconds = lock_wait_seconds

    # -- state ----------------------------------------------------------------------------

    def resolved(self) -> list[ResolvedMigration]:
        return resolve(self.config)

    def schemas(self) -> tuple[list[str], str]:
        """The managed schemas and the default one (which holds the history table)."""
        with open_connection(self._connect) as conn:
            return schemas(conn, self.config)

    def history_rows(self) -> list[HistoryRow]:
        return read_history(self.config, self._connect)

    def info(self) -> list[InfoRow]:
        return info.info(self.config, self._connect)

    def validate(self, *, pending_is_error: bool = True) -> list[str]:
        """Differences between the files and the history; empty means valid."""
        return validate.validate(self.config, self._connect, pending_is_error=pending_is_error)

    # -- commands -------------------------------------------------------------------------

    def baseline(self) -> bool:
        """Write the baseline row; returns False when the same baseline is already there."""
        return baseline.baseline(
            self.config, self._connect, log=self.log, lock_wait_seconds=self.lock_wait_seconds
        )

    def migrate(self) -> MigrateResult:
        return migrate.migrate(
            self.config, self._connect, log=self.log, lock_wait_seconds=self.lock_wait_seconds
        )

    def repair(self) -> dict[str, list[str]]:
        """Delete failed rows, mark missing migrations deleted, realign applied rows to the
        files; returns what was done under "removed", "deleted" and "realigned"."""
        return repair.repair(
            self.config, self._connect, log=self.log, lock_wait_seconds=self.lock_wait_seconds
        )
