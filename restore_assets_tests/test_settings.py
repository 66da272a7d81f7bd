"""The environment contract (README "Configuration"): defaults, prefixes, `.env`, refusals.

Pure: no database. `load_settings(env)` reads only `env`; the `.env` tests go through the process
environment with `RESTORE_DOTENV` pointing at a file of the test's own, or in a working directory
of their own with its `.env`, as a user runs the CLI (the walk of README's table).
"""

from __future__ import annotations

import dataclasses
import operator
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from restore_assets import errors
from restore_assets.named_targets import load_targets, settings_for
from restore_assets.settings import (
    DEFAULT_LEGACY_COUNT_TABLES,
    DEFAULT_LEGACY_EXPECTED_TABLES,
    DEFAULT_MODERN_EXPECTED_COLUMNS,
    DEFAULT_MODERN_EXPECTED_TABLES,
    DEFAULT_PATIENT_FACILITY,
    DEFAULT_REQUIRED_VERSIONS,
    DEFAULT_SYNC_TABLES,
    DEMO_FLYWAY_CONF,
    ConfigError,
    load_settings,
)
from restore_assets_tests.conftest import run_cli_process

PASSWORD = "Pw-settings-5Rt-never-print"


def refusal(env: dict[str, str], tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env, cwd=tmp_path)
    return str(caught.value)


def test_defaults(tmp_path):
    settings = load_settings({}, cwd=tmp_path)
    assert settings.paths.secrets_dir == Path.home() / "Secrets"
    assert settings.paths.artifacts_dir == tmp_path / "artifacts"
    assert settings.paths.state_dir == tmp_path / ".restore_state"
    legacy, modern = settings.legacy, settings.modernized
    assert (legacy.side, legacy.host, legacy.port, legacy.dbname) == (
        "legacy",
        None,
        5432,
        "opendolphin",
    )
    assert (modern.side, modern.host, modern.port) == ("modernized", None, 55432)
    assert modern.dbname == "opendolphin_modern"
    for target in (legacy, modern):
        assert target.embedded and target.user == "opendolphin"
        assert target.password is None and target.sslmode is None
        assert target.effective_sslmode == "prefer"
    assert settings.allow_reset is False and settings.passwords == ()
    assert settings.tools.psql is None and settings.tools.pg_dump is None
    assert settings.checks.legacy_expected_tables == DEFAULT_LEGACY_EXPECTED_TABLES
    assert settings.checks.legacy_count_tables == DEFAULT_LEGACY_COUNT_TABLES
    assert settings.checks.patient_facility == DEFAULT_PATIENT_FACILITY
    assert settings.flyway.conf == DEMO_FLYWAY_CONF
    assert settings.flyway.locations is None
    assert (settings.flyway.runner, settings.flyway.bin) == ("native", "flyway")
    assert settings.flyway.docker_image == "flyway/flyway:10"
    assert settings.checks.required_versions == DEFAULT_REQUIRED_VERSIONS
    assert settings.checks.modern_expected_tables == DEFAULT_MODERN_EXPECTED_TABLES
    assert settings.checks.modern_expected_columns == DEFAULT_MODERN_EXPECTED_COLUMNS
    assert settings.checks.sync_tables == DEFAULT_SYNC_TABLES
    assert settings.checks.facility_api_url is None
    assert settings.intake.zip_password is None


