"""The environment-variable contract (DESIGN.md "Configuration"), read in one place.

Everything else takes a `Settings` instead of reading `os.environ`, so a test or the CLI can
build one explicitly and nothing depends on process-wide state by accident. The variables are
typed fields of pydantic-settings models (one env prefix per target); an unusable value becomes a
`ConfigError` naming the variable, one line each.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated

from dotenv import dotenv_values
from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

from restore_assets.errors import ConfigError
from restore_assets.redaction import Redactor

# Runbook §1: the three baseline files, relative to the Secrets root.
LEGACY_SCHEMA_FILE = "legacy-server/db-baseline/opendolphin-legacy-schema.sql"
LEGACY_SEED_FILE = "legacy-server/db-baseline/opendolphin-legacy-seed.sql"
MODERN_SCHEMA_FILE = "server-modernized/db-baseline/opendolphin-modern-schema.sql"

# Runbook §3.4/§3.5: what the Legacy checks look for unless configured otherwise.
DEFAULT_LEGACY_EXPECTED_TABLES = (
    "d_users",
    "d_audit_event",
    "d_factor2_*",
    "claim_item",
    "diagnosis_module",
)
DEFAULT_LEGACY_COUNT_TABLES = ("d_users", "d_audit_event", "d_factor2_credential")
DEFAULT_PATIENT_FACILITY = "1.3.6.1.4.1.9414.72.103"
# Runbook §4.3/§4.4: what the Modernized checks look for unless configured otherwise.
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
SIDES = ("legacy", "modernized")
DEFAULT_TARGET = "default"  # the environment's target's name, when RESTORE_TARGETS is unset
TARGET_ENV_PREFIXES = {"legacy": "POSTGRES_", "modernized": "MODERNIZED_POSTGRES_"}


@dataclass(frozen=True)
class TargetSettings:
    """One PostgreSQL target. `host=None` means the embedded server."""

    side: str
    host: str | None
    port: int
    dbname: str
    user: str
    password: str | None = field(default=None, repr=False)
    sslmode: str = "prefer"
    origin: str | None = None  # where it was configured, if not the environment (targets.yaml)

    @property
    def embedded(self) -> bool:
        return self.host is None

    def describe(self) -> str:
        """A password-free name for logs and evidence."""
        where = "embedded" if self.embedded else f"{self.host}:{self.port}"
        return f"{self.side} {self.user}@{where}/{self.dbname}"

    @property
    def env_prefix(self) -> str:
        """Where this target's settings come from (`POSTGRES_`, `MODERNIZED_POSTGRES_`)."""
        return TARGET_ENV_PREFIXES[self.side]


@dataclass(frozen=True)
class Settings:
    """Everything configurable; built by `load_settings` (the defaults live in `_Contract`)."""

    secrets_dir: Path
    artifacts_dir: Path
    state_dir: Path
    legacy: TargetSettings
    modernized: TargetSettings
    allow_reset: bool
    psql_bin: str | None
    pg_dump_bin: str | None
    legacy_expected_tables: tuple[str, ...]
    legacy_count_tables: tuple[str, ...]
    patient_facility: str
    flyway_conf: Path
    flyway_locations: str | None
    flyway_working_directory: Path | None  # FLYWAY_WORKING_DIRECTORY, resolved; see runners
    flyway_runner: str
    flyway_bin: str
    flyway_docker_image: str
    required_versions: tuple[str, ...]
    modern_expected_tables: tuple[str, ...]
    modern_expected_columns: tuple[str, ...]
    sync_tables: tuple[str, ...]
    facility_api_url: str | None
    sensor_interval_seconds: int  # how often `secrets_sensor` looks at the Secrets store
    targets_file: Path | None  # RESTORE_TARGETS (named_targets reads it), resolved
    target_name: str = DEFAULT_TARGET  # its name in RESTORE_TARGETS, else the environment's
    wait_seconds: int = 300  # for a busy pool slot or target lock, then exit 1 naming the holder
    secrets_zip_password: SecretStr | None = None  # runbook §0: the encrypted ZIPs' password
    zip_max_total_mib: int = 64 << 10  # a ZIP delivery unpacking to more is refused as a bomb
    zip_max_ratio: int = 200  # nor may an entry above 1 MiB expand more than this
    # What the settings were read from (`.env` overlaid by the environment, or the mapping
    # given): for the variables a file names, such as targets.yaml's password_env.
    variables: Mapping[str, str | None] = field(default_factory=dict, repr=False, compare=False)

    def with_overrides(self, **changes) -> Settings:
        return replace(self, **changes)

    @property
    def passwords(self) -> tuple[str, ...]:
        """Every secret value that must never be printed (the redaction choke point's list)."""
        zip_password = self.secrets_zip_password
        candidates = (
            self.legacy.password,
            self.modernized.password,
            zip_password.get_secret_value() if zip_password else None,
        )
        return tuple(p for p in candidates if p)

    @property
    def redactor(self) -> Redactor:
        """What the boundaries (evidence, Dagster, the CLI) pass every text through."""
        return Redactor(self.passwords)

    def embedded_roles(self) -> set[str]:
        """The roles the project logs in as on the embedded server."""
        return {t.user for t in (self.legacy, self.modernized) if t.embedded}


