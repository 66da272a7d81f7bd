"""A Flyway-compatible migration engine for PostgreSQL (Community 9.x-11.x semantics).

Imports nothing from Dagster: it is a plain library the CLI can use in a fraction of a second,
and what it writes into `flyway_schema_history` is byte-for-byte what real Flyway would write.
`Flyway` and `MigrateResult` are loaded on first use, because they need psycopg and the pure
parts (conf, versions, checksums, migration_info) do not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from restore_assets.flyway.checksum import checksum
from restore_assets.flyway.conf import FlywayConfig, load_conf
from restore_assets.flyway.errors import FlywayError, MigrationFailed
from restore_assets.flyway.migration_info import InfoRow, MigrationState, info_table
from restore_assets.flyway.resolver import ResolvedMigration, resolve
from restore_assets.flyway.version import Version

if TYPE_CHECKING:
    from restore_assets.flyway.commands.migrate import MigrateResult
    from restore_assets.flyway.engine import Flyway

__all__ = [
    "Flyway",
    "FlywayConfig",
    "FlywayError",
    "InfoRow",
    "MigrateResult",
    "MigrationFailed",
    "MigrationState",
    "ResolvedMigration",
    "Version",
    "checksum",
    "info_table",
    "load_conf",
    "resolve",
]


def __getattr__(name: str) -> object:
    if name == "Flyway":
        from restore_assets.flyway.engine import Flyway

        return Flyway
    if name == "MigrateResult":
        from restore_assets.flyway.commands.migrate import MigrateResult

        return MigrateResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