def test_every_variable_is_read(tmp_path):
    conf = tmp_path / "flyway.conf"
    conf.write_text("flyway.locations=filesystem:sql\n")
    settings = load_settings(
        {
            "SECRETS_DIR": "~/elsewhere",
            "RESTORE_ARTIFACTS_DIR": "out",
            "RESTORE_STATE_DIR": "/var/tmp/state",
            "RESTORE_ALLOW_RESET": "yes",
            "RESTORE_PSQL": "/opt/pg/psql",
            "RESTORE_PG_DUMP": "/opt/pg/pg_dump",
            "RESTORE_LEGACY_EXPECTED_TABLES": "d_users",
            "RESTORE_LEGACY_COUNT_TABLES": " d_users , d_roles ,, ",
            "RESTORE_PATIENT_FACILITY": "1.2.3",
            "FLYWAY_CONF": "flyway.conf",
            "FLYWAY_LOCATIONS": "filesystem:/sql",
            "FLYWAY_WORKING_DIRECTORY": "flyway",
            "FLYWAY_RUNNER": " Docker ",
            "FLYWAY_BIN": "/opt/flyway",
            "FLYWAY_DOCKER_IMAGE": "flyway/flyway:11",
            "RESTORE_FLYWAY_REQUIRED_VERSIONS": "0,1",
            "RESTORE_MODERN_EXPECTED_TABLES": "a,b",
            "RESTORE_MODERN_EXPECTED_COLUMNS": "a.x",
            "RESTORE_SYNC_TABLES": "d_users",
            "RESTORE_FACILITY_API_URL": "http://api.example/health",
            "SECRETS_ZIP_PASSWORD": PASSWORD,
        },
        cwd=tmp_path,
    )
    assert settings.paths.secrets_dir == Path.home() / "elsewhere"
    assert settings.paths.artifacts_dir == tmp_path / "out"
    assert settings.paths.state_dir == Path("/var/tmp/state")
    assert settings.allow_reset is True
    assert (settings.tools.psql, settings.tools.pg_dump) == ("/opt/pg/psql", "/opt/pg/pg_dump")
    assert settings.checks.legacy_expected_tables == ("d_users",)
    assert settings.checks.legacy_count_tables == ("d_users", "d_roles")
    assert settings.checks.patient_facility == "1.2.3"
    assert settings.flyway.conf == conf
    assert settings.flyway.locations == "filesystem:/sql"
    assert settings.flyway.working_directory == tmp_path / "flyway"
    assert settings.flyway.runner == "docker"
    assert (settings.flyway.bin, settings.flyway.docker_image) == (
        "/opt/flyway",
        "flyway/flyway:11",
    )
    assert settings.checks.required_versions == ("0", "1")
    assert settings.checks.modern_expected_tables == ("a", "b")
    assert settings.checks.modern_expected_columns == ("a.x",)
    assert settings.checks.sync_tables == ("d_users",)
    assert settings.checks.facility_api_url == "http://api.example/health"
    # the ZIP password is a secret: hidden from repr, and on the redaction list
    assert settings.intake.zip_password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(settings) and settings.passwords == (PASSWORD,)


@pytest.mark.parametrize(
    ("prefix", "side", "other"),
    [("POSTGRES", "legacy", "modernized"), ("MODERNIZED_POSTGRES", "modernized", "legacy")],
)
def test_each_prefix_sets_its_own_target_only(tmp_path, prefix, side, other):
    env = {
        f"{prefix}_HOST": "db.example",
        f"{prefix}_PORT": "6543",
        f"{prefix}_DB": "restored",
        f"{prefix}_USER": "restorer",
        f"{prefix}_PASSWORD": PASSWORD,
        f"{prefix}_SSLMODE": "require",
    }
    settings = load_settings(env, cwd=tmp_path)
    target = getattr(settings, side)
    assert (target.host, target.port, target.dbname) == ("db.example", 6543, "restored")
    assert (target.user, target.password, target.sslmode) == ("restorer", PASSWORD, "require")
    assert not target.embedded
    assert target.describe() == f"{side} restorer@db.example:6543/restored"
    assert PASSWORD not in repr(target) and PASSWORD not in repr(settings)
    assert settings.passwords == (PASSWORD,)
    assert getattr(settings, other) == getattr(load_settings({}, cwd=tmp_path), other)


def test_empty_means_unset(tmp_path):
    names = ["POSTGRES_HOST", "POSTGRES_PORT", "RESTORE_ALLOW_RESET", "RESTORE_SYNC_TABLES"]
    names += ["FLYWAY_RUNNER", "FLYWAY_CONF", "RESTORE_STATE_DIR", "MODERNIZED_POSTGRES_PASSWORD"]
    assert load_settings(dict.fromkeys(names, ""), cwd=tmp_path) == load_settings({}, cwd=tmp_path)


