"""The environment-variable contract (DESIGN.md "Configuration"), declared and read in one place.

Everything else takes a `Settings` (or the section of it it needs) instead of reading
`os.environ`, so a test or the CLI can build one explicitly and nothing depends on process-wide
state by accident. Each variable is one typed field below: its name (the field's alias), its
default and its parsing. The sections are pydantic-settings models, read by a pydantic-settings
source (`_Given`) from exactly the mapping `load_settings` is given; it validates them all at
once, and an unusable value becomes a `ConfigError` naming the variable, one line each. The
models are frozen: a run that overrides a value gets a copy (`with_overrides`).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from restore_assets.errors import ConfigError
from restore_assets.redaction import Redactor

# Runbook §1: the three baseline files, relative to the Secrets root.
LEGACY_SCHEMA_FILE = "legacy-server/db-baseline/opendolphin-legacy-schema.sql"
LEGACY_SEED_FILE = "legacy-server/db-baseline/opendolphin-legacy-seed.sql"
MODERN_SCHEMA_FILE = "server-modernized/db-baseline/opendolphin-modern-schema.sql"

# Runbook §3.3/§3.5: what the Legacy checks look for unless configured otherwise.
DEFAULT_LEGACY_EXPECTED_TABLES = (
    "d_users",
    "d_audit_event",
    "d_factor2_*",
    "claim_item",
    "diagnosis_module",
)
DEFAULT_LEGACY_COUNT_TABLES = ("d_users", "d_audit_event", "d_factor2_credential")
DEFAULT_PATIENT_FACILITY = "1.3.6.1.4.1.9414.72.103"
# Runbook §4.2/§4.3: what the Modernized checks look for unless configured otherwise.
DEFAULT_REQUIRED_VERSIONS = ("0", "2", "3", "220", "221")
DEFAULT_MODERN_EXPECTED_TABLES = (
    "d_audit_event",
    "d_factor2_credential",
    "d_factor2_challenge",
    "d_third_party_disclosure",
    "phr_async_job",
)
DEFAULT_MODERN_EXPECTED_COLUMNS = ("d_document.admflag", "d_module.performflag")
DEMO_FLYWAY_CONF = Path(__file__).parent / "demo" / "flyway" / "flyway.conf"
FLYWAY_RUNNERS = ("native", "docker", "cli")
DEFAULT_SYNC_TABLES = ("d_facility", "d_users", "d_roles")
# How often `secrets_sensor` looks; also what the code location uses while the settings are bad.
DEFAULT_SENSOR_INTERVAL_SECONDS = 30
DEFAULT_MAX_RUNTIME_SECONDS = 4 * 3600
SIDES = ("legacy", "modernized")
DEFAULT_TARGET = "default"  # the environment's target's name, when RESTORE_TARGETS is unset
# Each side's variables are `<prefix>HOST`, `_PORT`, …; these defaults differ by side.
DATABASE_ENV_PREFIXES = {"legacy": "POSTGRES_", "modernized": "MODERNIZED_POSTGRES_"}
_DATABASE_DEFAULTS = {
    "legacy": {"PORT": 5432, "DB": "opendolphin"},
    "modernized": {"PORT": 55432, "DB": "opendolphin_modern"},
}
# Runbook §5's `DB_SSLMODE`: the fallback for both targets when their own *_SSLMODE is unset.
SSLMODE_FALLBACK = "DB_SSLMODE"
# libpq's own variable for verify-ca/verify-full's root certificate: the fallback for both
# targets' *_SSLROOTCERT (psql and pg_dump get it from the settings, never from the environment).
SSLROOTCERT_FALLBACK = "PGSSLROOTCERT"
# Without *_SSLMODE or DB_SSLMODE: the runbook's `require` for a server across the network,
# libpq's `prefer` on this machine (a loopback address, localhost, a Unix socket folder).
REMOTE_SSLMODE, LOCAL_SSLMODE = "require", "prefer"
# Read from the process environment only, never from `.env`: RESTORE_DOTENV names the `.env`
# itself, and Dagster reads DAGSTER_HOME from the process environment.
ENVIRONMENT_ONLY = ("RESTORE_DOTENV", "DAGSTER_HOME")
# The operators' language when RESTORE_LANG is unset: the locale's, as POSIX ranks its variables.
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")


# What a value must look like. Each refusal is the tail of a line that starts `NAME='value'`.


def _flag(value: Any) -> bool:
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise PydanticCustomError("flag", "is not a boolean; use true or false")


def _port(value: Any) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise PydanticCustomError("port", "is not a port number (1-65535)")
    return port


def _seconds(value: Any) -> int:
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise PydanticCustomError("seconds", "is not a number of seconds (1 or more)")
    return seconds


def _count(value: Any) -> int:
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise PydanticCustomError("count", "is not a whole number (0 or more)")
    return count


def _split(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # already a sequence (targets.yaml, or code)
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _runner(value: str) -> str:
    runner = value.strip().lower()
    if runner not in FLYWAY_RUNNERS:
        raise PydanticCustomError("runner", "is not a Flyway runner; use native, docker or cli")
    return runner


def _one_of(allowed: tuple[str, ...], why: str = ""):
    """A check that every item of a comma list is one of `allowed` (`why`: what the others
    cannot be)."""

    def check(items: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [item for item in items if item not in allowed]
        if unknown:
            raise PydanticCustomError(
                "one_of",
                "names {unknown}" + why + "; choose from {allowed}",
                {"unknown": ", ".join(unknown), "allowed": ", ".join(allowed)},
            )
        return items

    return check


# The working directory `load_settings` was given. Not the validation context: pydantic-settings
# models validate through BaseSettings' constructor, which takes none.
_CWD: ContextVar[Path | None] = ContextVar("settings_cwd", default=None)


def _resolved(path: Path) -> Path:
    """`~` expanded; relative to the working directory `load_settings` was given."""
    path = path.expanduser()
    return path if path.is_absolute() else (_CWD.get() or Path.cwd()) / path


def _existing_conf(path: Path) -> Path:
    if not path.is_file():
        # `shown`: the line names the resolved path, not what was typed.
        raise PydanticCustomError(
            "missing_conf", "does not exist; point it at a flyway.conf", {"shown": str(path)}
        )
    return path


Flag = Annotated[bool, BeforeValidator(_flag)]
Port = Annotated[int, BeforeValidator(_port)]
Seconds = Annotated[int, BeforeValidator(_seconds)]
Count = Annotated[int, BeforeValidator(_count)]  # 0 allowed: none, or no limit
# NoDecode: a comma list, not the JSON pydantic-settings would expect for a tuple.
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split)]
# The one rule for what §4.4 may copy: RESTORE_SYNC_TABLES and targets.yaml's sync_tables.
SyncTables = Annotated[
    CommaList, AfterValidator(_one_of(DEFAULT_SYNC_TABLES, ", which cannot be synced"))
]
Resolved = Annotated[Path, AfterValidator(_resolved)]


class Section(BaseSettings):
    """A frozen group of settings. A field with an alias is a variable of that name (a target's:
    after its prefix); a field without one is set by the code (`side`, `target_name`)."""

    # validate_by_name: code builds and copies sections by field name; the reader by variable.
    # validate_default=False: pydantic-settings' default would re-validate typed defaults; the
    # fields that need it (paths) say so.
    model_config = SettingsConfigDict(
        frozen=True, validate_by_name=True, validate_by_alias=True, validate_default=False
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, **_: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what it is given: `load_settings` passes what `_Given` read from its mapping, and a
        # section built in code (targets.yaml's) never reads os.environ or a .env by itself.
        return (init_settings,)

    @classmethod
    def aliases(cls) -> list[str]:
        """The variables of this section (a target's: after its prefix)."""
        return [f.alias for f in cls.model_fields.values() if f.alias]


class _Given(PydanticBaseSettingsSource):
    """pydantic-settings' source for one section: its variables (`env_prefix` + alias) from the
    mapping `load_settings` was given. An empty value is unset, and names are upper case:
    `postgres_host` is not `POSTGRES_HOST`.

    The prefix goes before the alias (pydantic-settings' own environment source ignores it for
    an aliased field), and it is given here, as BaseSettings' `_env_prefix` would be, rather than
    fixed in a model_config: the same DatabaseSettings serves both sides (and targets.yaml), its
    variables `HOST`, `PORT`, `DB`… after the side's prefix. The other sections have none."""

    def __init__(
        self, settings_cls: type[BaseSettings], env: Mapping[str, str | None], prefix: str = ""
    ):
        super().__init__(settings_cls)
        self.env = env
        self.env_prefix = prefix

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = f"{self.env_prefix}{field.alias}"
        return self.env.get(name) or None, name, False

    def __call__(self) -> dict[str, Any]:
        """The variables `env` sets, by alias (the validation reports them by that name)."""
        values = {}
        for field_name, info in self.settings_cls.model_fields.items():
            if info.alias:  # a field without one is set by the code
                value, _, _ = self.get_field_value(info, field_name)
                if value is not None:
                    values[info.alias] = value
        return values


class Paths(Section):
    secrets_dir: Resolved = Field(Path("~/Secrets"), alias="SECRETS_DIR", validate_default=True)
    artifacts_dir: Resolved = Field(
        Path("artifacts"), alias="RESTORE_ARTIFACTS_DIR", validate_default=True
    )
    state_dir: Resolved = Field(
        Path(".restore_state"), alias="RESTORE_STATE_DIR", validate_default=True
    )
    # Dagster's own variable, taken as it is (Dagster insists on an absolute path).
    dagster_home_given: Path | None = Field(None, alias="DAGSTER_HOME")
    # Whether SECRETS_DIR was set (environment or .env) rather than defaulted: `make ui` then
    # watches it, else the demo's Secrets when there are some.
    secrets_dir_given: bool = False

    @model_validator(mode="before")
    @classmethod
    def _note_given(cls, data: Any) -> Any:
        if isinstance(data, dict) and "secrets_dir_given" not in data:
            data = {**data, "secrets_dir_given": "SECRETS_DIR" in data or "secrets_dir" in data}
        return data

    @property
    def dagster_home(self) -> Path:
        """The Dagster instance the CLI and `make ui` record runs in."""
        return self.dagster_home_given or self.state_dir / "dagster_home"


class DatabaseSettings(Section):
    """One PostgreSQL database's connection settings. `host=None` means the embedded server."""

    side: str
    host: str | None = Field(None, alias="HOST")
    port: Port = Field(alias="PORT")  # default: _DATABASE_DEFAULTS
    dbname: str = Field(alias="DB")  # default: _DATABASE_DEFAULTS
    user: str = Field("opendolphin", alias="USER")
    password: str | None = Field(None, alias="PASSWORD", repr=False)
    sslmode: str | None = Field(None, alias="SSLMODE")  # else DB_SSLMODE; None: by host
    sslrootcert: Resolved | None = Field(None, alias="SSLROOTCERT")  # else PGSSLROOTCERT
    origin: str | None = None  # where it was configured, if not the environment (targets.yaml)

    @property
    def embedded(self) -> bool:
        return self.host is None

    @property
    def effective_sslmode(self) -> str:
        """The sslmode every connection to this database uses: the one configured, else
        `require` across the network and `prefer` on this machine (`is_local`)."""
        if self.sslmode:
            return self.sslmode
        return LOCAL_SSLMODE if is_local(self.host) else REMOTE_SSLMODE

    def describe(self) -> str:
        """A password-free name for logs and evidence."""
        where = "embedded" if self.embedded else f"{self.host}:{self.port}"
        return f"{self.side} {self.user}@{where}/{self.dbname}"

    @property
    def env_prefix(self) -> str:
        """Where this target's settings come from (`POSTGRES_`, `MODERNIZED_POSTGRES_`)."""
        return DATABASE_ENV_PREFIXES[self.side]


class Checks(Section):
    """What the gates look for (runbook §3.3/§3.5, §4.2-§4.4)."""

    legacy_expected_tables: CommaList = Field(
        DEFAULT_LEGACY_EXPECTED_TABLES, alias="RESTORE_LEGACY_EXPECTED_TABLES"
    )
    legacy_count_tables: CommaList = Field(
        DEFAULT_LEGACY_COUNT_TABLES, alias="RESTORE_LEGACY_COUNT_TABLES"
    )
    patient_facility: str = Field(DEFAULT_PATIENT_FACILITY, alias="RESTORE_PATIENT_FACILITY")
    required_versions: CommaList = Field(
        DEFAULT_REQUIRED_VERSIONS, alias="RESTORE_FLYWAY_REQUIRED_VERSIONS"
    )
    modern_expected_tables: CommaList = Field(
        DEFAULT_MODERN_EXPECTED_TABLES, alias="RESTORE_MODERN_EXPECTED_TABLES"
    )
    modern_expected_columns: CommaList = Field(
        DEFAULT_MODERN_EXPECTED_COLUMNS, alias="RESTORE_MODERN_EXPECTED_COLUMNS"
    )
    sync_tables: SyncTables = Field(DEFAULT_SYNC_TABLES, alias="RESTORE_SYNC_TABLES")
    facility_api_url: str | None = Field(None, alias="RESTORE_FACILITY_API_URL")


class FlywaySettings(Section):
    conf: Annotated[Resolved, AfterValidator(_existing_conf)] = Field(
        DEMO_FLYWAY_CONF, alias="FLYWAY_CONF", validate_default=True
    )
    locations: str | None = Field(None, alias="FLYWAY_LOCATIONS")
    working_directory: Resolved | None = Field(None, alias="FLYWAY_WORKING_DIRECTORY")
    runner: Annotated[str, BeforeValidator(_runner)] = Field("native", alias="FLYWAY_RUNNER")
    bin: str = Field("flyway", alias="FLYWAY_BIN")
    docker_image: str = Field("flyway/flyway:10", alias="FLYWAY_DOCKER_IMAGE")


class Intake(Section):
    """Runbook §0: the encrypted ZIPs of the inbox, and the zip-bomb limits, enforced on the
    bytes actually decompressed (headers can lie)."""

    zip_password: SecretStr | None = Field(None, alias="SECRETS_ZIP_PASSWORD")
    # A baseline delivery is a few GB; more is a bomb or a mistake.
    zip_max_total_mib: Annotated[int, Field(gt=0)] = Field(64 << 10, alias="RESTORE_ZIP_MAX_MIB")
    # pg_dump text deflates about 5-20:1; a bomb about 1000:1.
    zip_max_ratio: Annotated[int, Field(gt=1)] = Field(200, alias="RESTORE_ZIP_MAX_RATIO")


class SensorSettings(Section):
    """The unattended service: how often it looks, and the bounds of the runs it requests."""

    interval_seconds: Seconds = Field(
        DEFAULT_SENSOR_INTERVAL_SECONDS, alias="RESTORE_SENSOR_INTERVAL_SECONDS"
    )
    # A run whose process died (SIGKILL, OOM, reboot) is requested again this many times; a
    # content that kills its run every time is then left failed, not retried for ever.
    crash_retries: Count = Field(2, alias="RESTORE_CRASH_RETRIES")
    # Dagster's run monitoring stops a requested run after this long (`dagster/max_runtime`);
    # 0 = no limit. A restore runs at about 0.14 s/MB here (docs/benchmarks.md): 4 h is
    # many times a few-GB delivery, so only a stuck run meets it.
    max_runtime_seconds: Count = Field(
        DEFAULT_MAX_RUNTIME_SECONDS, alias="RESTORE_MAX_RUNTIME_SECONDS"
    )


NOTIFY_KINDS = ("blocked", "failed", "crashed", "waiting", "passed")
DEFAULT_NOTIFY_ON = ("blocked", "failed", "crashed", "waiting")


def _webhook(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().startswith(("https://", "http://")):
        raise PydanticCustomError(
            "webhook", "is not an http(s) URL; use the incoming webhook's URL"
        )
    return value


def _hours(value: Any) -> float:
    try:
        hours = float(value)
    except ValueError:
        hours = 0.0
    if not hours > 0:
        raise PydanticCustomError("hours", "is not a number of hours (more than 0)")
    return hours


class Notify(Section):
    """Telling Ops (runbook §0/§7: Slack `#ops-db` or a ticket): an incoming webhook, mail."""

    # Secret: a Slack-style webhook URL is its own credential (the token is in the path).
    webhook_url: Annotated[SecretStr, AfterValidator(_webhook)] | None = Field(
        None, alias="RESTORE_NOTIFY_WEBHOOK_URL"
    )
    email_to: CommaList = Field((), alias="RESTORE_NOTIFY_EMAIL_TO")
    smtp_host: str | None = Field(None, alias="RESTORE_SMTP_HOST")
    smtp_port: Port = Field(587, alias="RESTORE_SMTP_PORT")
    smtp_from: str = Field("restore-assets@localhost", alias="RESTORE_SMTP_FROM")
    smtp_user: str | None = Field(None, alias="RESTORE_SMTP_USER")
    smtp_password: SecretStr | None = Field(None, alias="RESTORE_SMTP_PASSWORD")
    smtp_starttls: Flag = Field(True, alias="RESTORE_SMTP_STARTTLS")
    on: Annotated[CommaList, AfterValidator(_one_of(NOTIFY_KINDS))] = Field(
        DEFAULT_NOTIFY_ON, alias="RESTORE_NOTIFY_ON"
    )
    waiting_hours: Annotated[float, BeforeValidator(_hours)] = Field(
        24.0, alias="RESTORE_NOTIFY_WAITING_HOURS"
    )


class Tools(Section):
    """Client binaries to use instead of the bundled ones."""

    psql: str | None = Field(None, alias="RESTORE_PSQL")
    pg_dump: str | None = Field(None, alias="RESTORE_PG_DUMP")


class Load(Section):
    """How a seed is loaded (issue 23). `fast`: into bare tables, then every index and key built
    once and proven the same as the schema made them (`pg/fastload.py`), else the runbook's
    order; `plain`: the runbook's order (`psql -1 -f schema -f seed`). The index builds get
    `maintenance_work_mem` and parallel maintenance workers sized to this machine unless set."""

    mode: Literal["fast", "plain"] = Field("fast", alias="RESTORE_LOAD")
    work_mem_mb: Annotated[int, Field(ge=1)] | None = Field(
        None, alias="RESTORE_MAINTENANCE_WORK_MEM_MB"
    )
    workers: Annotated[int, Field(ge=0)] | None = Field(None, alias="RESTORE_MAINTENANCE_WORKERS")

    def server_options(self) -> str:
        """The `PGOPTIONS` of the fast load's session: an eighth of this machine's memory (64 MB
        to 2 GB) and one worker per core but one (at most 4), unless configured."""
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20
        work_mem = self.work_mem_mb or min(2048, max(64, memory_mb // 8))
        workers = self.workers if self.workers is not None else min(4, (os.cpu_count() or 1) - 1)
        return f"-c maintenance_work_mem={work_mem}MB -c max_parallel_maintenance_workers={workers}"


@dataclass(frozen=True)
class PgSettings:
    """What a `Database` needs besides its own connection settings, so `pg/` knows
    nothing of sides: derived from `Settings` (`settings.pg`), never read."""

    state_dir: Path  # the embedded server's data: <state_dir>/pgdata
    embedded_roles: frozenset[str]  # the roles the project logs in as on the embedded server
    embedded_databases: frozenset[str]  # the databases it creates there on first use
    tools: Tools  # psql and pg_dump
    wait_seconds: int  # for the target's advisory lock


class Settings(Section):
    """Everything configurable; built by `load_settings`."""

    paths: Paths
    legacy: DatabaseSettings
    modernized: DatabaseSettings
    checks: Checks
    flyway: FlywaySettings
    intake: Intake
    sensor: SensorSettings
    tools: Tools
    notify: Notify
    load: Load
    allow_reset: Flag = Field(False, alias="RESTORE_ALLOW_RESET")
    # End the other sessions on a target just before its reset (--terminate-sessions).
    terminate_sessions: Flag = Field(False, alias="RESTORE_TERMINATE_SESSIONS")
    # For another run of the target or its lock, and for any lock another session holds on a
    # target (lock_timeout), then exit 1 naming the holder.
    wait_seconds: Seconds = Field(300, alias="RESTORE_WAIT_SECONDS")
    targets_file: Resolved | None = Field(None, alias="RESTORE_TARGETS")  # named_targets reads it
    lang: Literal["ja", "en"] = Field("en", alias="RESTORE_LANG")  # else the locale's
    lang_origin: str = "default"  # what chose `lang`, for the evidence: RESTORE_LANG, LANG=…
    target_name: str = DEFAULT_TARGET  # its name in RESTORE_TARGETS, else the environment's
    # What the settings were read from (`.env` overlaid by the environment, or the mapping
    # given): for the variables a file names, such as targets.yaml's password_env.
    variables: Mapping[str, str | None] = Field(default_factory=dict, repr=False)

    def __eq__(self, other: object) -> bool:
        # Equal when they mean the same, whatever mapping they were read from.
        if not isinstance(other, Settings):
            return NotImplemented
        return self._meaning() == other._meaning()

    def __hash__(self) -> int:
        return hash((self.paths, self.legacy, self.modernized, self.target_name))

    def _meaning(self) -> dict[str, Any]:
        return {
            name: getattr(self, name) for name in type(self).model_fields if name != "variables"
        }

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with `changes`; a section's as a dict of its fields:
        `with_overrides(allow_reset=True, paths={"state_dir": folder})`."""
        for name, value in changes.items():
            section = getattr(self, name)
            if isinstance(section, Section) and isinstance(value, dict):
                changes[name] = section.model_copy(update=value)
        return self.model_copy(update=changes)

    @property
    def passwords(self) -> tuple[str, ...]:
        """Every secret value that must never be printed (the redaction choke point's list)."""
        secrets = (self.intake.zip_password, self.notify.smtp_password, self.notify.webhook_url)
        candidates = (
            self.legacy.password,
            self.modernized.password,
            *(secret.get_secret_value() for secret in secrets if secret),
        )
        return tuple(p for p in candidates if p)

    @property
    def redactor(self) -> Redactor:
        """What the boundaries (evidence, Dagster, the CLI) pass every text through."""
        return Redactor(self.passwords, urls=[self.checks.facility_api_url])

    @property
    def pg(self) -> PgSettings:
        return PgSettings(
            state_dir=self.paths.state_dir,
            embedded_roles=frozenset(t.user for t in (self.legacy, self.modernized) if t.embedded),
            # Both sides' names, even when one is external: as it always was.
            embedded_databases=frozenset((self.legacy.dbname, self.modernized.dbname)),
            tools=self.tools,
            wait_seconds=self.wait_seconds,
        )


def is_local(host: str | None) -> bool:
    """A host on this machine by its words alone (no name is resolved): none (the embedded
    server), a Unix socket folder, `localhost`, or a loopback address (127.0.0.0/8, ::1)."""
    if host is None or host.startswith("/") or host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may be anywhere


def environment(cwd: Path | None = None) -> dict[str, str | None]:
    """What the settings are read from: `.env` (RESTORE_DOTENV, else in `cwd`) overlaid by the
    process environment. An empty value counts as unset."""
    dotenv = Path(os.environ.get("RESTORE_DOTENV") or (cwd or Path.cwd()) / ".env").expanduser()
    from_file = dotenv_values(dotenv, interpolate=False)
    for name in ENVIRONMENT_ONLY:
        from_file.pop(name, None)
    return {**from_file, **os.environ}


def load_settings(env: Mapping[str, str | None] | None = None, cwd: Path | None = None) -> Settings:
    """Settings from `env` (default: `.env` in `cwd` overlaid by the process environment)."""
    cwd = cwd or Path.cwd()
    if env is None:
        env = environment(cwd)
    given: dict[str, Any] = _Given(Settings, env)()
    if "RESTORE_LANG" not in given:
        given["RESTORE_LANG"], given["lang_origin"] = language_of(env)
    else:
        given["lang_origin"] = "RESTORE_LANG"
    for name, section, prefix in _sections():
        given[name] = _Given(section, env, prefix)()
    for side in SIDES:  # the defaults that differ by side, and DB_SSLMODE under their own
        fallback = {
            own: env[shared]
            for own, shared in (
                ("SSLMODE", SSLMODE_FALLBACK),
                ("SSLROOTCERT", SSLROOTCERT_FALLBACK),
            )
            if env.get(shared)
        }
        given[side] = {"side": side, **_DATABASE_DEFAULTS[side], **fallback, **given[side]}
    resolving = _CWD.set(cwd)
    try:
        return Settings(**given, variables=dict(env))
    except ValidationError as exc:
        raise ConfigError("\n".join(_lines(exc, env))) from None
    finally:
        _CWD.reset(resolving)


def language_of(env: Mapping[str, str | None]) -> tuple[str, str]:
    """The language RESTORE_LANG names (when valid), else the locale's (LC_ALL, LC_MESSAGES,
    LANG: the first set; `ja…` → Japanese), else English; and what chose it. Never fails: the
    CLI asks before it can report a bad setting (its --help is in this language)."""
    chosen = (env.get("RESTORE_LANG") or "").strip()
    if chosen in ("ja", "en"):
        return chosen, "RESTORE_LANG"
    for name in LOCALE_VARIABLES:
        if value := env.get(name):
            return ("ja" if value.startswith("ja") else "en"), f"{name}={value}"
    return "en", "default"


def process_language() -> str:
    """The language of this process's environment (and `.env`), before its settings are read."""
    return language_of(environment())[0]


def variable_names() -> set[str]:
    """Every variable the settings read."""
    names = {SSLMODE_FALLBACK, SSLROOTCERT_FALLBACK, *Settings.aliases()}
    for _, section, prefix in _sections():
        names |= {prefix + name for name in section.aliases()}
    return names


def _sections():
    """(field, model, variable prefix) for each section of `Settings`."""
    for name, info in Settings.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, Section):
            yield name, info.annotation, DATABASE_ENV_PREFIXES.get(name, "")


def _secret_variable(name: str) -> bool:
    """A variable whose value is a credential: never shown, even when it is unusable."""
    return name.endswith("_PASSWORD") or name == "RESTORE_NOTIFY_WEBHOOK_URL"


def _lines(exc: ValidationError, env: Mapping[str, str | None]) -> list[str]:
    """One line per bad variable: its name, its value unless that holds a password, and what
    to use instead."""
    # No Settings yet, so no Settings.redactor: every *_PASSWORD variable is a secret here.
    redact = Redactor(value for name, value in env.items() if _secret_variable(name))
    lines = []
    for error in exc.errors():
        first, *rest = error["loc"]  # (VARIABLE, …) or (section, VARIABLE, …)
        nested = first in Settings.model_fields and rest
        name = f"{DATABASE_ENV_PREFIXES.get(str(first), '')}{rest[0]}" if nested else str(first)
        value = str((error.get("ctx") or {}).get("shown", error["input"]))
        hidden = _secret_variable(name) or redact.hides(value)
        message = redact(error["msg"])  # a message may quote the value (RESTORE_SYNC_TABLES)
        lines.append(f"{name}{'' if hidden else f'={value!r}'} {message}")
    return lines
