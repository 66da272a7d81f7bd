"""The project's adapter to the Flyway engine (`restore_assets.flyway`, a library that knows
nothing of the project): the conf with the runbook's `${DB_*}` filled from the Modernized
target, the native engine on the target's connections, the engine's errors taken into the
project's hierarchy, the command lines of the `cli` and `docker` runners, and the runbook's
diagnosis of a failure. Used by the §4.2 step (`runbook/migrate.py`), the `restore-assets flyway`
commands and every other runbook step that reads Flyway's state.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

from restore_assets.errors import RestoreError
from restore_assets.files import open_below
from restore_assets.flyway.commands.migrate import MigrateResult
from restore_assets.flyway.conf import FlywayConfig, load_conf
from restore_assets.flyway.engine import Flyway
from restore_assets.flyway.errors import FlywayError, MigrationFailed, missing_relation
from restore_assets.flyway.history_row import HistoryRow
from restore_assets.flyway.migration_info import InfoRow, pending_after_baseline
from restore_assets.flyway.resolver import ResolvedMigration
from restore_assets.pg.database import Database
from restore_assets.redaction import Redactor, describe, sqlstate_message
from restore_assets.settings import DEMO_FLYWAY_CONF, MODERN_SCHEMA_FILE, FlywaySettings


class FlywayFailed(RestoreError, FlywayError):
    """A Flyway command failed, as the project reports it: a RestoreError (exit 1) that is still
    the engine's FlywayError."""


class FlywayMigrationFailed(FlywayFailed, MigrationFailed):
    """A migration's SQL failed (the engine's MigrationFailed, with its script and line)."""


@contextmanager
def project_errors() -> Iterator[None]:
    """The engine's errors leave the adapter as the project's: same message, same fields."""
    try:
        yield
    except FlywayFailed:
        raise
    except FlywayError as exc:
        kind = FlywayMigrationFailed if isinstance(exc, MigrationFailed) else FlywayFailed
        args = exc.args
        if isinstance(exc, MigrationFailed) and exc.error is not None:
            args = (_migration_message(exc),)
        error = kind.__new__(kind, *args)
        error.__dict__.update(vars(exc))
        raise error.with_traceback(exc.__traceback__) from None


def _migration_message(exc: MigrationFailed) -> str:
    """The engine's MigrationFailed said by the project's rule (`redaction.describe`): the
    condition and the names PostgreSQL reports, its primary message only where that names
    objects (`relation "x" does not exist`), never a value. The engine's own message below its
    first line (the failing statement's first line, from the migration) is kept."""
    assert exc.error is not None
    rest = str(exc).partition("\n")[2]
    head = f"Migration {exc.script} failed at line {exc.line}: ERROR: {describe(exc.error)}"
    return f"{head}\n{rest}" if rest else head


CONTAINER_CONF_DIR = "/flyway/conf"
CONTAINER_SQL_DIR = "/flyway/sql"


def db_env(db: Database) -> dict[str, str]:
    """The runbook's `DB_*` variables, filled from the Modernized target."""
    info = db.conninfo()
    env = {
        "DB_HOST": str(info["host"]),
        "DB_PORT": str(info["port"]),
        "DB_NAME": str(info["dbname"]),
        "DB_USER": str(info["user"]),
        "DB_PASSWORD": db.settings.password or "",
    }
    if "sslmode" in info:
        env["DB_SSLMODE"] = str(info["sslmode"])
    return env


def load_flyway_config(
    flyway: FlywaySettings, db: Database, locations: str | None = None
) -> FlywayConfig:
    """`flyway.conf` as the engine reads it: always the conf the cli/docker runners hand Flyway."""
    env = {**os.environ, **db_env(db)}
    overrides = {}
    if locations or flyway.locations:
        overrides["flyway.locations"] = locations or flyway.locations
    with project_errors():
        return load_conf(
            flyway.conf, env=env, overrides=overrides, working_dir=working_dir(flyway, flyway.conf)
        )


def working_dir(flyway: FlywaySettings, conf: Path) -> Path:
    """Where relative `filesystem:` locations start, as Flyway's -workingDirectory:
    FLYWAY_WORKING_DIRECTORY, else the process's working directory. The bundled demo conf is
    read as if Flyway ran in its folder, so the demo works from anywhere."""
    if flyway.working_directory is not None:
        return flyway.working_directory
    if conf.resolve() == DEMO_FLYWAY_CONF.resolve():
        return DEMO_FLYWAY_CONF.parent
    return Path.cwd()


