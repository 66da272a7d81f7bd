"""Runbook §6: the whole chain, the gates and their reasons, the sync, the evidence folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from dagster import AssetKey

from restore_assets.definitions import defs
from restore_assets.pg.database import Database
from restore_assets.runbook.sync import sync_tables
from restore_assets.settings import (
    DEFAULT_TARGET,
    DEMO_FLYWAY_CONF,
    MODERN_SCHEMA_FILE,
    load_settings,
)
from restore_assets_tests.conftest import EXTERNAL_PASSWORD, run_cli
from restore_assets_tests.helpers import (
    evidence_folders,
    gate_results,
    gates_only,
    run_all,
    target_instance,
)

pytestmark = pytest.mark.slow  # every test runs the chain or a CLI run

COMPLETE_EVIDENCE = {
    "README.md",
    "plan.md",
    "gate_report.json",
    "gate_report.md",
    "baseline_search.log",
    "investigation.log",
    "legacy_psql.log",
    "modern_psql.log",
    "flyway_migrate.log",
    "psql_dt_legacy.log",
    "rows_vs_dump_legacy.md",
    "psql_dt_modernized.log",
    "psql_count_d_users_legacy.log",
    "psql_count_d_users_modernized.log",
    "psql_nextval_facility_num_legacy.log",
    "psql_setval_facility_num_legacy.log",
    "psql_flyway_schema_history.log",
    "ddl_inventory.md",
    "missing_objects.md",
    "progress_snippet.md",
    "gate_table_row.md",
}


def targets():
    settings = load_settings()
    return (
        Database(settings.legacy, settings.pg),
        Database(settings.modernized, settings.pg),
    )


def modern(statement: str, params=None):
    with targets()[1].connect(autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else None


def assert_documented_shape(report: dict) -> None:
    """DESIGN.md's gate_report.json: status, gates with checks, inputs, flyway rows."""
    assert report["status"] in ("passed", "failed", "blocked")
    assert [g["id"] for g in report["gates"]] == ["db_restore", "audit_capture", "jms_claim"]
    for gate in report["gates"]:
        assert isinstance(gate["passed"], bool) and gate["checks"]
        for check in gate["checks"]:
            assert isinstance(check["id"], str) and isinstance(check["detail"], str)
            assert check["passed"] in (True, False, None)
            assert check["passed"] is not None or check.get("skipped") is True
    for item in report["inputs"]:
        assert set(item) >= {"path", "sha256", "mode"}
        assert len(item["sha256"]) == 64 and item["mode"] == "0600"
    for row in report["flyway"]:
        assert set(row) >= {"version", "description", "checksum", "success"}


def test_audit_probe_leaves_nothing_and_a_failing_insert_fails_the_gate(secrets_dir, artifacts_dir):
    assert run_all().success
    before = modern("SELECT count(*) FROM opendolphin.d_audit_event")
    assert gate_results(gates_only())["audit_capture"][0] is True
    assert modern("SELECT count(*) FROM opendolphin.d_audit_event") == before
    assert modern("SELECT count(*) FROM opendolphin.d_audit_event WHERE action = 'GATE_PROBE'") == [
        (0,)
    ]
    modern(
        "ALTER TABLE opendolphin.d_audit_event ADD CONSTRAINT no_writes CHECK (action = 'never')"
    )
    gates = gate_results(gates_only())
    passed, detail = gates["audit_capture"]
    assert not passed and "insert_returning_id" in detail and "no_writes" in detail
    assert not gates["jms_claim"][0] and "audit_capture_passed" in gates["jms_claim"][1]
    assert gates["db_restore"][0]


def test_missing_table_fails_jms_claim_naming_it(secrets_dir, artifacts_dir):
    assert run_all().success
    with targets()[0].connect(autocommit=True) as conn:
        conn.execute("DROP TABLE diagnosis_module")
    gates = gate_results(gates_only())
    passed, detail = gates["jms_claim"]
    assert not passed and "legacy_diagnosis_module" in detail and "missing" in detail
    assert gates["db_restore"][0] and gates["audit_capture"][0]
    report = json.loads((evidence_folders(artifacts_dir)[-1] / "gate_report.json").read_text())
    assert report["status"] == "failed"


