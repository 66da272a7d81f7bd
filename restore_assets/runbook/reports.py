"""Runbook §2: the materials to produce — `ddl_inventory.md` (the baseline files and the
migrations on disk) and `missing_objects.md` (every object the gates need, per side, present or
missing, and where it comes from)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from restore_assets.files import open_below
from restore_assets.flyway import ResolvedMigration
from restore_assets.pg.database import Database
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.runbook.flyway_adapter import load_flyway_config, native_engine
from restore_assets.runbook.intake import SecretsStore
from restore_assets.runbook.migrate import flyway_schemas
from restore_assets.runbook.preflight import reading_lock
from restore_assets.runbook.verify import (
    SET_PATH_SQL,
    app_search_path,
    find_object,
    matching,
    user_tables,
)
from restore_assets.settings import LEGACY_SCHEMA_FILE, MODERN_SCHEMA_FILE, Settings

Rows = list[dict[str, object]]


def markdown_table(rows: Sequence[dict[str, object]]) -> str:
    """A markdown table of `rows` (pandas + tabulate), text kept as written."""
    if not rows:
        return "(none)"
    import pandas as pd  # here, not at the top: a restore alone should not pay its 1 s import

    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


@dataclass
class Inventory:
    files: Rows
    migrations: Rows


def ddl_inventory(settings: Settings, modern: Database, evidence: EvidenceStore) -> Inventory:
    with reading_lock(modern):
        files: Rows = [
            {**f.as_evidence(), "role": f.role} for f in SecretsStore(settings.paths).inspect_all()
        ]
        engine = native_engine(load_flyway_config(settings.flyway, modern), modern, lambda _: None)
        migrations: Rows = [
            {
                "version": r.version or "",
                "description": r.description,
                "script": r.script,
                "checksum": "" if r.checksum is None else str(r.checksum),
                "state": r.state,
            }
            for r in engine.info()
        ]
        locations = ", ".join(map(str, engine.config.location_dirs()))
        text = "\n".join(
            [
                "# DDL inventory",
                "",
                f"Secrets root: `{settings.paths.secrets_dir}`",
                "",
                "## Baseline files",
                "",
                markdown_table(files),
                "",
                f"## Flyway migrations ({locations})",
                "",
                markdown_table(migrations),
                "",
            ]
        )
        evidence.write("ddl_inventory.md", text)
        return Inventory(files, migrations)


def required_objects(settings: Settings) -> list[tuple[str, str, str]]:
    """Every object the gates need, per side (§2: facility_num, d_audit_event, d_factor2_* …)."""
    legacy = [("legacy", "sequence", "facility_num"), ("legacy", "table", "d_facility")]
    legacy += [("legacy", "table", t) for t in settings.checks.legacy_expected_tables]
    modern = [("modernized", "table", "flyway_schema_history"), ("modernized", "table", "d_users")]
    modern += [("modernized", "table", t) for t in settings.checks.modern_expected_tables]
    modern += [("modernized", "table", "d_factor2_*")]
    modern += [("modernized", "column", c) for c in settings.checks.modern_expected_columns]
    modern += [("modernized", "extension", "pg_trgm")]
    return list(dict.fromkeys(legacy + modern))


def _pattern(name: str) -> str:
    return re.escape(name).replace(r"\*", r"\w*")


def origin(kind: str, name: str, baseline_text: str, baseline: str, migrations) -> str:
    """Where an object comes from: the side's baseline dump, or the first migration making it."""
    if kind == "table" and name == "flyway_schema_history":
        return "Flyway (baseline/migrate creates it)"
    table, _, column = name.partition(".")
    obj = _pattern(table)
    if kind in ("table", "sequence") and re.search(
        rf"CREATE {kind.upper()} (?:\w+\.)?{obj}\b", baseline_text, re.IGNORECASE
    ):
        return f"baseline: {baseline}"
    # Each CREATE TABLE statement's body once, then the column in it: a search for both at once
    # backtracks over the rest of the file from every statement start (quadratic in a crafted
    # schema file of unterminated `CREATE TABLE` lines).
    bodies = re.finditer(rf"CREATE TABLE (?:\w+\.)?{obj} \(([^;]*)", baseline_text, re.IGNORECASE)
    column_at = rf"\b{_pattern(column)}\b"
    if kind == "column" and any(re.search(column_at, b.group(1), re.IGNORECASE) for b in bodies):
        return f"baseline: {baseline}"
    patterns = {
        "table": rf"CREATE TABLE (?:IF NOT EXISTS )?(?:\w+\.)?{obj}\b",
        "sequence": rf"CREATE SEQUENCE (?:IF NOT EXISTS )?(?:\w+\.)?{obj}\b",
        "extension": rf"CREATE EXTENSION (?:IF NOT EXISTS )?{obj}\b",
        "column": rf"ALTER TABLE (?:IF EXISTS )?(?:\w+\.)?{obj}\s+ADD COLUMN (?:IF NOT EXISTS )?"
        rf"{_pattern(column)}\b",
    }
    for migration, text in migrations:
        if re.search(patterns[kind], text, re.IGNORECASE):
            return f"migration V{migration.version_text} ({migration.script})"
    return "unknown: neither the baseline nor a migration creates it"