# What a value must look like. Each refusal is the tail of a line that starts `NAME='value'`.


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise PydanticCustomError("flag", "is not a boolean; use true or false")


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise PydanticCustomError("port", "is not a port number (1-65535)")
    return port


def _seconds(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise PydanticCustomError("seconds", "is not a number of seconds (1 or more)")
    return seconds


def _split(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _runner(value: str) -> str:
    runner = value.strip().lower()
    if runner not in FLYWAY_RUNNERS:
        raise PydanticCustomError("runner", "is not a Flyway runner; use native, docker or cli")
    return runner


def _syncable(tables: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [t for t in tables if t not in DEFAULT_SYNC_TABLES]
    if unknown:
        raise PydanticCustomError(
            "sync_tables",
            "names {unknown}, which cannot be synced; choose from {allowed}",
            {"unknown": ", ".join(unknown), "allowed": ", ".join(DEFAULT_SYNC_TABLES)},
        )
    return tables


Flag = Annotated[bool, BeforeValidator(_flag)]
Port = Annotated[int, BeforeValidator(_port)]
Seconds = Annotated[int, BeforeValidator(_seconds)]
# NoDecode: a comma list, not the JSON pydantic-settings expects for a tuple by default.
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split)]


class _FromMapping(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of `os.environ`.
    An empty value is unset, and names are upper case: `postgres_host` is not `POSTGRES_HOST`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str | None]):
        self.environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str]:
        # Lower-cased because the source matches case-insensitively.
        return {
            name.lower(): value for name, value in self.environ.items() if value and name.isupper()
        }


class _Variables(BaseSettings):
    """Variables validated from exactly the mapping `read` is given."""

    model_config = SettingsConfigDict(validate_default=False)  # the defaults are already typed

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **_):
        return (init_settings,)  # `read` passes the values: never os.environ or a .env by itself

    @classmethod
    def read(cls, environ: Mapping[str, str | None]):
        return cls(**_FromMapping(cls, environ)())


class _Contract(_Variables):
    """The variables that are not a target's, under `Settings`'s attribute names."""

    secrets_dir: Path = Field(Path("~/Secrets"), alias="SECRETS_DIR")
    artifacts_dir: Path = Field(Path("artifacts"), alias="RESTORE_ARTIFACTS_DIR")
    state_dir: Path = Field(Path(".restore_state"), alias="RESTORE_STATE_DIR")
    allow_reset: Flag = Field(False, alias="RESTORE_ALLOW_RESET")
    psql_bin: str | None = Field(None, alias="RESTORE_PSQL")
    pg_dump_bin: str | None = Field(None, alias="RESTORE_PG_DUMP")
    legacy_expected_tables: CommaList = Field(
        DEFAULT_LEGACY_EXPECTED_TABLES, alias="RESTORE_LEGACY_EXPECTED_TABLES"
    )
    legacy_count_tables: CommaList = Field(
        DEFAULT_LEGACY_COUNT_TABLES, alias="RESTORE_LEGACY_COUNT_TABLES"
    )
    patient_facility: str = Field(DEFAULT_PATIENT_FACILITY, alias="RESTORE_PATIENT_FACILITY")
    flyway_conf: Path = Field(DEMO_FLYWAY_CONF, alias="FLYWAY_CONF")
    flyway_locations: str | None = Field(None, alias="FLYWAY_LOCATIONS")
    flyway_working_directory: Path | None = Field(None, alias="FLYWAY_WORKING_DIRECTORY")
    flyway_runner: Annotated[str, BeforeValidator(_runner)] = Field("native", alias="FLYWAY_RUNNER")
    flyway_bin: str = Field("flyway", alias="FLYWAY_BIN")
    flyway_docker_image: str = Field("flyway/flyway:10", alias="FLYWAY_DOCKER_IMAGE")
    required_versions: CommaList = Field(
        DEFAULT_REQUIRED_VERSIONS, alias="RESTORE_FLYWAY_REQUIRED_VERSIONS"
    )
    modern_expected_tables: CommaList = Field(
        DEFAULT_MODERN_EXPECTED_TABLES, alias="RESTORE_MODERN_EXPECTED_TABLES"
    )
    modern_expected_columns: CommaList = Field(
        DEFAULT_MODERN_EXPECTED_COLUMNS, alias="RESTORE_MODERN_EXPECTED_COLUMNS"
    )
    sync_tables: Annotated[CommaList, AfterValidator(_syncable)] = Field(
        DEFAULT_SYNC_TABLES, alias="RESTORE_SYNC_TABLES"
    )
    facility_api_url: str | None = Field(None, alias="RESTORE_FACILITY_API_URL")
    wait_seconds: Seconds = Field(300, alias="RESTORE_WAIT_SECONDS")
    sensor_interval_seconds: Seconds = Field(
        DEFAULT_SENSOR_INTERVAL_SECONDS, alias="RESTORE_SENSOR_INTERVAL_SECONDS"
    )
    targets_file: Path | None = Field(None, alias="RESTORE_TARGETS")
    secrets_zip_password: SecretStr | None = Field(None, alias="SECRETS_ZIP_PASSWORD")
    zip_max_total_mib: Annotated[int, Field(gt=0)] = Field(64 << 10, alias="RESTORE_ZIP_MAX_MIB")
    zip_max_ratio: Annotated[int, Field(gt=1)] = Field(200, alias="RESTORE_ZIP_MAX_RATIO")
    # Runbook §5's `DB_SSLMODE`: the fallback for both targets when their own *_SSLMODE is unset.
    db_sslmode: str = Field("prefer", alias="DB_SSLMODE")


