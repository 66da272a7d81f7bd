"""Placeholder values as Flyway 10.17.3 fills them (ParsingContext.populate: the built-in
`flyway:*` ones, which need the database, then flyway.placeholders.*), and the repeatable
migrations' checksums computed after replacement (SqlMigrationResolver
.getChecksumForLoadableResource), which is what Flyway records and compares for them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os

import psycopg

from restore_assets.flyway.checksum import checksum_text, decode
from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.history import HistoryTable
from restore_assets.flyway.planning import replace_placeholders
from restore_assets.flyway.resolver import ResolvedMigration, resolve


def placeholder_values(
    conn: psycopg.Connection, config: FlywayConfig, history: HistoryTable
) -> dict[str, str]:
    """flyway.placeholders.* and the built-ins, which win over a configured one of the same
    name (PlaceholderReplacingReader.create puts them last)."""
    user, database = conn.execute("SELECT current_user, current_database()").fetchone()
    values = {k.lower(): v for k, v in config.placeholders.items()}
    values |= {
        "flyway:defaultschema": history.schema,
        "flyway:user": user,
        "flyway:database": database,
        "flyway:timestamp": dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        "flyway:workingdirectory": os.getcwd(),
        "flyway:table": history.table,
        "flyway:environment": "default",
    }
    return values


def for_file(values: dict[str, str], migration: ResolvedMigration) -> dict[str, str]:
    """The values with `flyway:filename` set for this migration."""
    return {**values, "flyway:filename": migration.path.name}


def resolve_replaced(config: FlywayConfig, values: dict[str, str]) -> list[ResolvedMigration]:
    """The migrations, repeatables checksummed after placeholder replacement."""
    resolved = resolve(config)
    if not config.placeholder_replacement:
        return resolved
    out = []
    for m in resolved:
        if m.repeatable:
            raw = decode(m.path.read_bytes(), config.encoding, m.script)
            text = replace_placeholders(raw, for_file(values, m))
            m = dataclasses.replace(m, checksum=checksum_text(text))
        out.append(m)
    return out
