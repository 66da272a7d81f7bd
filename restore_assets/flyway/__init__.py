"""A Flyway-compatible migration engine for PostgreSQL (Community 9.x-11.x semantics).

Imports nothing from Dagster: it is a plain library the CLI can use in a fraction of a second,
and what it writes into `flyway_schema_history` is byte-for-byte what real Flyway would write.
`Flyway` is loaded on first use, because it needs psycopg and the pure parts (conf, versions,
checksums, planning) do not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from restore_assets.flyway.checksum import checksum
from restore_assets.flyway.conf import FlywayConfig, load_conf
from restore_assets.flyway.errors import FlywayError, MigrationFailed
from restore_assets.flyway.planning import InfoRow, MigrateResult
from restore_assets.flyway.resolver import ResolvedMigration, resolve
from restore_assets.flyway.version import Version

if TYPE_CHECKING:
    from restore_assets.flyway.engine import Flyway

__all__ = [
    "Flyway",
    "FlywayConfig",
    "FlywayError",
    "InfoRow",
    "MigrateResult",
    "MigrationFailed",
    "ResolvedMigration",
    "Version",
    "checksum",
    "load_conf",
    "resolve",
]


def __getattr__(name: str) -> object:
    if name == "Flyway":
        from restore_assets.flyway.engine import Flyway

        return Flyway
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