def test_names_are_upper_case(tmp_path):
    settings = load_settings({"postgres_host": "db.example", "restore_allow_reset": "x"}, tmp_path)
    assert settings.legacy.embedded and settings.allow_reset is False


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("db.example.org", "require"),
        ("10.1.2.3", "require"),
        ("192.168.0.7", "require"),
        ("2001:db8::5", "require"),
        ("127.0.0.1", "prefer"),
        ("127.4.5.6", "prefer"),
        ("::1", "prefer"),
        ("[::1]", "prefer"),
        ("localhost", "prefer"),
        ("LOCALHOST", "prefer"),
        ("/var/run/postgresql", "prefer"),
    ],
)
def test_sslmode_defaults_to_require_across_the_network(host, expected, tmp_path):
    settings = load_settings({"POSTGRES_HOST": host}, cwd=tmp_path)
    assert settings.legacy.effective_sslmode == expected
    # What is set wins, in either direction: the target's own, then DB_SSLMODE.
    own = load_settings({"POSTGRES_HOST": host, "POSTGRES_SSLMODE": "disable"}, cwd=tmp_path)
    assert own.legacy.effective_sslmode == "disable"
    shared = {"POSTGRES_HOST": host, "DB_SSLMODE": "verify-full"}
    assert load_settings(shared, cwd=tmp_path).legacy.effective_sslmode == "verify-full"


def test_the_connection_carries_the_sslmode_and_root_certificate(tmp_path):
    from restore_assets.pg.database import Database

    env = {"POSTGRES_HOST": "db.example.org", "PGSSLROOTCERT": str(tmp_path / "root.crt")}
    settings = load_settings(env, cwd=tmp_path)
    db = Database(settings.legacy, settings.pg)
    info = db.conninfo()
    assert (info["sslmode"], info["sslrootcert"]) == ("require", str(tmp_path / "root.crt"))
    client = db.client_env()  # psql and pg_dump: the same, by libpq's variables
    assert (client["PGSSLMODE"], client["PGSSLROOTCERT"]) == ("require", str(tmp_path / "root.crt"))


def test_db_sslmode_is_the_fallback_for_both_targets(tmp_path):
    settings = load_settings(
        {"DB_SSLMODE": "require", "MODERNIZED_POSTGRES_SSLMODE": "disable"}, cwd=tmp_path
    )
    assert (settings.legacy.sslmode, settings.modernized.sslmode) == ("require", "disable")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), (" on ", True)]
    + [("0", False), ("False", False), ("no", False), ("off", False), ("", False)],
)
def test_allow_reset_flag(tmp_path, value, expected):
    assert load_settings({"RESTORE_ALLOW_RESET": value}, cwd=tmp_path).allow_reset is expected


def test_given_mapping_is_all_that_is_read(tmp_path, monkeypatch):
    dotenv = tmp_path / "custom.env"
    dotenv.write_text("POSTGRES_DB=from_file\n")
    monkeypatch.setenv("RESTORE_DOTENV", str(dotenv))
    monkeypatch.setenv("POSTGRES_HOST", "from-process")
    settings = load_settings({"POSTGRES_USER": "given"}, cwd=tmp_path)
    assert settings.legacy.embedded and settings.legacy.dbname == "opendolphin"
    assert settings.legacy.user == "given"


def test_dotenv_is_read_and_the_process_environment_wins(tmp_path, monkeypatch):
    dotenv = tmp_path / "custom.env"
    dotenv.write_text(
        "# the runbook's settings\n"
        "export POSTGRES_HOST=db.example\n"
        "POSTGRES_DB='from_file'\n"
        'MODERNIZED_POSTGRES_PASSWORD="pw with ${dollar}"\n'
        "RESTORE_ALLOW_RESET=true\n"
    )
    monkeypatch.setenv("RESTORE_DOTENV", str(dotenv))
    monkeypatch.setenv("POSTGRES_DB", "from_process")
    settings = load_settings(cwd=tmp_path)
    assert (settings.legacy.host, settings.legacy.dbname) == ("db.example", "from_process")
    assert settings.modernized.password == "pw with ${dollar}"  # no interpolation
    assert settings.allow_reset is True


def test_dotenv_defaults_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("POSTGRES_PORT=6000\n")
    monkeypatch.delenv("RESTORE_DOTENV")
    assert load_settings(cwd=tmp_path).legacy.port == 6000
    assert load_settings(cwd=tmp_path / "elsewhere").legacy.port == 5432


