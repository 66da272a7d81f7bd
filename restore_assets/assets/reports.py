"""Runbook §2: the materials to produce — `ddl_inventory.md` and `missing_objects.md`."""

import fnmatch
import re

import pandas as pd
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from restore_assets.flyway import ResolvedMigration
from restore_assets.resources.environment import RestoreEnvironment
from restore_assets.resources.flyway_runner import load_flyway_config, native_engine
from restore_assets.resources.postgres import PostgresTarget
from restore_assets.resources.secrets_store import FILE_ROLES, SIDE_FILES, SecretsStore
from restore_assets.settings import LEGACY_SCHEMA_FILE, MODERN_SCHEMA_FILE, Settings

from .legacy import FACILITY_NUM
from .modernized import HISTORY, app_search_path
from .verify import find_object, user_tables

DDL_INVENTORY = AssetKey(["reports", "ddl_inventory"])
MISSING_OBJECTS = AssetKey(["reports", "missing_objects"])


def markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True) if not frame.empty else "(none)"


@asset(
    key=DDL_INVENTORY,
    deps=[HISTORY],
    group_name="reports",
    description="§2: the baseline files (sha256, size, mode, dump versions) and the migrations "
    "on disk with their checksums and applied state.",
)
def ddl_inventory(context: AssetExecutionContext, restore: RestoreEnvironment):
    settings = restore.settings()
    evidence = restore.evidence(context)
    store = SecretsStore(settings)
    files = pd.DataFrame(
        [
            {**store.inspect(rel).as_evidence(), "role": FILE_ROLES[rel]}
            for side in SIDE_FILES
            for rel in SIDE_FILES[side]
        ]
    )
    target = restore.target("modernized")
    engine = native_engine(load_flyway_config(settings, target), target, context.log.info)
    migrations = pd.DataFrame(
        [
            {
                "version": r.version or "",
                "description": r.description,
                "script": r.script,
                "checksum": "" if r.checksum is None else str(r.checksum),
                "state": r.state,
            }
            for r in engine.info()
        ]
    )
    text = "\n".join(
        [
            "# DDL inventory",
            "",
            f"Secrets root: `{settings.secrets_dir}`",
            "",
            "## Baseline files",
            "",
            markdown(files),
            "",
            f"## Flyway migrations ({', '.join(map(str, engine.config.location_dirs()))})",
            "",
            markdown(migrations),
            "",
        ]
    )
    path = evidence.write("ddl_inventory.md", text)
    return MaterializeResult(
        metadata={
            "baseline_files": MetadataValue.md(markdown(files)),
            "migrations": MetadataValue.md(markdown(migrations)),
            "path": MetadataValue.path(str(path)),
        }
    )


# Every object the gates need, per side (§2: facility_num, d_audit_event, d_factor2_* …).
def required_objects(settings: Settings) -> list[tuple[str, str, str]]:
    legacy = [("legacy", "sequence", "facility_num"), ("legacy", "table", "d_facility")]
    legacy += [("legacy", "table", t) for t in settings.legacy_expected_tables]
    modern = [("modernized", "table", "flyway_schema_history"), ("modernized", "table", "d_users")]
    modern += [("modernized", "table", t) for t in settings.modern_expected_tables]
    modern += [("modernized", "table", "d_factor2_*")]
    modern += [("modernized", "column", c) for c in settings.modern_expected_columns]
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
    if kind == "column" and re.search(
        rf"CREATE TABLE (?:\w+\.)?{obj} \([^;]*\b{_pattern(column)}\b", baseline_text, re.IGNORECASE
    ):
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


def object_rows(settings: Settings, legacy: PostgresTarget, modern: PostgresTarget) -> list[dict]:
    config = load_flyway_config(settings, modern)
    migrations: list[tuple[ResolvedMigration, str]] = [
        (m, m.read_text(config.encoding)) for m in native_engine(config, modern, print).resolved()
    ]
    schema = config.default_schema or (config.schemas[0] if config.schemas else "public")
    baselines = {
        "legacy": (LEGACY_SCHEMA_FILE, legacy, None),
        "modernized": (MODERN_SCHEMA_FILE, modern, app_search_path(schema)),
    }
    tables = {side: user_tables(baselines[side][1]) for side in baselines}
    texts = {}
    for side, (relpath, _, _) in baselines.items():
        path = settings.secrets_dir / relpath
        texts[side] = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    rows = []
    connections = {
        side: target.connect(autocommit=True) for side, (_, target, _) in baselines.items()
    }
    with connections["legacy"] as legacy_conn, connections["modernized"] as modern_conn:
        conns = {"legacy": legacy_conn, "modernized": modern_conn}
        for side, (_, _, search_path) in baselines.items():
            if search_path:
                conns[side].execute("SELECT set_config('search_path', %s, false)", (search_path,))
        for side, kind, name in required_objects(settings):
            if "*" in name:
                found = ", ".join(
                    f"{s}.{t}" for s, t in tables[side] if fnmatch.fnmatchcase(t, name)
                )
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
    return rows


@asset(
    key=MISSING_OBJECTS,
    deps=[FACILITY_NUM, HISTORY],
    group_name="reports",
    description="§2: every object the gates need, per side — present or missing, and where it "
    "comes from (baseline file or migration version).",
)
def missing_objects(context: AssetExecutionContext, restore: RestoreEnvironment):
    settings = restore.settings()
    evidence = restore.evidence(context)
    frame = pd.DataFrame(
        object_rows(settings, restore.target("legacy"), restore.target("modernized"))
    )
    missing = frame[frame["status"] == "MISSING"]
    text = "\n".join(
        [
            "# Objects the gates need",
            "",
            f"{len(frame) - len(missing)} present, {len(missing)} missing.",
            "",
            markdown(frame),
            "",
        ]
    )
    path = evidence.write("missing_objects.md", text)
    return MaterializeResult(
        metadata={
            "objects": MetadataValue.md(markdown(frame)),
            "missing": len(missing),
            "path": MetadataValue.path(str(path)),
        }
    )