class DatabaseFlyway:
    """The native engine on a project target, as the project calls it: each command as the
    engine's, its errors the project's (`FlywayFailed`)."""

    def __init__(self, config: FlywayConfig, db: Database, log: Callable[[str], None]):
        self.config = config
        self.db = db
        self.engine = Flyway(config, db.open, log=log)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """`project_errors`; a statement that gave up waiting for another session's lock
        (RESTORE_WAIT_SECONDS, `Database.conninfo`) is said as such, naming the holders."""
        try:
            with project_errors():
                yield
        except psycopg.errors.LockNotAvailable:
            raise self.db.blocked("Flyway") from None
        except FlywayMigrationFailed as exc:
            if isinstance(exc.error, psycopg.errors.LockNotAvailable):
                raise self.db.blocked(f"Flyway ({exc.script})") from None
            raise

    def resolved(self) -> list[ResolvedMigration]:
        with self._errors():
            return self.engine.resolved()

    def pending_after_baseline(self) -> list[ResolvedMigration]:
        """What migrate would apply to this target once restored to its baseline."""
        with self._errors():
            return pending_after_baseline(self.config, self.engine.resolved())

    def schemas(self) -> tuple[list[str], str]:
        with self._errors():
            return self.engine.schemas()

    def history_rows(self) -> list[HistoryRow]:
        with self._errors():
            return self.engine.history_rows()

    def info(self) -> list[InfoRow]:
        with self._errors():
            return self.engine.info()

    def validate(self) -> list[str]:
        with self._errors():
            return self.engine.validate()

    def baseline(self) -> bool:
        with self._errors():
            return self.engine.baseline()

    def migrate(self) -> MigrateResult:
        with self._errors():
            return self.engine.migrate()

    def repair(self) -> dict[str, list[str]]:
        with self._errors():
            return self.engine.repair()


def native_engine(config: FlywayConfig, db: Database, log: Callable[[str], None]) -> DatabaseFlyway:
    return DatabaseFlyway(config, db, log)


@dataclass(frozen=True)
class ExternalCommand:
    """What the cli/docker runners execute; built separately so it can be checked without Docker."""

    argv: list[str]
    env: dict[str, str]
    volumes: dict[str, dict[str, str]]
    image: str | None = None
    # What its output must never show, whatever prints it: the target's password and the
    # conf's own flyway.password (which may be another one). See `Redactor`.
    secrets: tuple[str, ...] = ()

    def redact(self, output: str) -> str:
        return Redactor(self.secrets)(output)


def _secrets(config: FlywayConfig, db: Database) -> tuple[str, ...]:
    return tuple(p for p in (db.settings.password, config.password) if p)


# A restore step makes no call home: the Flyway CLI checks online for a newer version and has
# telemetry unless told not to.
QUIET = ["-skipCheckForUpdate"]
QUIET_ENV = {"REDGATE_DISABLE_TELEMETRY": "true"}


def _single_location(config: FlywayConfig) -> Path:
    dirs = config.location_dirs()
    if len(dirs) != 1:
        raise FlywayFailed("the cli/docker runners take exactly one filesystem: location")
    return dirs[0]