def test_a_bad_dotenv_value_is_refused_by_name(tmp_path, monkeypatch):
    dotenv = tmp_path / "custom.env"
    dotenv.write_text("MODERNIZED_POSTGRES_PORT=fifty\n")
    monkeypatch.setenv("RESTORE_DOTENV", str(dotenv))
    with pytest.raises(ConfigError, match="MODERNIZED_POSTGRES_PORT='fifty' is not a port"):
        load_settings(cwd=tmp_path)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "RESTORE_ALLOW_RESET",
            "perhaps",
            "RESTORE_ALLOW_RESET='perhaps' is not a boolean; use true",
        ),
        ("POSTGRES_PORT", "abc", "POSTGRES_PORT='abc' is not a port number (1-65535)"),
        ("POSTGRES_PORT", "0", "POSTGRES_PORT='0' is not a port number (1-65535)"),
        ("MODERNIZED_POSTGRES_PORT", "65536", "MODERNIZED_POSTGRES_PORT='65536' is not a port"),
        ("FLYWAY_RUNNER", "gradle", "FLYWAY_RUNNER='gradle' is not a Flyway runner; use native"),
        (
            "RESTORE_SENSOR_INTERVAL_SECONDS",
            "abc",
            "RESTORE_SENSOR_INTERVAL_SECONDS='abc' is not a number of seconds (1 or more)",
        ),
        ("RESTORE_SENSOR_INTERVAL_SECONDS", "0", "RESTORE_SENSOR_INTERVAL_SECONDS='0' is not a"),
        ("RESTORE_SENSOR_INTERVAL_SECONDS", "1.5", "RESTORE_SENSOR_INTERVAL_SECONDS='1.5' is not"),
        ("RESTORE_WAIT_SECONDS", "soon", "RESTORE_WAIT_SECONDS='soon' is not a number of seconds"),
        ("RESTORE_CRASH_RETRIES", "-1", "RESTORE_CRASH_RETRIES='-1' is not a whole number (0 or"),
        ("RESTORE_MAX_RUNTIME_SECONDS", "4h", "RESTORE_MAX_RUNTIME_SECONDS='4h' is not a whole"),
        ("RESTORE_LOAD", "quick", "RESTORE_LOAD='quick' Input should be 'fast' or 'plain'"),
    ],
)
def test_a_bad_value_is_refused_by_name(tmp_path, name, value, message):
    text = refusal({name: value}, tmp_path)
    assert text.startswith(message)
    assert "\n" not in text and "pydantic" not in text.lower()


def test_a_refusal_is_a_configuration_error_with_exit_code_3(tmp_path):
    with pytest.raises(errors.ConfigError) as caught:
        load_settings({"POSTGRES_PORT": "x"}, cwd=tmp_path)
    assert caught.value.exit_code == errors.EXIT_CONFIG


def test_every_bad_variable_gets_one_line(tmp_path):
    lines = refusal(
        {"POSTGRES_PORT": "x", "MODERNIZED_POSTGRES_PORT": "y", "RESTORE_ALLOW_RESET": "z"},
        tmp_path,
    ).splitlines()
    assert len(lines) == 3
    assert {line.split("=")[0] for line in lines} == {
        "POSTGRES_PORT",
        "MODERNIZED_POSTGRES_PORT",
        "RESTORE_ALLOW_RESET",
    }


def test_a_refusal_never_shows_a_password(tmp_path):
    text = refusal(
        {
            "POSTGRES_PASSWORD": PASSWORD,
            "POSTGRES_PORT": "abc",
            "MODERNIZED_POSTGRES_PASSWORD": "Other-pw-never-print",
            "MODERNIZED_POSTGRES_PORT": "Other-pw-never-print",  # pasted into the wrong variable
            "SECRETS_ZIP_PASSWORD": "Zip-pw-never-print",
            "RESTORE_SYNC_TABLES": "Zip-pw-never-print",
        },
        tmp_path,
    )
    assert "POSTGRES_PORT='abc' is not" in text and "MODERNIZED_POSTGRES_PORT is not" in text
    assert PASSWORD not in text and "Other-pw-never-print" not in text
    assert "RESTORE_SYNC_TABLES" in text and "Zip-pw-never-print" not in text


def test_sync_tables_are_limited_to_the_runbook_tables(tmp_path):
    text = refusal({"RESTORE_SYNC_TABLES": "d_users, d_patient"}, tmp_path)
    assert text.startswith("RESTORE_SYNC_TABLES='d_users, d_patient'")
    assert "d_patient, which cannot be synced" in text
    assert "choose from d_facility, d_users, d_roles" in text
    allowed = load_settings({"RESTORE_SYNC_TABLES": "d_roles,d_facility"}, cwd=tmp_path)
    assert allowed.checks.sync_tables == ("d_roles", "d_facility")