class _Target(_Variables):
    """`<prefix>HOST/_PORT/_DB/_USER/_PASSWORD/_SSLMODE`; unset host = the embedded server."""

    host: str | None = None
    port: Port
    db: str
    user: str = "opendolphin"
    password: str | None = Field(None, repr=False)
    sslmode: str | None = None  # else DB_SSLMODE

    def settings(self, side: str, sslmode: str) -> TargetSettings:
        return TargetSettings(
            side, self.host, self.port, self.db, self.user, self.password, self.sslmode or sslmode
        )


class _Legacy(_Target):
    model_config = SettingsConfigDict(env_prefix=TARGET_ENV_PREFIXES["legacy"])
    port: Port = 5432
    db: str = "opendolphin"


class _Modernized(_Target):
    model_config = SettingsConfigDict(env_prefix=TARGET_ENV_PREFIXES["modernized"])
    port: Port = 55432
    db: str = "opendolphin_modern"


def environment(cwd: Path | None = None) -> dict[str, str | None]:
    """What the settings are read from: `.env` (RESTORE_DOTENV, else in `cwd`) overlaid by the
    process environment. An empty value counts as unset."""
    dotenv = Path(os.environ.get("RESTORE_DOTENV") or (cwd or Path.cwd()) / ".env").expanduser()
    return {**dotenv_values(dotenv, interpolate=False), **os.environ}


def load_settings(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Settings from `env` (default: `.env` in `cwd` overlaid by the process environment)."""
    cwd = cwd or Path.cwd()
    if env is None:
        env = environment(cwd)

    problems: list[str] = []
    contract = _read(_Contract, env, problems)
    legacy = _read(_Legacy, env, problems)
    modernized = _read(_Modernized, env, problems)
    if contract is not None:
        paths = {
            name: _resolve(getattr(contract, name), cwd)
            for name in ("secrets_dir", "artifacts_dir", "state_dir", "flyway_conf")
        }
        for name in ("flyway_working_directory", "targets_file"):
            if getattr(contract, name) is not None:
                paths[name] = _resolve(getattr(contract, name), cwd)
        if not paths["flyway_conf"].is_file():
            conf = str(paths["flyway_conf"])
            problems.append(f"FLYWAY_CONF={conf!r} does not exist; point it at a flyway.conf")
    if problems:
        raise ConfigError("\n".join(problems))
    return Settings(
        **(contract.model_dump(exclude={"db_sslmode"}) | paths),
        legacy=legacy.settings("legacy", contract.db_sslmode),
        modernized=modernized.settings("modernized", contract.db_sslmode),
        variables=dict(env),
    )


def _read(model: type[_Variables], env: Mapping[str, str | None], problems: list[str]):
    """`model` read from `env`, or None after adding one line per bad variable to `problems`:
    the variable's name, its value unless that holds a password, and what to use instead."""
    try:
        return model.read(env)
    except ValidationError as exc:
        prefix = model.model_config.get("env_prefix", "")
        # No Settings yet, so no Settings.redactor: every *_PASSWORD variable is a secret here.
        redact = Redactor(value for name, value in env.items() if name.endswith("_PASSWORD"))
        for error in exc.errors():
            name = f"{prefix}{error['loc'][0]}".upper()
            value = str(error["input"])
            hidden = name.endswith("_PASSWORD") or redact.hides(value)
            message = redact(error["msg"])  # a message may quote the value (RESTORE_SYNC_TABLES)
            problems.append(f"{name}{'' if hidden else f'={value!r}'} {message}")
        return None


def _resolve(path: Path, cwd: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else cwd / path
