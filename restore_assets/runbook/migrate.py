"""Runbook §4.2: `flyway baseline` + `flyway migrate` on the Modernized target, by the configured
runner — the native engine (default), a `flyway` binary on PATH, or the official `flyway/flyway`
image (the Dagster shell passes in a function that runs it through PipesDockerClient), as the
runbook does by hand. Whatever ran it, the history is read back and judged by the native code.

The runners themselves (conf, engine, command lines, diagnosis) are `runbook/flyway_adapter.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.errors import FlywayError
from restore_assets.flyway.history_row import HistoryRow
from restore_assets.flyway.migration_info import info_table
from restore_assets.pg.database import Database
from restore_assets.pg.transcripts import psql_transcript
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.runbook.flyway_adapter import (
    DOCKER_NEEDS_DAGSTER,
    ContainerRunner,
    DatabaseFlyway,
    FlywayFailed,
    cli_command,
    diagnose,
    docker_command,
    load_flyway_config,
    native_engine,
    run_cli,
)
from restore_assets.runbook.preflight import reading_lock
from restore_assets.settings import FlywaySettings, Settings


def flyway_schemas(flyway: FlywaySettings, db: Database) -> tuple[list[str], str]:
    """The schemas Flyway manages on the Modernized target and the default one (history table,
    first on the application's search_path) — decided by the engine, as Flyway decides it."""
    return native_engine(load_flyway_config(flyway, db), db, lambda _: None).schemas()


HISTORY_COLUMNS = ("installed_rank", "version", "description", "type", "script", "checksum")


def history_summary(rows: Sequence[HistoryRow]) -> list[dict[str, object]]:
    """The history as the evidence and the UI show it (no installer, no timestamps)."""
    return [{c: r.as_dict()[c] for c in HISTORY_COLUMNS} | {"success": r.success} for r in rows]


HISTORY_QUERY = (
    "SELECT installed_rank, version, description, type, script, checksum, success "
    'FROM :"schema".:"table" ORDER BY installed_rank;'
)


@dataclass
class FlywayStep:
    """What §4.2 did: the runner's output lines, the history it left, how long it took."""

    runner: str
    lines: list[str]
    history: list[HistoryRow] = field(default_factory=list)
    schema: str = "public"  # the default schema: history table, application search_path
    seconds: float = 0.0


def run_flyway(
    settings: Settings,
    db: Database,
    evidence: EvidenceStore,
    log: Callable[[str], None] = print,
    run_container: ContainerRunner | None = None,
) -> FlywayStep:
    """`flyway baseline` (when there is no history yet) then `flyway migrate`; writes
    `flyway_migrate.log` (runner output + info table) and `psql_flyway_schema_history.log`.
    On failure the log says what went wrong in the runbook's words and FlywayFailed is raised."""
    with reading_lock(db):
        step = FlywayStep(settings.flyway.runner, [])

        def note(message: str) -> None:
            step.lines.append(message)
            log(message)

        config = load_flyway_config(settings.flyway, db)
        engine = native_engine(config, db, note)
        started = time.monotonic()
        try:
            step.lines += _run(settings, config, db, engine, run_container)
        except FlywayError as exc:
            diagnosis = diagnose(exc, engine.history_rows(), settings.paths.secrets_dir)
            step.lines += [f"ERROR: {exc}", *([f"DIAGNOSIS: {diagnosis}"] if diagnosis else [])]
            evidence.write(
                "flyway_migrate.log", "\n".join(step.lines) + "\n" + info_table(engine.info())
            )
            raise FlywayFailed(f"{diagnosis}\n{exc}" if diagnosis else str(exc)) from None
        step.seconds = round(time.monotonic() - started, 3)
        step.history = engine.history_rows()
        evidence.write(
            "flyway_migrate.log", "\n".join(step.lines) + "\n" + info_table(engine.info())
        )
        step.schema = engine.schemas()[1]
        variables = {"schema": step.schema, "table": config.table}
        evidence.write(
            "psql_flyway_schema_history.log",
            psql_transcript(db, HISTORY_QUERY, variables=variables, echo="queries"),
        )
        return step


def _run(
    settings: Settings,
    config: FlywayConfig,
    db: Database,
    engine: DatabaseFlyway,
    run_container: ContainerRunner | None,
) -> list[str]:
    if settings.flyway.runner == "native":
        if not engine.history_rows():
            engine.baseline()
        result = engine.migrate()
        return [f"migrate: applied {len(result.applied)} migration(s) in {result.seconds}s"]
    commands = ("baseline", "migrate") if not engine.history_rows() else ("migrate",)
    if settings.flyway.runner == "cli":
        return [run_cli(cli_command(settings.flyway, config, db, c)) for c in commands]
    if run_container is None:
        raise FlywayFailed(DOCKER_NEEDS_DAGSTER)
    return [run_container(docker_command(settings.flyway, config, db, c)) for c in commands]
