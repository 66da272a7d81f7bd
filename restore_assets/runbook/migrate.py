"""Runbook §4.3: `flyway baseline` + `flyway migrate` on the Modernized target, by the configured
runner — the native engine (default), a `flyway` binary on PATH, or the official `flyway/flyway`
image (the Dagster shell passes in a function that runs it through PipesDockerClient), as the
runbook does by hand. Whatever ran it, the history is read back and judged by the native code.

No Dagster import: the `restore-assets flyway` commands use this and stay fast.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from restore_assets.flyway import Flyway, FlywayConfig, FlywayError, MigrationFailed, load_conf
from restore_assets.flyway.history_row import HistoryRow
from restore_assets.flyway.planning import InfoRow
from restore_assets.pg.targets import PostgresTarget
from restore_assets.pg.transcripts import psql_transcript
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.settings import MODERN_SCHEMA_FILE, Settings

CONTAINER_CONF_DIR = "/flyway/conf"
CONTAINER_SQL_DIR = "/flyway/sql"


def db_env(target: PostgresTarget) -> dict[str, str]:
    """The runbook's `DB_*` variables, filled from the Modernized target."""
    info = target.conninfo()
    env = {
        "DB_HOST": str(info["host"]),
        "DB_PORT": str(info["port"]),
        "DB_NAME": str(info["dbname"]),
        "DB_USER": str(info["user"]),
        "DB_PASSWORD": target.target.password or "",
    }
    if "sslmode" in info:
        env["DB_SSLMODE"] = str(info["sslmode"])
    return env


def load_flyway_config(
    settings: Settings,
    target: PostgresTarget,
    conf: Path | None = None,
    locations: str | None = None,
) -> FlywayConfig:
    env = {**os.environ, **db_env(target)}
    overrides = {}
    if locations or settings.flyway_locations:
        overrides["flyway.locations"] = locations or settings.flyway_locations
    return load_conf(conf or settings.flyway_conf, env=env, overrides=overrides)


def native_engine(
    config: FlywayConfig, target: PostgresTarget, log: Callable[[str], None]
) -> Flyway:
    return Flyway(config, target.open, log=log)


@dataclass(frozen=True)
class ExternalCommand:
    """What the cli/docker runners execute; built separately so it can be checked without Docker."""

    argv: list[str]
    env: dict[str, str]
    volumes: dict[str, dict[str, str]]
    image: str | None = None


def _single_location(config: FlywayConfig) -> Path:
    dirs = config.location_dirs()
    if len(dirs) != 1:
        raise FlywayError("the cli/docker runners take exactly one filesystem: location")
    return dirs[0]


def cli_command(
    settings: Settings, config: FlywayConfig, target: PostgresTarget, command: str
) -> ExternalCommand:
    """`flyway -configFiles=<conf> -locations=filesystem:<dir> <command>` with DB_* in env."""
    argv = [
        settings.flyway_bin,
        f"-configFiles={settings.flyway_conf}",
        f"-locations=filesystem:{_single_location(config)}",
        command,
    ]
    return ExternalCommand(argv=argv, env=db_env(target), volumes={})


def docker_command(
    settings: Settings, config: FlywayConfig, target: PostgresTarget, command: str
) -> ExternalCommand:
    """The container the runbook starts by hand: conf and migrations mounted read-only."""
    if target.embedded:
        raise FlywayError(
            "FLYWAY_RUNNER=docker needs a Modernized target reachable over TCP "
            "(set MODERNIZED_POSTGRES_HOST); the embedded server listens on a local socket only"
        )
    conf = settings.flyway_conf.resolve()
    argv = [
        f"-configFiles={CONTAINER_CONF_DIR}/{conf.name}",
        f"-locations=filesystem:{CONTAINER_SQL_DIR}",
        command,
    ]
    volumes = {
        str(conf.parent): {"bind": CONTAINER_CONF_DIR, "mode": "ro"},
        str(_single_location(config).resolve()): {"bind": CONTAINER_SQL_DIR, "mode": "ro"},
    }
    return ExternalCommand(
        argv=argv, env=db_env(target), volumes=volumes, image=settings.flyway_docker_image
    )


def run_cli(spec: ExternalCommand, redact: Callable[[str], str]) -> str:
    env = {**os.environ, **spec.env}
    try:
        done = subprocess.run(spec.argv, env=env, capture_output=True, text=True)
    except FileNotFoundError:
        raise FlywayError(
            f"FLYWAY_RUNNER=cli but {spec.argv[0]!r} is not on PATH; install Flyway or set "
            "FLYWAY_BIN, or use FLYWAY_RUNNER=native"
        ) from None
    output = redact(done.stdout + done.stderr)
    if done.returncode != 0:
        raise FlywayError(f"flyway {spec.argv[-1]} exited {done.returncode}:\n{output}")
    return output