def test_flyway_conf_must_exist(tmp_path):
    text = refusal({"FLYWAY_CONF": "missing/flyway.conf"}, tmp_path)
    assert text.startswith(f"FLYWAY_CONF='{tmp_path / 'missing' / 'flyway.conf'}' does not exist")


def test_settings_are_immutable_and_overridable(tmp_path):
    settings = load_settings({}, cwd=tmp_path)
    with pytest.raises(ValidationError, match="frozen"):
        settings.allow_reset = True  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.legacy.port = 1  # type: ignore[misc]
    changed = settings.with_overrides(allow_reset=True, paths={"state_dir": tmp_path / "s"})
    assert (changed.allow_reset, changed.paths.state_dir) == (True, tmp_path / "s")
    assert settings.allow_reset is False and changed.legacy == settings.legacy


# README "Configuration": every variable of its table is read from `.env` as well as from the
# environment, and the environment wins. The table is parsed, so a variable added to the README
# fails here until this file says what it sets.

README = Path(__file__).resolve().parents[1] / "README.md"
_VARIABLE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*(?:_\*|(?:/_[A-Z0-9]+)+)?")


def readme_variables() -> list[str]:
    """The variables README's Configuration table names, `*` and `/_X` forms spelled out: every
    name in a row's first cell, and any variable another cell names (`FLYWAY_BIN`)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # no header
    assert rows, "README's Configuration table not found"
    named: list[str] = []
    for row in rows:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
        first = re.findall(r"`([^`]+)`", cells[0])
        assert first and all(_VARIABLE.fullmatch(n) for n in first), f"not a variable: {row}"
        others = re.findall(r"`([^`]+)`", " ".join(cells[1:]))
        named += first + [n for n in others if "_" in n and _VARIABLE.fullmatch(n)]
    spelled = [_spell(name) for name in named if "*" not in name]
    for name in (n for n in named if "*" in n):
        spelled.append(_expand(name, [n for names in spelled for n in names]))
    return sorted({n for names in spelled for n in names})


def _spell(name: str) -> list[str]:
    """`POSTGRES_HOST/_PORT` → POSTGRES_HOST, POSTGRES_PORT."""
    first, *rest = name.split("/")
    stem = first.rsplit("_", 1)[0]
    return [first] + [stem + suffix for suffix in rest]


def _expand(pattern: str, spelled: list[str]) -> list[str]:
    """`MODERNIZED_POSTGRES_*` takes the suffixes the README spells out for the same kind of
    name: `POSTGRES_HOST`, … → `MODERNIZED_POSTGRES_HOST`, …"""
    prefix = pattern.removesuffix("*")
    names = [
        prefix + name[len(stem) :]
        for name in spelled
        for stem in (name[: i + 1] for i, c in enumerate(name) if c == "_")
        if prefix.endswith(stem)
    ]
    assert names, f"README's {pattern}: no spelled-out variable tells what * stands for"
    return names


def _here(value: str) -> Path:
    return Path.cwd() / value


def _tables(value: str) -> tuple[str, ...]:
    return tuple(value.split(","))


def _write_conf(value: str) -> None:
    (Path.cwd() / value).write_text("flyway.locations=filesystem:sql\n")


def _write_targets(value: str) -> None:
    name = Path(value).stem
    (Path.cwd() / value).write_text(
        f"targets:\n  {name}:\n    secrets_dir: {name}\n"
        f"    legacy: {{db: {name}_legacy}}\n    modernized: {{db: {name}_modern}}\n"
    )


def _sensor_interval() -> int:
    """The interval of the code location's sensor, loaded as Dagster loads it (a fresh process
    in the working directory: the interval is fixed when the definitions load)."""
    script = (
        "from restore_assets.definitions import defs\n"
        "print(defs.resolve_sensor_def('secrets_sensor').minimum_interval_seconds)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@dataclasses.dataclass(frozen=True)
class Use:
    """What the program makes of one variable: `read` it back in the working directory (its
    `.env` and the environment), given two valid values, each unlike the default and the other;
    `prepare` makes a value usable (writes the file it names)."""

    read: Callable[[], object]
    values: tuple[str, str]
    means: Callable[[str], object] = str
    prepare: Callable[[str], None] | None = None


def _target_uses(prefix: str, side: str) -> dict[str, Use]:
    def field(name: str) -> Callable[[], object]:
        return lambda: getattr(getattr(load_settings(), side), name)

    return {
        f"{prefix}HOST": Use(field("host"), ("dot.example", "env.example")),
        f"{prefix}PORT": Use(field("port"), ("6001", "6002"), int),
        f"{prefix}DB": Use(field("dbname"), ("from_dotenv", "from_env")),
        f"{prefix}USER": Use(field("user"), ("dot_user", "env_user")),
        f"{prefix}PASSWORD": Use(field("password"), ("Dot-pw-never-print", "Env-pw-never-print")),
        f"{prefix}SSLMODE": Use(field("sslmode"), ("require", "verify-full")),
        f"{prefix}SSLROOTCERT": Use(field("sslrootcert"), ("dot.crt", "env.crt"), _here),
    }


def _setting(name: str) -> Callable[[], object]:
    return lambda: operator.attrgetter(name)(load_settings())  # `flyway.bin`: a section's


USES: dict[str, Use] = {
    "SECRETS_DIR": Use(_setting("paths.secrets_dir"), ("dot-secrets", "env-secrets"), _here),
    "RESTORE_ARTIFACTS_DIR": Use(_setting("paths.artifacts_dir"), ("dot-out", "env-out"), _here),
    "RESTORE_STATE_DIR": Use(_setting("paths.state_dir"), ("dot-state", "env-state"), _here),
    **_target_uses("POSTGRES_", "legacy"),
    **_target_uses("MODERNIZED_POSTGRES_", "modernized"),
    "FLYWAY_CONF": Use(_setting("flyway.conf"), ("dot.conf", "env.conf"), _here, _write_conf),
    "FLYWAY_LOCATIONS": Use(_setting("flyway.locations"), ("filesystem:dot", "filesystem:env")),
    "FLYWAY_WORKING_DIRECTORY": Use(
        _setting("flyway.working_directory"), ("dot-flyway", "env-flyway"), _here
    ),
    "FLYWAY_RUNNER": Use(_setting("flyway.runner"), ("cli", "docker")),
    "FLYWAY_BIN": Use(_setting("flyway.bin"), ("/opt/dot/flyway", "/opt/env/flyway")),
    "FLYWAY_DOCKER_IMAGE": Use(
        _setting("flyway.docker_image"), ("flyway/flyway:11", "flyway/flyway:12")
    ),
    "RESTORE_FLYWAY_REQUIRED_VERSIONS": Use(
        _setting("checks.required_versions"), ("0,2", "0,3"), _tables
    ),
    "RESTORE_SYNC_TABLES": Use(
        _setting("checks.sync_tables"), ("d_users", "d_roles,d_users"), _tables
    ),
    "RESTORE_FACILITY_API_URL": Use(
        _setting("checks.facility_api_url"),
        ("http://dot.example/health", "http://env.example/health"),
    ),
    "SECRETS_ZIP_PASSWORD": Use(
        lambda: (load_settings().intake.zip_password or SecretStr("")).get_secret_value(),
        ("Dot-zip-never-print", "Env-zip-never-print"),
    ),
    "RESTORE_ZIP_MAX_MIB": Use(_setting("intake.zip_max_total_mib"), ("100", "200"), int),
    "RESTORE_ZIP_MAX_RATIO": Use(_setting("intake.zip_max_ratio"), ("50", "60"), int),
    "RESTORE_SENSOR_INTERVAL_SECONDS": Use(_sensor_interval, ("7", "11"), int),
    "RESTORE_NOTIFY_WEBHOOK_URL": Use(
        lambda: (load_settings().notify.webhook_url or SecretStr("")).get_secret_value(),
        ("https://dot.example/hooks/T/B/x", "https://env.example/hooks/T/B/y"),
    ),
    "RESTORE_NOTIFY_EMAIL_TO": Use(
        _setting("notify.email_to"), ("ops@dot.example", "ops@env.example,dba@env.example"), _tables
    ),
    "RESTORE_SMTP_HOST": Use(
        _setting("notify.smtp_host"), ("smtp.dot.example", "smtp.env.example")
    ),
    "RESTORE_SMTP_PORT": Use(_setting("notify.smtp_port"), ("25", "2525"), int),
    "RESTORE_SMTP_FROM": Use(
        _setting("notify.smtp_from"), ("dot@example.test", "env@example.test")
    ),
    "RESTORE_SMTP_USER": Use(_setting("notify.smtp_user"), ("dot_user", "env_user")),
    "RESTORE_SMTP_PASSWORD": Use(
        lambda: (load_settings().notify.smtp_password or SecretStr("")).get_secret_value(),
        ("Dot-smtp-never-print", "Env-smtp-never-print"),
    ),
    "RESTORE_SMTP_STARTTLS": Use(
        _setting("notify.smtp_starttls"), ("false", "true"), lambda v: v == "true"
    ),
    "RESTORE_NOTIFY_ON": Use(_setting("notify.on"), ("blocked", "failed,passed"), _tables),
    "RESTORE_NOTIFY_WAITING_HOURS": Use(_setting("notify.waiting_hours"), ("2", "0.5"), float),
    "RESTORE_WAIT_SECONDS": Use(_setting("wait_seconds"), ("5", "6"), int),
    "RESTORE_CRASH_RETRIES": Use(_setting("sensor.crash_retries"), ("0", "5"), int),
    "RESTORE_MAX_RUNTIME_SECONDS": Use(_setting("sensor.max_runtime_seconds"), ("0", "60"), int),
    "RESTORE_LANG": Use(  # the default is the locale's language: told apart by its origin
        lambda: (load_settings().lang, load_settings().lang_origin),
        ("ja", "en"),
        lambda value: (value, "RESTORE_LANG"),
    ),
    # Two values only, the default one of them: the environment's puts the default back.
    "RESTORE_LOAD": Use(_setting("load.mode"), ("plain", "fast")),
    "RESTORE_MAINTENANCE_WORK_MEM_MB": Use(_setting("load.work_mem_mb"), ("128", "256"), int),
    "RESTORE_MAINTENANCE_WORKERS": Use(_setting("load.workers"), ("2", "0"), int),
    "RESTORE_TARGETS": Use(
        lambda: sorted(load_targets(load_settings())),
        ("clinic-dot.yaml", "clinic-env.yaml"),
        lambda value: [Path(value).stem],
        _write_targets,
    ),
    "RESTORE_ALLOW_RESET": Use(_setting("allow_reset"), ("true", "false"), lambda v: v == "true"),
    "RESTORE_TERMINATE_SESSIONS": Use(
        _setting("terminate_sessions"), ("true", "false"), lambda v: v == "true"
    ),
    "RESTORE_PSQL": Use(_setting("tools.psql"), ("/opt/dot/psql", "/opt/env/psql")),
    "RESTORE_PG_DUMP": Use(_setting("tools.pg_dump"), ("/opt/dot/pg_dump", "/opt/env/pg_dump")),
    "RESTORE_LEGACY_EXPECTED_TABLES": Use(
        _setting("checks.legacy_expected_tables"), ("d_users", "d_users,d_roles"), _tables
    ),
    "RESTORE_LEGACY_COUNT_TABLES": Use(
        _setting("checks.legacy_count_tables"), ("d_users", "d_users,d_roles"), _tables
    ),
    "RESTORE_MODERN_EXPECTED_TABLES": Use(
        _setting("checks.modern_expected_tables"), ("d_users", "d_users,d_roles"), _tables
    ),
    "RESTORE_MODERN_EXPECTED_COLUMNS": Use(
        _setting("checks.modern_expected_columns"), ("d_users.userid", "d_roles.c_role"), _tables
    ),
    "RESTORE_PATIENT_FACILITY": Use(_setting("checks.patient_facility"), ("1.2.3", "4.5.6")),
    "DB_SSLMODE": Use(
        lambda: (load_settings().legacy.sslmode, load_settings().modernized.sslmode),
        ("require", "disable"),
        lambda value: (value, value),
    ),
    "PGSSLROOTCERT": Use(
        lambda: (load_settings().legacy.sslrootcert, load_settings().modernized.sslrootcert),
        ("dot-root.crt", "env-root.crt"),
        lambda value: (_here(value), _here(value)),
    ),
}
# RESTORE_DOTENV names the `.env` file itself, so only the environment can set it (its own test
# below); Dagster reads DAGSTER_HOME from the process environment (its test: test_definitions).
ENVIRONMENT_ONLY = {"RESTORE_DOTENV", "DAGSTER_HOME"}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory whose `.env` is the one read, as when a user runs the CLI in it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESTORE_DOTENV")
    return tmp_path


# The sensor interval is read by loading the code location in a fresh process (about 4 s).
_SLOW_TO_READ = {"RESTORE_SENSOR_INTERVAL_SECONDS"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_TO_READ else n
        for n in sorted(set(readme_variables()) - ENVIRONMENT_ONLY)
    ],
)
def test_every_readme_variable_is_read_from_dotenv_and_the_environment_wins(
    name, workdir, monkeypatch
):
    assert name in USES, f"README names {name}: say here what it sets (USES)"
    use = USES[name]
    from_dotenv, from_env = use.values
    for value in use.values:
        if use.prepare:
            use.prepare(value)
    monkeypatch.delenv(name, raising=False)
    default = use.read()
    (workdir / ".env").write_text(f"{name}={from_dotenv}\n")
    assert use.read() == use.means(from_dotenv) != default
    monkeypatch.setenv(name, from_env)
    assert use.read() == use.means(from_env) != use.means(from_dotenv)


def test_every_variable_the_settings_read_is_in_the_readme():
    """The other way round: nothing is read that the README does not name."""
    from restore_assets.settings import variable_names

    assert variable_names() <= set(readme_variables())
    assert set(readme_variables()) <= set(USES) | ENVIRONMENT_ONLY


def test_the_dotenv_file_is_chosen_by_the_environment_only(workdir, monkeypatch):
    (workdir / "chosen.env").write_text("POSTGRES_DB=from_chosen\n")
    (workdir / ".env").write_text("RESTORE_DOTENV=chosen.env\nPOSTGRES_DB=from_dotenv\n")
    assert load_settings().legacy.dbname == "from_dotenv"  # a .env cannot send us elsewhere
    monkeypatch.setenv("RESTORE_DOTENV", str(workdir / "chosen.env"))
    assert load_settings().legacy.dbname == "from_chosen"


def test_a_named_targets_password_env_is_read_from_dotenv_and_the_environment_wins(
    workdir, monkeypatch
):
    """targets.yaml names the variable holding a password; it may live in `.env` like any."""
    (workdir / "targets.yaml").write_text(
        "targets:\n  a:\n    secrets_dir: a\n"
        "    legacy: {host: db.example, db: x, password_env: CLINIC_A_PW}\n"
        "    modernized: {db: y}\n"
    )
    (workdir / ".env").write_text(
        "RESTORE_TARGETS=targets.yaml\nCLINIC_A_PW=Dot-clinic-pw-never-print\n"
    )
    monkeypatch.delenv("CLINIC_A_PW", raising=False)
    settings = settings_for("a")  # what a run of target a uses
    assert settings.legacy.password == "Dot-clinic-pw-never-print"
    assert "Dot-clinic-pw-never-print" in settings.passwords  # so it is redacted
    assert "Dot-clinic-pw-never-print" not in repr(settings)
    monkeypatch.setenv("CLINIC_A_PW", "Env-clinic-pw-never-print")
    assert settings_for("a").legacy.password == "Env-clinic-pw-never-print"


@pytest.mark.parametrize("source", ["environment", ".env"])
def test_a_bad_sensor_interval_stops_a_command_with_exit_3_and_one_line(
    source, workdir, monkeypatch
):
    if source == ".env":
        (workdir / ".env").write_text("RESTORE_SENSOR_INTERVAL_SECONDS=abc\n")
    else:
        monkeypatch.setenv("RESTORE_SENSOR_INTERVAL_SECONDS", "abc")
    done = run_cli_process("status", timeout=120)
    assert (done.returncode, done.stdout) == (3, "")
    assert done.stderr == (
        "configuration error: "
        "RESTORE_SENSOR_INTERVAL_SECONDS='abc' is not a number of seconds (1 or more)\n"
    )


def test_the_fast_loads_index_builds_are_sized_to_the_machine_unless_set(tmp_path):
    sized = load_settings({}, cwd=tmp_path).load.server_options()
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20
    workers = min(4, (os.cpu_count() or 1) - 1)
    assert sized == (
        f"-c maintenance_work_mem={min(2048, max(64, memory_mb // 8))}MB "
        f"-c max_parallel_maintenance_workers={workers}"
    )
    given = {"RESTORE_MAINTENANCE_WORK_MEM_MB": "300", "RESTORE_MAINTENANCE_WORKERS": "0"}
    assert load_settings(given, cwd=tmp_path).load.server_options() == (
        "-c maintenance_work_mem=300MB -c max_parallel_maintenance_workers=0"
    )
