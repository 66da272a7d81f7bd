"""A Flyway-compatible migration engine for PostgreSQL (Community 9.x-11.x semantics).

Imports nothing from Dagster: it is a plain library the CLI can use in a fraction of a second,
and what it writes into `flyway_schema_history` is byte-for-byte what real Flyway would write.
"""

from restore_assets.flyway.checksum import checksum
from restore_assets.flyway.conf import FlywayConfig, load_conf
from restore_assets.flyway.engine import Flyway, FlywayError, MigrationFailed
from restore_assets.flyway.resolver import ResolvedMigration, resolve
from restore_assets.flyway.version import Version

__all__ = [
    "Flyway",
    "FlywayConfig",
    "FlywayError",
    "MigrationFailed",
    "ResolvedMigration",
    "Version",
    "checksum",
    "load_conf",
    "resolve",
]