def diagnose(error: Exception, history: Sequence[HistoryRow], secrets_dir: Path) -> str | None:
    """Runbook §4.3/§4.4: say what went wrong in the runbook's words, not only SQL's."""
    if isinstance(error, MigrationFailed) and error.sqlstate == "42P01":
        baselined = any(r.type == "BASELINE" for r in history)
        return (
            f"baseline missing: migration {error.script} needs relation "
            f'"{error.relation}", which comes from the Modernized baseline, not from a '
            f"migration. Restore {secrets_dir / MODERN_SCHEMA_FILE} first (restore-assets run "
            "--only modernized)"
            + (
                "; the history holds a baseline row although the baseline objects are absent"
                if baselined
                else ""
            )
            + "."
        )
    if isinstance(error, FlywayError) and "Detected failed migration" in str(error):
        return (
            "a failed migration is recorded in flyway_schema_history: remove its half-completed "
            "changes, run `restore-assets flyway repair`, then `restore-assets flyway migrate`."
        )
    return None


def flyway_schemas(settings: Settings, target: PostgresTarget) -> tuple[list[str], str]:
    """The schemas Flyway manages on the Modernized target and the default one (history table,
    first on the application's search_path) — decided by the engine, as Flyway decides it."""
    return native_engine(load_flyway_config(settings, target), target, lambda _: None).schemas()


INFO_COLUMNS = ("Category", "Version", "Description", "Type", "Installed On", "State")


def info_table(rows: Sequence[InfoRow]) -> str:
    """Flyway's own `info` layout: a boxed text table (CLI output and flyway_migrate.log)."""
    cells = [tuple(str(v) for v in r.as_dict().values()) for r in rows]
    widths = [max(len(c) for c in column) for column in zip(INFO_COLUMNS, *cells, strict=True)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    return "\n".join([rule, line(INFO_COLUMNS), rule, *(line(c) for c in cells), rule])


HISTORY_COLUMNS = ("installed_rank", "version", "description", "type", "script", "checksum")


def history_summary(rows: Sequence[HistoryRow]) -> list[dict[str, object]]:
    """The history as the evidence and the UI show it (no installer, no timestamps)."""
    return [{c: r.as_dict()[c] for c in HISTORY_COLUMNS} | {"success": r.success} for r in rows]


HISTORY_QUERY = (
    "SELECT installed_rank, version, description, type, script, checksum, success "
    'FROM :"schema".:"table" ORDER BY installed_rank;'
)

ContainerRunner = Callable[[ExternalCommand], str]
DOCKER_NEEDS_DAGSTER = (
    "FLYWAY_RUNNER=docker runs inside Dagster (restore-assets run, or the UI); "
    "use FLYWAY_RUNNER=native or cli for these commands"
)


@dataclass
class FlywayStep:
    """What §4.3 did: the runner's output lines, the history it left, how long it took."""

    runner: str
    lines: list[str]
    history: list[HistoryRow] = field(default_factory=list)
    schema: str = "public"  # the default schema: history table, application search_path
    seconds: float = 0.0


def run_flyway(
    settings: Settings,
    target: PostgresTarget,
    evidence: EvidenceStore,
    log: Callable[[str], None] = print,
    run_container: ContainerRunner | None = None,
) -> FlywayStep:
    """`flyway baseline` (when there is no history yet) then `flyway migrate`; writes
    `flyway_migrate.log` (runner output + info table) and `psql_flyway_schema_history.log`.
    On failure the log says what went wrong in the runbook's words and FlywayError is raised."""
    step = FlywayStep(settings.flyway_runner, [])

    def note(message: str) -> None:
        step.lines.append(message)
        log(message)

    config = load_flyway_config(settings, target)
    engine = native_engine(config, target, note)
    started = time.monotonic()
    try:
        step.lines += _run(settings, config, target, engine, run_container)
    except FlywayError as exc:
        diagnosis = diagnose(exc, engine.history_rows(), settings.secrets_dir)
        step.lines += [f"ERROR: {exc}", *([f"DIAGNOSIS: {diagnosis}"] if diagnosis else [])]
        evidence.write(
            "flyway_migrate.log", "\n".join(step.lines) + "\n" + info_table(engine.info())
        )
        raise FlywayError(f"{diagnosis}\n{exc}" if diagnosis else str(exc)) from None
    step.seconds = round(time.monotonic() - started, 3)
    step.history = engine.history_rows()
    evidence.write("flyway_migrate.log", "\n".join(step.lines) + "\n" + info_table(engine.info()))
    step.schema = engine.schemas()[1]
    variables = {"schema": step.schema, "table": config.table}
    evidence.write(
        "psql_flyway_schema_history.log",
        psql_transcript(target, HISTORY_QUERY, variables=variables, echo="queries"),
    )
    return step


def _run(
    settings: Settings,
    config: FlywayConfig,
    target: PostgresTarget,
    engine: Flyway,
    run_container: ContainerRunner | None,
) -> list[str]:
    if settings.flyway_runner == "native":
        if not engine.history_rows():
            engine.baseline()
        result = engine.migrate()
        return [f"migrate: applied {len(result.applied)} migration(s) in {result.seconds}s"]
    commands = ("baseline", "migrate") if not engine.history_rows() else ("migrate",)
    if settings.flyway_runner == "cli":
        return [run_cli(cli_command(settings, config, target, c), target.redact) for c in commands]
    if run_container is None:
        raise FlywayError(DOCKER_NEEDS_DAGSTER)
    return [run_container(docker_command(settings, config, target, c)) for c in commands]