def test_missing_flyway_version_fails_db_restore(secrets_dir, artifacts_dir, tmp_path, monkeypatch):
    migrations = tmp_path / "sql"
    shutil.copytree(DEMO_FLYWAY_CONF.parent / "sql", migrations)
    # V0002 adds indexes and pg_trgm, no required table: the gates are reached and judge it.
    (migrations / "V0002__performance_indexes.sql").unlink()
    monkeypatch.setenv("FLYWAY_LOCATIONS", f"filesystem:{migrations}")
    result = run_all()
    gates = gate_results(result)
    passed, detail = gates["db_restore"]
    assert not passed and "flyway_versions" in detail and "lacks successful version(s) 2" in detail
    assert not gates["jms_claim"][0]
    assert not gates["history_versions"][0]


def snapshot(target: Database):
    with target.connect(autocommit=True) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
            for table in ("d_facility", "d_users", "d_roles")
        } | {
            "facility_num": conn.execute(
                "SELECT last_value, is_called FROM facility_num"
            ).fetchall()
        }


def test_sync_twice_gives_the_same_rows_and_never_touches_modern_facility_num(
    secrets_dir, artifacts_dir
):
    assert run_all().success
    legacy, modernized = targets()
    first = snapshot(modernized)
    report = sync_tables(legacy, modernized, ["d_facility", "d_users", "d_roles"])
    assert snapshot(modernized) == first
    assert report.tables["d_users"]["copied"] == len(first["d_users"]) == 12
    assert first["facility_num"] == [(200, False)]  # the Modernized baseline's own value
    # A changed Legacy name flows over on the next sync; nothing else moves.
    with legacy.connect(autocommit=True) as conn:
        conn.execute("UPDATE d_facility SET facilityname = 'みなと小児科' WHERE id = 3")
    sync_tables(legacy, modernized, ["d_facility", "d_users", "d_roles"])
    after = snapshot(modernized)
    assert [r[2] for r in after["d_facility"]] == [
        "オープンドルフィン内科",
        "さくら整形外科",
        "みなと小児科",
    ]
    assert after["d_users"] == first["d_users"] and after["facility_num"] == first["facility_num"]


def test_cli_run_on_two_external_targets_then_second_run_is_clean(
    secrets_dir, artifacts_dir, external_legacy, external_modernized
):
    first = run_cli("run")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "gate" in first.stdout and first.stdout.count("passed ") >= 3
    for gate in ("db_restore", "audit_capture", "jms_claim"):
        assert any(line.startswith(gate) and "passed" in line for line in first.stdout.splitlines())
    history = modern(
        "SELECT installed_rank, version, checksum FROM opendolphin.flyway_schema_history"
    )
    second = run_cli("run", "--allow-reset")
    assert second.returncode == 0, second.stdout
    assert [
        r[1:]
        for r in modern(
            "SELECT installed_rank, version, checksum FROM opendolphin.flyway_schema_history"
        )
    ] == [r[1:] for r in history]
    folders = evidence_folders(artifacts_dir)
    assert len(folders) == 2
    for folder in folders:
        blob = b"".join(p.read_bytes() for p in folder.iterdir() if p.is_file())
        assert EXTERNAL_PASSWORD.encode() not in blob
    assert EXTERNAL_PASSWORD not in first.stdout + first.stderr + second.stdout + second.stderr


def test_blocked_run_writes_a_blocked_gate_report(secrets_dir, artifacts_dir):
    (secrets_dir / MODERN_SCHEMA_FILE).unlink()
    done = run_cli("run")
    assert done.returncode == 2
    folder = Path(done.stdout.strip().splitlines()[-1].removeprefix("evidence: "))
    report = json.loads((folder / "gate_report.json").read_text())
    assert_documented_shape(report)
    assert report["status"] == "blocked"
    assert MODERN_SCHEMA_FILE in report["gates"][0]["checks"][0]["detail"]
    # Nothing was touched on either side: the Legacy restore never started.
    assert "legacy_psql.log" not in {p.name for p in folder.iterdir()}