def runner_target(flyway: FlywaySettings, config: FlywayConfig, db: Database) -> list[str]:
    """The Modernized target as the cli/docker runners name it to Flyway: `-url` and `-user`,
    which win over the conf (the password goes by FLYWAY_PASSWORD, see `runner_env`). A conf
    whose own flyway.url, as the engine reads it, names another database is refused first: it
    was written for that database, and is an error to report, not one to correct silently."""
    if db.embedded:
        raise FlywayFailed(
            f"FLYWAY_RUNNER={flyway.runner} needs a Modernized target reachable over TCP "
            "(set MODERNIZED_POSTGRES_HOST); the embedded server listens on a local socket only"
        )
    target = db.settings
    with project_errors():
        named = config.jdbc
    if named is not None and (named.host.lower(), named.port, named.database) != (
        str(target.host).lower(),
        target.port,
        target.dbname,
    ):
        # host:port/database only: the conf's URL itself may carry a password.
        raise FlywayFailed(
            f"{flyway.conf} names {named.host}:{named.port}/{named.database} in flyway.url, not "
            f"the Modernized target being restored, {target.host}:{target.port}/{target.dbname}: "
            f"FLYWAY_RUNNER={flyway.runner} refuses a conf written for another database. Point "
            "flyway.url at the target (jdbc:postgresql://${DB_HOST}:${DB_PORT}/${DB_NAME}) "
            "or remove it"
        )
    host = f"[{target.host}]" if ":" in str(target.host) else target.host
    url = f"jdbc:postgresql://{host}:{target.port}/{quote(target.dbname, safe='')}"
    params = f"sslmode={quote(target.effective_sslmode, safe='')}"
    # Flyway's own statements wait for another session's lock as ours do (pgjdbc's `options`).
    params += f"&options={quote(f'-c lock_timeout={db.lock_timeout_ms}', safe='')}"
    if target.sslrootcert is not None:
        params += f"&sslrootcert={quote(str(target.sslrootcert), safe='/')}"
    return [f"-url={url}?{params}", f"-user={target.user}"]


def runner_env(db: Database) -> dict[str, str]:
    """The cli/docker runners' environment: the runbook's DB_* (for a conf's ${DB_*}), no call
    home, and the password as FLYWAY_PASSWORD, which wins over the conf as -password would
    without showing in `ps` (a process's command line is readable by every local user)."""
    password = {"FLYWAY_PASSWORD": db.settings.password} if db.settings.password else {}
    return {**db_env(db), **QUIET_ENV, **password}


def cli_command(
    flyway: FlywaySettings, config: FlywayConfig, db: Database, command: str
) -> ExternalCommand:
    """`flyway -configFiles=<conf> -url=<target> -user=<role> -locations=filesystem:<dir>
    <command>`, the password in the environment."""
    argv = [
        flyway.bin,
        f"-configFiles={flyway.conf}",
        *runner_target(flyway, config, db),
        f"-locations=filesystem:{_single_location(config)}",
        *QUIET,
        command,
    ]
    return ExternalCommand(argv=argv, env=runner_env(db), volumes={}, secrets=_secrets(config, db))


def docker_command(
    flyway: FlywaySettings, config: FlywayConfig, db: Database, command: str
) -> ExternalCommand:
    """The container the runbook starts by hand: conf and migrations mounted read-only."""
    target = runner_target(flyway, config, db)
    conf = flyway.conf.resolve()
    argv = [
        f"-configFiles={CONTAINER_CONF_DIR}/{conf.name}",
        *target,
        f"-locations=filesystem:{CONTAINER_SQL_DIR}",
        *QUIET,
        command,
    ]
    volumes = {
        str(conf.parent): {"bind": CONTAINER_CONF_DIR, "mode": "ro"},
        str(_single_location(config).resolve()): {"bind": CONTAINER_SQL_DIR, "mode": "ro"},
    }
    return ExternalCommand(
        argv=argv,
        env=runner_env(db),
        volumes=volumes,
        image=flyway.docker_image,
        secrets=_secrets(config, db),
    )


def run_cli(spec: ExternalCommand) -> str:
    env = {**os.environ, **spec.env}
    try:
        done = subprocess.run(spec.argv, env=env, capture_output=True, text=True)
    except FileNotFoundError:
        raise FlywayFailed(
            f"FLYWAY_RUNNER=cli but {spec.argv[0]!r} is not on PATH; install Flyway or set "
            "FLYWAY_BIN, or use FLYWAY_RUNNER=native"
        ) from None
    output = spec.redact(done.stdout + done.stderr)
    if done.returncode != 0:
        raise cli_failure(f"flyway {spec.argv[-1]} exited {done.returncode}", output)
    return output


