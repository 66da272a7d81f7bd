"""Runbook §4 end to end: the Modernized baseline, Flyway baseline + migrate, checks, diagnosis,
repair — through real Dagster runs and the CLI, on the external TCP/password server."""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import psycopg
import pytest
from dagster import materialize

from restore_assets.assets.modernized import HISTORY, modernized_flyway_history, modernized_schema
from restore_assets.assets.secrets import secret_files
from restore_assets.pg.database import Database
from restore_assets.resources import restore_resources
from restore_assets.runbook.flyway_adapter import cli_command, docker_command, load_flyway_config
from restore_assets.settings import (
    DEFAULT_TARGET,
    DEMO_FLYWAY_CONF,
    MODERN_SCHEMA_FILE,
    load_settings,
)
from restore_assets_tests.conftest import EXTERNAL_PASSWORD, run_cli
from restore_assets_tests.helpers import check_results, failure_messages, target_instance

DEMO_SQL = DEMO_FLYWAY_CONF.parent / "sql"
# What Flyway 10 writes for the demo files: version text with leading zeros, description with
# spaces, script relative to the location.
EXPECTED_FILES = [
    ("0001", "baseline tag", "V0001__baseline_tag.sql"),
    ("0002", "performance indexes", "V0002__performance_indexes.sql"),
    ("0003", "security phase3 stage7", "V0003__security_phase3_stage7.sql"),
    ("0220", "phr async job", "V0220__phr_async_job.sql"),
    ("0221", "doc module flag columns", "V0221__doc_module_flag_columns.sql"),
]


def flyway_crc(path: Path) -> int:
    """flyway-compat.md's recipe, written out independently of the engine."""
    text = path.read_bytes().decode("utf-8")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines[0] = lines[0].removeprefix("\ufeff")
    crc = 0
    for line in lines:
        crc = zlib.crc32(line.encode("utf-8"), crc)
    return crc - 2**32 if crc >= 2**31 else crc


def modern_rows():
    settings = load_settings()
    target = Database(settings.modernized, settings.pg)
    with target.connect(autocommit=True) as conn:
        return conn.execute(
            "SELECT installed_rank, version, description, type, script, checksum, success "
            'FROM "opendolphin"."flyway_schema_history" ORDER BY installed_rank'
        ).fetchall()


@pytest.mark.slow
def test_cli_modernized_on_external_writes_flyways_history(
    secrets_dir, artifacts_dir, external_modernized
):
    done = run_cli("run", "--only", "modernized", "--allow-reset")
    assert done.returncode == 0, done.stdout + done.stderr
    expected = [(1, "0", "<< Flyway Baseline >>", "BASELINE", "<< Flyway Baseline >>", None, True)]
    expected += [
        (rank, version, description, "SQL", script, flyway_crc(DEMO_SQL / script), True)
        for rank, (version, description, script) in enumerate(EXPECTED_FILES, start=2)
    ]
    assert modern_rows() == expected
    for check in ("history_versions", "expected_tables", "expected_columns", "pg_trgm"):
        assert f"modernized/flyway_history:{check}" in done.stdout
    assert "FAILED" not in done.stdout
    folder = Path(done.stdout.strip().splitlines()[-1].removeprefix("evidence: "))
    for name in (
        "modern_psql.log",
        "flyway_migrate.log",
        "psql_flyway_schema_history.log",
        "psql_dt_modernized.log",
        "psql_count_d_audit_event_modernized.log",
    ):
        assert (folder / name).is_file(), name
    assert (
        "V0221__doc_module_flag_columns.sql"
        in (folder / "psql_flyway_schema_history.log").read_text()
    )
    assert EXTERNAL_PASSWORD not in done.stdout + done.stderr

    # A second run resets (with consent), restores and migrates again: same rows.
    again = run_cli("run", "--only", "modernized", "--allow-reset")
    assert again.returncode == 0, again.stdout
    assert [r[:6] for r in modern_rows()] == [r[:6] for r in expected]


@pytest.mark.slow
def test_flyway_cli_on_the_restored_database(
    secrets_dir, artifacts_dir, external_modernized, tmp_path
):
    assert run_cli("run", "--only", "modernized", "--allow-reset").returncode == 0
    info = run_cli("flyway", "info")
    assert info.returncode == 0
    header = info.stdout.splitlines()[1]
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "Category",
        "Version",
        "Description",
        "Type",
        "Installed On",
        "State",
    ]
    assert info.stdout.count("| Success ") == 5 and "| Baseline " in info.stdout
    assert "No migration necessary" in run_cli("flyway", "migrate").stdout

    # An edited copy of the migrations: validate names the version that differs.
    edited = tmp_path / "sql"
    shutil.copytree(DEMO_SQL, edited)
    (edited / "V0003__security_phase3_stage7.sql").write_text(
        "-- edited\nSELECT 3;\n", encoding="utf-8"
    )
    validate = run_cli("flyway", "validate", "--locations", f"filesystem:{edited}")
    assert validate.returncode == 1
    assert "checksum mismatch for migration version 0003" in validate.stdout