def test_whole_chain_job_from_the_ui_vets_both_sides_first(secrets_dir, artifacts_dir):
    (secrets_dir / MODERN_SCHEMA_FILE).chmod(0o640)
    result = run_all()  # as the UI launches it: the job's own tags, no CLI
    assert not result.success
    (folder,) = evidence_folders(artifacts_dir)
    names = {p.name for p in folder.iterdir()}
    assert "legacy_psql.log" not in names and "modern_psql.log" not in names
    assert "mode 0640" in (folder / "baseline_search.log").read_text()


def test_gate_reports_facility_num_behind_without_changing_it(secrets_dir, artifacts_dir):
    assert run_all().success
    legacy, _ = targets()
    with legacy.connect(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO d_facility (id, facilityid, facilityname, registereddate, membertype) "
            "VALUES (98, '1.3.6.1.4.1.9414.72.160', 'テスト', '2024-01-01', 'PROCESS')"
        )
        before = conn.execute("SELECT last_value, is_called FROM facility_num").fetchone()
    passed, detail = gate_results(gates_only())["db_restore"]
    assert not passed and "facility_num_nextval" in detail and "160" in detail
    with legacy.connect(autocommit=True) as conn:
        assert conn.execute("SELECT last_value, is_called FROM facility_num").fetchone() == before


def test_a_stopped_run_leaves_gates_report_saying_so_not_an_older_passed(
    secrets_dir, artifacts_dir
):
    """The UI shows the latest gates/report materialisation: after a blocked run it must say
    'blocked' and why, not keep the 'passed' of the run before."""
    instance = target_instance()
    job = defs.resolve_job_def("restore_all")
    config = {"resources": {"restore": {"config": {"allow_reset": True}}}}
    assert job.execute_in_process(
        instance=instance, partition_key=DEFAULT_TARGET, run_config=config
    ).success
    key = AssetKey(["gates", "report"])

    def latest_status():
        event = instance.get_latest_materialization_event(key)
        return event.asset_materialization.metadata["status"].value

    assert latest_status() == "passed"
    (secrets_dir / MODERN_SCHEMA_FILE).unlink()
    job.execute_in_process(
        instance=instance, partition_key=DEFAULT_TARGET, run_config=config, raise_on_error=False
    )
    assert latest_status() == "blocked"
    event = instance.get_latest_materialization_event(key)
    assert MODERN_SCHEMA_FILE in event.asset_materialization.metadata["reason"].value


def test_an_unexpected_step_error_is_recorded_as_a_stop_too(
    secrets_dir, artifacts_dir, monkeypatch
):
    """Not a RestoreError (here: a count over a table name the server rejects, after the commit):
    the gate report and gates/report still say 'failed' and where, never an older 'passed'."""
    instance = target_instance()
    job = defs.resolve_job_def("restore_all")
    config = {"resources": {"restore": {"config": {"allow_reset": True}}}}
    assert job.execute_in_process(
        instance=instance, partition_key=DEFAULT_TARGET, run_config=config
    ).success
    key = AssetKey(["gates", "report"])

    monkeypatch.setenv("RESTORE_LEGACY_COUNT_TABLES", "d_users,no.such.table.at_all")
    result = job.execute_in_process(
        instance=instance, partition_key=DEFAULT_TARGET, run_config=config, raise_on_error=False
    )
    assert not result.success
    metadata = instance.get_latest_materialization_event(key).asset_materialization.metadata
    assert metadata["status"].value == "failed"
    # Both sides count that table (legacy after its restore, modernized before the sync).
    assert metadata["stopped_by"].value in ("legacy/restore", "modernized/flyway_history")
    assert metadata["reason"].value.startswith("unexpected error (SyntaxError): "), metadata
    folder = artifacts_dir / "parity-manual" / "db-restore"
    reports = sorted(folder.glob("*/gate_report.json"), key=lambda p: p.stat().st_mtime)
    report = json.loads(reports[-1].read_text())
    assert report["status"] == "failed" and len(reports) == 2
    assert all(not gate["passed"] for gate in report["gates"])
