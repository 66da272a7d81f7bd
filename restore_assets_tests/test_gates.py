"""Runbook §6: the whole chain, the gates and their reasons, the sync, the evidence folder."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from dagster import DagsterInstance

from restore_assets.assets.gates import gates_report
from restore_assets.definitions import defs
from restore_assets.pg.targets import PostgresTarget
from restore_assets.resources import restore_resources
from restore_assets.runbook.sync import sync_tables
from restore_assets.settings import (
    DEMO_FLYWAY_CONF,
    LEGACY_SCHEMA_FILE,
    MODERN_SCHEMA_FILE,
    load_settings,
)
from restore_assets_tests.conftest import EXTERNAL_PASSWORD, run_cli
from restore_assets_tests.helpers import evidence_folders, query

COMPLETE_EVIDENCE = {
    "README.md",
    "gate_report.json",
    "gate_report.md",
    "baseline_search.log",
    "investigation.log",
    "legacy_psql.log",
    "modern_psql.log",
    "flyway_migrate.log",
    "psql_dt_legacy.log",
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
        PostgresTarget(settings.legacy, settings),
        PostgresTarget(settings.modernized, settings),
    )


def modern(statement: str, params=None):
    with targets()[1].connect(autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else None


def run_all():
    job = defs.resolve_job_def("restore_all")
    return job.execute_in_process(
        instance=DagsterInstance.ephemeral(),
        run_config={"resources": {"restore": {"config": {"allow_reset": True}}}},
        raise_on_error=False,
    )


def gates_only():
    """Materialise just gates/report against the databases as they are now."""
    from dagster import materialize

    return materialize(
        [gates_report],
        instance=DagsterInstance.ephemeral(),
        resources=restore_resources(),
        raise_on_error=False,
    )


def gate_results(result) -> dict[str, tuple[bool, str]]:
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.asset_check_evaluation_data
            out[data.check_name] = (data.passed, data.description or "")
    return out


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


def test_whole_chain_passes_every_gate_with_complete_evidence(secrets_dir, artifacts_dir):
    result = run_all()
    assert result.success
    gates = gate_results(result)
    assert {g: gates[g][0] for g in ("db_restore", "audit_capture", "jms_claim")} == {
        "db_restore": True,
        "audit_capture": True,
        "jms_claim": True,
    }
    (folder,) = evidence_folders(artifacts_dir)
    assert COMPLETE_EVIDENCE <= {p.name for p in folder.iterdir()}
    report = json.loads((folder / "gate_report.json").read_text())
    assert_documented_shape(report)
    assert report["status"] == "passed"
    sha = hashlib.sha256((secrets_dir / LEGACY_SCHEMA_FILE).read_bytes()).hexdigest()
    assert (report["inputs"][0]["path"], report["inputs"][0]["sha256"]) == (LEGACY_SCHEMA_FILE, sha)
    assert [r["version"] for r in report["flyway"]] == ["0", "0001", "0002", "0003", "0220", "0221"]
    api = next(c for c in report["gates"][0]["checks"] if c["id"] == "facility_api")
    assert api["passed"] is None and "skipped (not configured" in api["detail"]
    assert "DB baseline restored" in (folder / "gate_table_row.md").read_text()
    snippet = (folder / "progress_snippet.md").read_text()
    assert "PHASE2_PROGRESS.md" in snippet and "証跡" in snippet
    assert f"`artifacts/parity-manual/db-restore/{folder.name}`" in snippet  # relative
    inventory = (folder / "ddl_inventory.md").read_text()
    assert MODERN_SCHEMA_FILE in inventory and "V0221__document_module_flags.sql" in inventory
    objects = (folder / "missing_objects.md").read_text()
    assert "0 missing" in objects and "migration V0003" in objects
    # No seed row text in the evidence: patient names and password hashes stay in the database.
    text = "".join(p.read_text(errors="replace") for p in folder.iterdir() if p.is_file())
    for (name,) in query("SELECT fullname FROM d_patient LIMIT 30"):
        assert name not in text
    for (digest,) in query("SELECT password FROM d_users"):
        assert digest not in text


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
    (migrations / "V0220__phr_async_job.sql").unlink()
    monkeypatch.setenv("FLYWAY_LOCATIONS", f"filesystem:{migrations}")
    result = run_all()
    gates = gate_results(result)
    passed, detail = gates["db_restore"]
    assert not passed and "flyway_versions" in detail and "220" in detail
    assert not gates["jms_claim"][0]
    assert not gates["history_versions"][0]


def snapshot(target: PostgresTarget):
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


def test_export_baseline_is_reproducible_and_stays_in_the_secrets_root(
    secrets_dir, artifacts_dir, tmp_path
):
    assert run_all().success
    first = run_cli("export-baseline", "--side", "legacy")
    assert first.returncode == 0, first.stderr
    sha1, path1 = first.stdout.split()[:2]
    second = run_cli(
        "export-baseline", "--side", "legacy", "--output", str(secrets_dir / "again.sql")
    )
    sha2, path2 = second.stdout.split()[:2]
    assert sha1 == sha2 and path1 != path2
    assert Path(path1).stat().st_mode & 0o777 == 0o600
    assert Path(path1).is_relative_to(secrets_dir)
    refused = run_cli("export-baseline", "--side", "legacy", "--output", str(tmp_path / "x.sql"))
    assert refused.returncode == 1 and "inside the Secrets root" in refused.stderr
    assert not (tmp_path / "x.sql").exists()


def test_facility_api_probe_counts_only_when_configured(secrets_dir, artifacts_dir, monkeypatch):
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        status = 200

        def do_GET(self):  # noqa: N802 - the http.server API
            self.send_response(Handler.status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert run_all().success
        monkeypatch.setenv("RESTORE_FACILITY_API_URL", f"http://127.0.0.1:{server.server_port}/")
        assert gate_results(gates_only())["db_restore"][0] is True
        Handler.status = 503
        passed, detail = gate_results(gates_only())["db_restore"]
        assert not passed and "facility_api" in detail and "503" in detail
    finally:
        server.shutdown()


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