@pytest.mark.slow
def test_failed_row_then_repair_then_migrate_recovers(
    secrets_dir, artifacts_dir, external_modernized, tmp_path, monkeypatch
):
    # Flyway 10 keeps a failed row only without its transactional lock (the default leaves none:
    # test_flyway_vs_real.test_failed_non_transactional_migration).
    monkeypatch.setenv("FLYWAY_POSTGRESQL_TRANSACTIONAL_LOCK", "false")
    assert run_cli("run", "--only", "modernized", "--allow-reset").returncode == 0
    extra = tmp_path / "sql"
    shutil.copytree(DEMO_SQL, extra)
    bad = extra / "V0222__audit_index.sql"
    bad.write_text("CREATE INDEX CONCURRENTLY audit_x ON d_audit_event (no_such_column);\n")
    locations = f"filesystem:{extra}"
    failed = run_cli("flyway", "migrate", "--locations", locations)
    assert failed.returncode == 1
    assert "V0222__audit_index.sql failed at line 1" in failed.stdout
    assert modern_rows()[-1][1:2] + modern_rows()[-1][6:] == ("0222", False)
    blocked = run_cli("flyway", "migrate", "--locations", locations)
    assert blocked.returncode == 1 and "restore-assets flyway repair" in blocked.stdout
    bad.write_text("CREATE INDEX CONCURRENTLY audit_x ON d_audit_event (action);\n")
    assert run_cli("flyway", "repair", "--locations", locations).returncode == 0
    recovered = run_cli("flyway", "migrate", "--locations", locations)
    assert recovered.returncode == 0, recovered.stdout
    assert modern_rows()[-1][1:2] + modern_rows()[-1][6:] == ("0222", True)


def test_migrate_without_the_baseline_says_baseline_missing(
    secrets_dir, artifacts_dir, external_modernized
):
    # The database is empty: the Modernized baseline was never applied.
    result = materialize(
        [*secret_files, modernized_schema, modernized_flyway_history],
        selection=[HISTORY],
        instance=target_instance(),
        partition_key=DEFAULT_TARGET,
        resources=restore_resources(),
        raise_on_error=False,
    )
    (message,) = failure_messages(result)
    assert message.startswith("baseline missing")
    assert '"appointment_model"' in message and MODERN_SCHEMA_FILE in message
    cli = run_cli("flyway", "migrate")
    assert cli.returncode == 1
    assert "DIAGNOSIS: baseline missing" in cli.stdout and MODERN_SCHEMA_FILE in cli.stdout


def test_modernized_assets_pass_their_checks_on_embedded(secrets_dir, artifacts_dir):
    result = materialize(
        [*secret_files, modernized_schema, modernized_flyway_history],
        instance=target_instance(),
        partition_key=DEFAULT_TARGET,
        resources=restore_resources(),
        raise_on_error=False,
    )
    assert result.success, failure_messages(result)
    assert check_results(result) == {
        "history_versions": True,
        "expected_tables": True,
        "expected_columns": True,
        "pg_trgm": True,
    }


def test_cli_and_docker_runner_specs(external_modernized):
    settings = load_settings()
    target = Database(settings.modernized, settings.pg)
    config = load_flyway_config(settings.flyway, target)
    cli = cli_command(settings.flyway, config, target, "migrate")
    # The target by -url/-user, which win over the conf; the password by FLYWAY_PASSWORD.
    db = external_modernized["MODERNIZED_POSTGRES_DB"]
    port = external_modernized["MODERNIZED_POSTGRES_PORT"]
    url_user = [
        f"-url=jdbc:postgresql://127.0.0.1:{port}/{db}?sslmode=disable"
        "&options=-c%20lock_timeout%3D300000",
        "-user=opendolphin",
    ]
    assert cli.argv == [
        "flyway",
        f"-configFiles={DEMO_FLYWAY_CONF}",
        *url_user,
        f"-locations=filesystem:{DEMO_SQL}",
        "-skipCheckForUpdate",
        "migrate",
    ]
    assert cli.env["REDGATE_DISABLE_TELEMETRY"] == "true"
    assert cli.env["DB_HOST"] == "127.0.0.1"
    assert cli.env["DB_NAME"] == external_modernized["MODERNIZED_POSTGRES_DB"]
    assert cli.env["DB_PASSWORD"] == EXTERNAL_PASSWORD  # in the child's env only, never argv
    assert cli.env["FLYWAY_PASSWORD"] == EXTERNAL_PASSWORD
    assert all(EXTERNAL_PASSWORD not in arg for arg in cli.argv)
    docker = docker_command(settings.flyway, config, target, "baseline")
    assert docker.image == "flyway/flyway:10"
    assert docker.argv == [
        "-configFiles=/flyway/conf/flyway.conf",
        *url_user,
        "-locations=filesystem:/flyway/sql",
        "-skipCheckForUpdate",
        "baseline",
    ]
    assert docker.volumes == {
        str(DEMO_FLYWAY_CONF.parent): {"bind": "/flyway/conf", "mode": "ro"},
        str(DEMO_SQL): {"bind": "/flyway/sql", "mode": "ro"},
    }
    # The DB_* the container gets point at a server that is reachable with them.
    with psycopg.connect(
        host=docker.env["DB_HOST"],
        port=int(docker.env["DB_PORT"]),
        dbname=docker.env["DB_NAME"],
        user=docker.env["DB_USER"],
        password=docker.env["DB_PASSWORD"],
        sslmode="disable",
    ) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
