"""Placeholders as Flyway 10.17.3 replaces them (PlaceholderReplacingReader), their values as it
fills them (ParsingContext.populate: the built-in `flyway:*` ones, which need the database, then
flyway.placeholders.*), and the repeatable migrations' checksums computed after replacement
(SqlMigrationResolver.getChecksumForLoadableResource), which is what Flyway records and compares
for them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from typing import TYPE_CHECKING

from restore_assets.flyway.checksum import checksum_text
from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.errors import FlywayError
from restore_assets.flyway.resolver import ResolvedMigration, resolve

if TYPE_CHECKING:
    import psycopg

    from restore_assets.flyway.history import HistoryTable


def replace_placeholders(text: str, values: dict[str, str]) -> str:
    """Flyway 10.17.3's PlaceholderReplacingReader.read(): every `${` starts a placeholder that
    runs to the next `}` (any characters), looked up case-insensitively; an unknown one fails
    rather than run as is. Ported step by step, quirks included: after a `$` that does not start
    `${`, the next character is passed on unchecked (so `$${x}` stays as it is)."""
    prefix, suffix = "${", "}"
    known = {k.lower(): v for k, v in values.items()}
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        buffer = text[i]  # read ahead while what was read could still begin the prefix
        i += 1
        while len(buffer) < len(prefix) and prefix.startswith(buffer) and i < n:
            buffer += text[i]
            i += 1
        if buffer != prefix:
            out.append(buffer)
            continue
        end = text.find(suffix, i)
        name = text[i:end] if end >= 0 else text[i : -len(suffix)]
        i = end + len(suffix) if end >= 0 else n
        if name.lower() not in known:
            # Flyway's own words first (what a DBA searches for), then what to do.
            if "flyway:" in name:
                raise FlywayError(
                    f"Failed to populate value for default placeholder: ${{{name}}} (not one of "
                    "Flyway's built-in placeholders; check its spelling)"
                )
            raise FlywayError(
                f"No value provided for placeholder: ${{{name}}}.  Check your configuration! "
                f"Set flyway.placeholders.{name} (or FLYWAY_PLACEHOLDERS_{name.upper()}), or "
                "remove it from the migration"
            )
        out.append(known[name.lower()])
    return "".join(out)


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
            text = replace_placeholders(m.raw_text(config.encoding), for_file(values, m))
            m = dataclasses.replace(m, checksum=checksum_text(text))
        out.append(m)
    return out
