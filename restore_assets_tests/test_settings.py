"""The environment contract (README "Configuration"): defaults, prefixes, `.env`, refusals.

Pure: no database. `load_settings(env)` reads only `env`; the `.env` tests go through the process
environment with `RESTORE_DOTENV` pointing at a file of the test's own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from restore_assets import errors
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

PASSWORD = "Pw-settings-5Rt-never-print"


def refusal(env: dict[str, str], tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env, cwd=tmp_path)
    return str(caught.value)


def test_defaults(tmp_path):
    settings = load_settings({}, cwd=tmp_path)
    assert settings.secrets_dir == Path.home() / "Secrets"
    assert settings.artifacts_dir == tmp_path / "artifacts"
    assert settings.state_dir == tmp_path / ".restore_state"
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
        assert target.password is None and target.sslmode == "prefer"
    assert settings.allow_reset is False and settings.passwords == ()
    assert settings.psql_bin is None and settings.pg_dump_bin is None
    assert settings.legacy_expected_tables == DEFAULT_LEGACY_EXPECTED_TABLES
    assert settings.legacy_count_tables == DEFAULT_LEGACY_COUNT_TABLES
    assert settings.patient_facility == DEFAULT_PATIENT_FACILITY
    assert settings.flyway_conf == DEMO_FLYWAY_CONF
    assert settings.flyway_locations is None
    assert (settings.flyway_runner, settings.flyway_bin) == ("native", "flyway")
    assert settings.flyway_docker_image == "flyway/flyway:10"
    assert settings.required_versions == DEFAULT_REQUIRED_VERSIONS
    assert settings.modern_expected_tables == DEFAULT_MODERN_EXPECTED_TABLES
    assert settings.modern_expected_columns == DEFAULT_MODERN_EXPECTED_COLUMNS
    assert settings.sync_tables == DEFAULT_SYNC_TABLES
    assert settings.facility_api_url is None
    assert settings.secrets_zip_password is None


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
    assert settings.secrets_dir == Path.home() / "elsewhere"
    assert settings.artifacts_dir == tmp_path / "out"
    assert settings.state_dir == Path("/var/tmp/state")
    assert settings.allow_reset is True
    assert (settings.psql_bin, settings.pg_dump_bin) == ("/opt/pg/psql", "/opt/pg/pg_dump")
    assert settings.legacy_expected_tables == ("d_users",)
    assert settings.legacy_count_tables == ("d_users", "d_roles")
    assert settings.patient_facility == "1.2.3"
    assert settings.flyway_conf == conf
    assert settings.flyway_locations == "filesystem:/sql"
    assert settings.flyway_working_directory == tmp_path / "flyway"
    assert settings.flyway_runner == "docker"
    assert (settings.flyway_bin, settings.flyway_docker_image) == (
        "/opt/flyway",
        "flyway/flyway:11",
    )
    assert settings.required_versions == ("0", "1")
    assert settings.modern_expected_tables == ("a", "b")
    assert settings.modern_expected_columns == ("a.x",)
    assert settings.sync_tables == ("d_users",)
    assert settings.facility_api_url == "http://api.example/health"
    # the ZIP password is a secret: hidden from repr, and on the redaction list
    assert settings.secrets_zip_password.get_secret_value() == PASSWORD
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
    assert allowed.sync_tables == ("d_roles", "d_facility")


def test_flyway_conf_must_exist(tmp_path):
    text = refusal({"FLYWAY_CONF": "missing/flyway.conf"}, tmp_path)
    assert text.startswith(f"FLYWAY_CONF='{tmp_path / 'missing' / 'flyway.conf'}' does not exist")


def test_settings_are_immutable_and_overridable(tmp_path):
    settings = load_settings({}, cwd=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.allow_reset = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.legacy.port = 1  # type: ignore[misc]
    changed = settings.with_overrides(allow_reset=True, state_dir=tmp_path / "s")
    assert (changed.allow_reset, changed.state_dir) == (True, tmp_path / "s")
    assert settings.allow_reset is False and changed.legacy == settings.legacy