# Flyway 10.17.3's CLI report of a failed script (FlywaySqlScriptException.getMessage on top of
# FlywaySqlException's): "ERROR: Script V9999__x.sql failed", then "SQL State  : 42P01",
# "Message    : ERROR: ...", "Line       : 2"; the version from DbMigrate's last
# 'Migrating schema "s" to version "9999 - x"' line. Checked by test_flyway_cli_runner.
_CLI_SCRIPT = re.compile(r"^ERROR: Script (\S+) failed$", re.M)
_CLI_FIELD = re.compile(r"^(SQL State|Message|Line) +: (.*)$", re.M)
_CLI_VERSION = re.compile(r'^Migrating schema "[^"]*" to version "([^" ]+)', re.M)
# Where Flyway quotes the server's own text: its `Message`/`Details` fields (and what is
# indented under them), a `Caused by:` chain. Everything from there to the next blank line.
_CLI_SERVER_TEXT = re.compile(
    r"^(?:Message|Details?|Error Code|Caused by|Location|Statement) *:.*(?:\n(?!\s*\n).*)*", re.M
)


def cli_failure(headline: str, output: str) -> FlywayFailed:
    """The CLI's failure as the native engine raises it: a failed script becomes MigrationFailed
    (script, version, line, SQL state, missing relation), so `diagnose` says the same for both.
    Flyway's `Message` quotes PostgreSQL's text, which can carry a row's value: a failed script
    is said from the structured fields only (script, line, SQL State; the message's first line
    only for a class whose messages name objects, `redaction.sqlstate_message`); any other
    failure keeps Flyway's own words without the fields that quote the server."""
    script = _CLI_SCRIPT.search(output)
    if script is None:
        return FlywayFailed(f"{headline}:\n{_CLI_SERVER_TEXT.sub('', output).strip()}")
    fields = dict(_CLI_FIELD.findall(output[script.end() :]))  # Flyway repeats the block
    versions = _CLI_VERSION.findall(output[: script.start()])
    line = fields.get("Line", "")
    state = fields.get("SQL State", "").strip()
    primary = fields.get("Message", "").strip().removeprefix("ERROR:").strip()
    try:
        said = sqlstate_message(state, primary)
    except ValueError:
        said = "no SQL State reported"
    where = f" at line {line}" if line.isdigit() else ""
    return FlywayMigrationFailed(
        f"{headline}: Migration {script.group(1)} failed{where}: ERROR: {said}",
        script=script.group(1),
        version=versions[-1] if versions else None,
        line=int(line) if line.isdigit() else None,
        sqlstate=state or None,
        relation=missing_relation(primary) if state == "42P01" else None,
    )


def diagnose(error: Exception, history: Sequence[HistoryRow], secrets_dir: Path) -> str | None:
    """Runbook §4.2/§4.3: say what went wrong in the runbook's words, not only SQL's."""
    if isinstance(error, MigrationFailed) and error.sqlstate == "42P01":
        baseline = secrets_dir / MODERN_SCHEMA_FILE
        if error.relation and _dump_defines(secrets_dir, error.relation) is False:
            return (
                f'migration {error.script} needs relation "{error.relation}", which neither '
                f"the Modernized baseline ({baseline}) nor an earlier migration creates: the "
                "migration itself is wrong (or a migration it depends on is missing)."
            )
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
    if isinstance(error, FlywayError) and "Detected failed " in str(error):
        return (
            "a failed migration is recorded in flyway_schema_history: remove its half-completed "
            "changes, run `restore-assets flyway repair`, then `restore-assets flyway migrate`."
        )
    return None


def _dump_defines(secrets_dir: Path, relation: str) -> bool | None:
    """Whether pg_dump's table of contents in the Modernized schema names a table or view
    called `relation`; None when it cannot be read as a regular file (missing, a link, a FIFO:
    opened as intake opens it, from the Secrets root by descriptor, never blocking)."""
    name = relation.rsplit(".", 1)[-1].strip('"')
    entries = (f"-- Name: {name}; Type: TABLE;", f"-- Name: {name}; Type: VIEW;")
    try:
        handle = open_below(secrets_dir, MODERN_SCHEMA_FILE)
    except OSError:
        return None
    with io.TextIOWrapper(handle, encoding="utf-8", errors="replace") as lines:
        return any(line.startswith(entries) for line in lines)


ContainerRunner = Callable[[ExternalCommand], str]
DOCKER_NEEDS_DAGSTER = (
    "FLYWAY_RUNNER=docker runs inside Dagster (restore-assets run, or the UI); "
    "use FLYWAY_RUNNER=native or cli for these commands"
)