def _baseline_text(settings: Settings, relpath: str) -> str:
    """A baseline file's text, read by the one rule (from the Secrets root's descriptor, no link
    followed, a regular file only: a FIFO swapped in cannot hang the step); "" when it cannot
    be read so (the report then says where else an object comes from)."""
    try:
        with open_below(settings.paths.secrets_dir, relpath) as source:
            return source.read().decode("utf-8", errors="replace")
    except OSError:  # missing, a link, not regular: NotSafe is an OSError too
        return ""


@dataclass
class MissingObjects:
    rows: Rows

    @property
    def missing(self) -> int:
        return sum(1 for r in self.rows if r["status"] == "MISSING")


def missing_objects(
    settings: Settings, legacy: Database, modern: Database, evidence: EvidenceStore
) -> MissingObjects:
    with reading_lock(legacy, modern):
        config = load_flyway_config(settings.flyway, modern)
        migrations: list[tuple[ResolvedMigration, str]] = [
            (m, m.read_text(config.encoding))
            for m in native_engine(config, modern, lambda _: None).resolved()
        ]
        baselines = {
            "legacy": (LEGACY_SCHEMA_FILE, legacy, None),
            "modernized": (
                MODERN_SCHEMA_FILE,
                modern,
                app_search_path(flyway_schemas(settings.flyway, modern)[1]),
            ),
        }
        tables = {side: user_tables(db) for side, (_, db, _) in baselines.items()}
        texts = {}
        for side, (relpath, _, _) in baselines.items():
            texts[side] = _baseline_text(settings, relpath)
        rows: Rows = []
        with (
            legacy.connect(autocommit=True) as legacy_conn,
            modern.connect(autocommit=True) as mconn,
        ):
            conns = {"legacy": legacy_conn, "modernized": mconn}
            mconn.execute(SET_PATH_SQL, (baselines["modernized"][2],))
            for side, kind, name in required_objects(settings):
                if "*" in name:
                    found = ", ".join(matching(name, tables[side]))
                else:
                    found = find_object(conns[side], kind, name)
                relpath = baselines[side][0]
                rows.append(
                    {
                        "side": side,
                        "kind": kind,
                        "object": name,
                        "status": "present" if found else "MISSING",
                        "found as": found,
                        "comes from": origin(kind, name, texts[side], relpath, migrations),
                    }
                )
        result = MissingObjects(rows)
        text = "\n".join(
            [
                "# Objects the gates need",
                "",
                f"{len(rows) - result.missing} present, {result.missing} missing.",
                "",
                markdown_table(rows),
                "",
            ]
        )
        evidence.write("missing_objects.md", text)
        return result
