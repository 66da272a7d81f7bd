"""Runbook §4: the Modernized database — baseline restore, Flyway baseline + migrate, checks."""

import time

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
)
from psycopg import sql

from restore_assets.flyway import Flyway, FlywayError, Version
from restore_assets.flyway.engine import InfoRow
from restore_assets.flyway.history import HistoryRow
from restore_assets.resources.environment import (
    RestoreEnvironment,
    fail,
    record_step,
)
from restore_assets.resources.flyway_runner import (
    cli_command,
    diagnose,
    docker_command,
    load_flyway_config,
    native_engine,
    run_cli,
    run_docker,
)
from restore_assets.resources.postgres import PostgresTarget
from restore_assets.settings import MODERN_SCHEMA_FILE, Settings

from .secrets import SECRET_KEYS
from .steps import restore_step
from .verify import count_rows, count_transcripts, find_object, psql_capture

SIDE = "modernized"
SCHEMA = AssetKey(["modernized", "schema"])
HISTORY = AssetKey(["modernized", "flyway_history"])
HISTORY_QUERY = (
    "SELECT installed_rank, version, description, type, script, checksum, success FROM {} "
    "ORDER BY installed_rank;"
)


def app_search_path(schema: str) -> str:
    """The application's search_path: the Flyway schema first (`opendolphin, "$user", public`)."""
    return f'{sql.Identifier(schema).as_string(None)}, "$user", public'


@asset(
    key=SCHEMA,
    deps=[SECRET_KEYS[MODERN_SCHEMA_FILE]],
    group_name="modernized",
    description="§4.1-4.2: reset `public` and the Flyway schema, apply the Modernized schema dump "
    "in one transaction.",
    pool="restore_modernized",
)
def modernized_schema(context: AssetExecutionContext, restore: RestoreEnvironment):
    settings = restore.settings()
    try:
        config = load_flyway_config(settings, restore.target(SIDE))
    except FlywayError as exc:
        raise fail(exc, restore.evidence(context), "modernized/schema") from None
    # The restore also drops the schemas Flyway owns (the runbook's real restores did).
    flyway_schemas = [s for s in (*config.schemas, config.default_schema) if s]
    _, metadata = restore_step(
        context,
        restore,
        SIDE,
        "modernized/schema",
        "modern_psql.log",
        extra_reset_schemas=flyway_schemas,
    )
    return MaterializeResult(metadata=metadata)


def run_flyway(context, settings: Settings, target: PostgresTarget, engine: Flyway) -> list[str]:
    """Runbook §4.3: `flyway baseline` (when there is no history yet) then `flyway migrate`,
    by the configured runner. Returns what the runner printed."""
    config = engine.config
    if settings.flyway_runner == "native":
        if not engine.history_rows():
            engine.baseline()
        result = engine.migrate()
        return [f"migrate: applied {len(result.applied)} migration(s) in {result.seconds}s"]
    build = cli_command if settings.flyway_runner == "cli" else docker_command
    outputs = []
    for command in ("baseline", "migrate") if not engine.history_rows() else ("migrate",):
        spec = build(settings, config, target, command)
        if settings.flyway_runner == "cli":
            outputs.append(run_cli(spec, target.redact))
        else:
            outputs.append(run_docker(spec, context, target.redact))
    return outputs


def history_frame(rows: list[HistoryRow]) -> pd.DataFrame:
    columns = ["installed_rank", "version", "description", "type", "script", "checksum", "success"]
    return pd.DataFrame([{c: r.as_dict()[c] for c in columns} for r in rows], columns=columns)


def info_text(rows: list[InfoRow]) -> str:
    frame = pd.DataFrame([r.as_dict() for r in rows])
    if frame.empty:
        return "(no migrations)\n"
    frame.columns = ["Category", "Version", "Description", "Type", "Installed On", "State"]
    return frame.to_markdown(index=False, tablefmt="psql", disable_numparse=True) + "\n"


def verify_modernized(
    target: PostgresTarget, settings: Settings, schema: str, rows: list[HistoryRow]
) -> dict[str, tuple[bool, str, dict]]:
    """§4.3-4.4 checks, resolving names through the application's search_path."""
    successful = {Version.parse(r.version) for r in rows if r.version and r.success}
    required = [Version.parse(v) for v in settings.required_versions]
    missing_versions = [str(v) for v in required if v not in successful]
    with target.connect(autocommit=True) as conn:
        conn.execute("SELECT set_config('search_path', %s, false)", (app_search_path(schema),))
        tables = {t: find_object(conn, "table", t) for t in settings.modern_expected_tables}
        columns = {c: find_object(conn, "column", c) for c in settings.modern_expected_columns}
        trgm = find_object(conn, "extension", "pg_trgm")
    missing_tables = [t for t, where in tables.items() if not where]
    missing_columns = [c for c, where in columns.items() if not where]
    return {
        "history_versions": (
            not missing_versions,
            "successful versions include " + ", ".join(settings.required_versions)
            if not missing_versions
            else f"missing or failed versions: {', '.join(missing_versions)}; look at "
            "flyway_schema_history, `restore-assets flyway repair`, then migrate again",
            {"successful": sorted(str(v) for v in successful)},
        ),
        "expected_tables": (
            not missing_tables,
            "all present" if not missing_tables else f"missing: {', '.join(missing_tables)}",
            {"found": tables},
        ),
        "expected_columns": (
            not missing_columns,
            "all present" if not missing_columns else f"missing: {', '.join(missing_columns)}",
            {"found": columns},
        ),
        "pg_trgm": (
            bool(trgm),
            f"{trgm} installed" if trgm else "pg_trgm is not installed (V0002)",
            {},
        ),
    }


