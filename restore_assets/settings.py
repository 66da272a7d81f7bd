"""The environment-variable contract (DESIGN.md "Configuration"), read in one place.

Everything else takes a `Settings` instead of reading `os.environ`, so a test or the CLI can
build one explicitly and nothing depends on process-wide state by accident.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from restore_assets.errors import ConfigError

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

    @property
    def embedded(self) -> bool:
        return self.host is None

    def describe(self) -> str:
        """A password-free name for logs and evidence."""
        where = "embedded" if self.embedded else f"{self.host}:{self.port}"
        return f"{self.side} {self.user}@{where}/{self.dbname}"


@dataclass(frozen=True)
class Settings:
    secrets_dir: Path
    artifacts_dir: Path
    state_dir: Path
    legacy: TargetSettings
    modernized: TargetSettings
    allow_reset: bool = False
    psql_bin: str | None = None
    pg_dump_bin: str | None = None
    legacy_expected_tables: tuple[str, ...] = DEFAULT_LEGACY_EXPECTED_TABLES
    legacy_count_tables: tuple[str, ...] = DEFAULT_LEGACY_COUNT_TABLES
    patient_facility: str = DEFAULT_PATIENT_FACILITY
    flyway_conf: Path = DEMO_FLYWAY_CONF
    flyway_locations: str | None = None
    flyway_runner: str = "native"
    flyway_bin: str = "flyway"
    flyway_docker_image: str = "flyway/flyway:10"
    required_versions: tuple[str, ...] = DEFAULT_REQUIRED_VERSIONS
    modern_expected_tables: tuple[str, ...] = DEFAULT_MODERN_EXPECTED_TABLES
    modern_expected_columns: tuple[str, ...] = DEFAULT_MODERN_EXPECTED_COLUMNS
    sync_tables: tuple[str, ...] = DEFAULT_SYNC_TABLES
    facility_api_url: str | None = None

    def with_overrides(self, **changes) -> Settings:
        return replace(self, **changes)

    @property
    def passwords(self) -> tuple[str, ...]:
        """Every secret value that must never be printed."""
        return tuple(p for p in (self.legacy.password, self.modernized.password) if p)


def read_dotenv(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines of a `.env` file (the runbook keeps its settings there)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _flag(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean; use true or false")


def _port(value: str | None, default: int, name: str) -> int:
    if not value:
        return default
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{name}={value!r} is out of range 1-65535")
    return port


def _list(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        return default
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _target(env: Mapping[str, str], prefix: str, side: str, port: int, db: str) -> TargetSettings:
    host = env.get(f"{prefix}_HOST") or None
    return TargetSettings(
        side=side,
        host=host,
        port=_port(env.get(f"{prefix}_PORT"), port, f"{prefix}_PORT"),
        dbname=env.get(f"{prefix}_DB") or db,
        user=env.get(f"{prefix}_USER") or "opendolphin",
        password=env.get(f"{prefix}_PASSWORD") or None,
        # Runbook §5: `DB_SSLMODE` defaults to require for remote servers, prefer for local.
        sslmode=env.get(f"{prefix}_SSLMODE") or env.get("DB_SSLMODE") or "prefer",
    )


def load_settings(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Settings from `env` (default: `.env` in `cwd` overlaid by the process environment)."""
    cwd = cwd or Path.cwd()
    if env is None:
        merged = read_dotenv(Path(os.environ.get("RESTORE_DOTENV") or cwd / ".env"))
        merged.update(os.environ)
        env = merged

    def path(name: str, default: str) -> Path:
        raw = env.get(name) or default
        resolved = Path(raw).expanduser()
        return resolved if resolved.is_absolute() else (cwd / resolved)

    runner = (env.get("FLYWAY_RUNNER") or "native").strip().lower()
    if runner not in FLYWAY_RUNNERS:
        raise ConfigError(f"FLYWAY_RUNNER={runner!r}: use one of {', '.join(FLYWAY_RUNNERS)}")
    conf = path("FLYWAY_CONF", str(DEMO_FLYWAY_CONF))
    if not conf.is_file():
        raise ConfigError(f"FLYWAY_CONF={conf} does not exist")
    return Settings(
        secrets_dir=path("SECRETS_DIR", "~/Secrets"),
        artifacts_dir=path("RESTORE_ARTIFACTS_DIR", "./artifacts"),
        state_dir=path("RESTORE_STATE_DIR", "./.restore_state"),
        legacy=_target(env, "POSTGRES", "legacy", 5432, "opendolphin"),
        modernized=_target(env, "MODERNIZED_POSTGRES", "modernized", 55432, "opendolphin_modern"),
        allow_reset=_flag(env.get("RESTORE_ALLOW_RESET"), "RESTORE_ALLOW_RESET"),
        psql_bin=env.get("RESTORE_PSQL") or None,
        pg_dump_bin=env.get("RESTORE_PG_DUMP") or None,
        legacy_expected_tables=_list(
            env.get("RESTORE_LEGACY_EXPECTED_TABLES"), DEFAULT_LEGACY_EXPECTED_TABLES
        ),
        legacy_count_tables=_list(
            env.get("RESTORE_LEGACY_COUNT_TABLES"), DEFAULT_LEGACY_COUNT_TABLES
        ),
        patient_facility=env.get("RESTORE_PATIENT_FACILITY") or DEFAULT_PATIENT_FACILITY,
        flyway_conf=conf,
        flyway_locations=env.get("FLYWAY_LOCATIONS") or None,
        flyway_runner=runner,
        flyway_bin=env.get("FLYWAY_BIN") or "flyway",
        flyway_docker_image=env.get("FLYWAY_DOCKER_IMAGE") or "flyway/flyway:10",
        required_versions=_list(
            env.get("RESTORE_FLYWAY_REQUIRED_VERSIONS"), DEFAULT_REQUIRED_VERSIONS
        ),
        modern_expected_tables=_list(
            env.get("RESTORE_MODERN_EXPECTED_TABLES"), DEFAULT_MODERN_EXPECTED_TABLES
        ),
        modern_expected_columns=_list(
            env.get("RESTORE_MODERN_EXPECTED_COLUMNS"), DEFAULT_MODERN_EXPECTED_COLUMNS
        ),
        sync_tables=_sync_tables(env.get("RESTORE_SYNC_TABLES")),
        facility_api_url=env.get("RESTORE_FACILITY_API_URL") or None,
    )


def _sync_tables(value: str | None) -> tuple[str, ...]:
    tables = _list(value, DEFAULT_SYNC_TABLES)
    unknown = [t for t in tables if t not in DEFAULT_SYNC_TABLES]
    if unknown:
        raise ConfigError(
            f"RESTORE_SYNC_TABLES: {', '.join(unknown)} cannot be synced; "
            f"choose from {', '.join(DEFAULT_SYNC_TABLES)}"
        )
    return tables