@asset(
    key=HISTORY,
    deps=[SCHEMA],
    group_name="modernized",
    description="§4.3: flyway baseline + migrate per flyway.conf; the history as a table.",
    check_specs=[
        AssetCheckSpec(
            "history_versions",
            asset=HISTORY,
            blocking=False,  # the gates report it, with the reason, rather than being skipped
            description="Flyway history has successful 0, 2, 3, 220, 221 (configurable).",
        ),
        AssetCheckSpec(
            "expected_tables",
            asset=HISTORY,
            description="d_audit_event, d_factor2_credential, d_factor2_challenge, "
            "d_third_party_disclosure, phr_async_job resolve on the application search_path.",
        ),
        AssetCheckSpec(
            "expected_columns",
            asset=HISTORY,
            description="d_document.admflag and d_module.performflag exist.",
        ),
        AssetCheckSpec("pg_trgm", asset=HISTORY, description="pg_trgm is installed (V0002)."),
    ],
    pool="restore_modernized",
)
def modernized_flyway_history(context: AssetExecutionContext, restore: RestoreEnvironment):
    settings = restore.settings()
    target = restore.target(SIDE)
    evidence = restore.evidence(context)
    lines: list[str] = []

    def log(message: str) -> None:
        lines.append(message)
        context.log.info(message)

    config = load_flyway_config(settings, target)
    engine = native_engine(config, target, log)
    try:
        started = time.monotonic()
        lines += run_flyway(context, settings, target, engine)
        seconds = round(time.monotonic() - started, 3)
    except FlywayError as exc:
        diagnosis = diagnose(exc, engine.history_rows(), settings.secrets_dir)
        lines += [f"ERROR: {exc}", *([f"DIAGNOSIS: {diagnosis}"] if diagnosis else [])]
        evidence.write("flyway_migrate.log", "\n".join(lines) + "\n" + info_text(engine.info()))
        record_step(evidence, "modernized/flyway", {"status": "failed", "error": str(exc)})
        message = f"{diagnosis}\n{exc}" if diagnosis else str(exc)
        raise fail(
            RuntimeError(message), evidence, "modernized/flyway_history", target=target.describe()
        ) from None
    rows = engine.history_rows()
    evidence.write("flyway_migrate.log", "\n".join(lines) + "\n" + info_text(engine.info()))
    schema = config.default_schema or (config.schemas[0] if config.schemas else "public")
    history_table = sql.Identifier(schema, config.table)
    evidence.write(
        "psql_flyway_schema_history.log",
        psql_capture(target, sql.SQL(HISTORY_QUERY).format(history_table).as_string(None)),
    )
    schemas = dict.fromkeys([*(config.schemas or ()), "public"])
    evidence.write(
        "psql_dt_modernized.log", psql_capture(target, *(f"\\dt {s}.*" for s in schemas))
    )
    preamble = (f"SET search_path TO {app_search_path(schema)};",)
    count_transcripts(target, settings.legacy_count_tables, SIDE, evidence, preamble)
    with target.connect(autocommit=True) as conn:
        conn.execute("SELECT set_config('search_path', %s, false)", (app_search_path(schema),))
        counts = count_rows(conn, settings.legacy_count_tables)
    results = verify_modernized(target, settings, schema, rows)
    record_step(
        evidence,
        "modernized/flyway",
        {
            "status": "ok" if all(ok for ok, _, _ in results.values()) else "failed",
            "runner": settings.flyway_runner,
            "history_rows": len(rows),
            "versions": ", ".join(r.version for r in rows if r.version),
        },
    )
    yield MaterializeResult(
        metadata={
            "history": MetadataValue.md(history_frame(rows).to_markdown(index=False)),
            "runner": settings.flyway_runner,
            "duration_s": seconds,
            "row_counts": MetadataValue.json(counts),
            "flyway_log": MetadataValue.path(str(evidence.path("flyway_migrate.log"))),
            "evidence": MetadataValue.path(str(evidence.folder)),
        }
    )
    for name, (passed, detail, extra) in results.items():
        yield AssetCheckResult(
            check_name=name,
            passed=passed,
            description=detail,
            metadata={key: MetadataValue.json(value) for key, value in extra.items()},
        )
