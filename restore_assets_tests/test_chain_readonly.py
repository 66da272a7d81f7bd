"""Read-only tests on one restored chain (the `restored_chain` fixture restores it once for this
module): the gates, the evidence folder, the exports. Nothing here changes a database."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from restore_assets.settings import LEGACY_SCHEMA_FILE, MODERN_SCHEMA_FILE
from restore_assets_tests.conftest import run_cli
from restore_assets_tests.helpers import gate_results, gates_only, query
from restore_assets_tests.test_gates import COMPLETE_EVIDENCE, assert_documented_shape


def test_whole_chain_passes_every_gate_with_complete_evidence(restored_chain):
    result, secrets_dir = restored_chain.result, restored_chain.secrets_dir
    assert result.success
    gates = gate_results(result)
    assert {g: gates[g][0] for g in ("db_restore", "audit_capture", "jms_claim")} == {
        "db_restore": True,
        "audit_capture": True,
        "jms_claim": True,
    }
    folder = restored_chain.evidence
    assert COMPLETE_EVIDENCE <= {p.name for p in folder.iterdir()}
    report = json.loads((folder / "gate_report.json").read_text())
    assert_documented_shape(report)
    assert report["status"] == "passed"
    sha = hashlib.sha256((secrets_dir / LEGACY_SCHEMA_FILE).read_bytes()).hexdigest()
    assert (report["inputs"][0]["path"], report["inputs"][0]["sha256"]) == (LEGACY_SCHEMA_FILE, sha)
    assert [r["version"] for r in report["flyway"]] == ["0", "0001", "0002", "0003", "0220", "0221"]
    api = next(c for c in report["gates"][0]["checks"] if c["id"] == "facility_api")
    assert api["passed"] is None and "skipped (not configured" in api["detail"]
    row = (folder / "gate_table_row.md").read_text()
    assert "| DB ベースライン復旧済み / DB baseline restored | ✅ 完了（1 件スキップ" in row  # §6.3
    assert "DB 復旧完了 / db_restore ✅, 監査ログ採取準備 / audit_capture ✅" in row
    snippet = (folder / "progress_snippet.md").read_text()
    assert "PHASE2_PROGRESS.md" in snippet and "証跡" in snippet
    japanese, english = (line for line in snippet.splitlines() if "(Legacy/Modernized)" in line)
    assert "DB ベースライン復旧済み" in japanese and "DB baseline restored" in english  # ja first
    assert f"`artifacts/parity-manual/db-restore/{folder.name}`" in snippet  # relative
    inventory = (folder / "ddl_inventory.md").read_text()
    assert MODERN_SCHEMA_FILE in inventory and "V0221__doc_module_flag_columns.sql" in inventory
    objects = (folder / "missing_objects.md").read_text()
    assert "0 missing" in objects and "migration V0003" in objects
    # No seed row text in the evidence: patient names and password hashes stay in the database.
    text = "".join(p.read_text(errors="replace") for p in folder.iterdir() if p.is_file())
    for (name,) in query("SELECT fullname FROM d_patient LIMIT 30"):
        assert name not in text
    for (digest,) in query("SELECT password FROM d_users"):
        assert digest not in text


def test_export_baseline_is_reproducible_and_stays_in_the_secrets_root(restored_chain, tmp_path):
    secrets_dir = restored_chain.secrets_dir
    # The embedded (demo) server is not dumped into the Secrets store by default ...
    demo = run_cli("export-baseline", "--side", "legacy")
    assert demo.returncode == 1 and "embedded (demo) server" in demo.stderr
    assert not (secrets_dir / "legacy-server" / "db-baseline" / "exports").exists()
    # ... only into a file named explicitly.
    first = run_cli(
        "export-baseline", "--side", "legacy", "--output", str(secrets_dir / "first.sql")
    )
    assert first.returncode == 0, first.stderr
    assert "dumped: legacy opendolphin@embedded/opendolphin" in first.stdout
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


def test_facility_api_probe_counts_only_when_configured(restored_chain, monkeypatch):
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
        assert restored_chain.result.success
        monkeypatch.setenv("RESTORE_FACILITY_API_URL", f"http://127.0.0.1:{server.server_port}/")
        assert gate_results(gates_only())["db_restore"][0] is True
        Handler.status = 503
        passed, detail = gate_results(gates_only())["db_restore"]
        assert not passed and "facility_api" in detail and "503" in detail
    finally:
        server.shutdown()


def test_plan_on_the_restored_chain_changes_nothing_and_holds_no_lock(restored_chain, monkeypatch):
    from restore_assets.pg.database import Database
    from restore_assets.runbook.preflight import restore_lock
    from restore_assets.settings import load_settings
    from restore_assets_tests.helpers import catalog_fingerprint, state_listing

    assert restored_chain.result.success
    settings = load_settings()
    legacy = Database(settings.legacy, settings.pg)
    modern = Database(settings.modernized, settings.pg)
    before = [catalog_fingerprint(legacy), catalog_fingerprint(modern)]
    files_before = state_listing(settings.paths.state_dir)
    folders_before = sorted(restored_chain.artifacts_dir.rglob("*"))
    # Both targets' locks held as a restore holds them: a plan that waited for either would
    # fail after RESTORE_WAIT_SECONDS instead of answering.
    monkeypatch.setenv("RESTORE_WAIT_SECONDS", "1")
    with restore_lock(legacy), restore_lock(modern):
        done = run_cli("plan")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [catalog_fingerprint(legacy), catalog_fingerprint(modern)] == before
    assert before[0]["rows"] and before[1]["sequences"]  # a real restored pair was compared
    assert state_listing(settings.paths.state_dir) == files_before
    assert sorted(restored_chain.artifacts_dir.rglob("*")) == folders_before
    out = done.stdout
    assert "Verdict: a run would proceed (exit 0)" in out
    assert "Consent: not needed: the embedded server is the project's own" in out
    assert out.count("Backup: yes: pg_dump --format=custom") == 2
    # What the reset drops is what the server holds now, and the same count the restore uses.
    objects = legacy.user_schemas_content()
    tables, rows, _ = legacy.table_estimates()["public"]
    assert f"| public | {objects['public']} | {tables} | {rows} |" in out
    assert rows > 0 and tables >= 5
    # Flyway now: everything applied; after the restore: pending again from the baseline.
    assert "After the restore: 5 pending from baseline 0" in out
    assert len(re.findall(r"\| Versioned \| 0\d+ +\|.*\| Success +\|", out)) == 5


def test_every_run_starts_with_its_plan_in_the_evidence(restored_chain):
    from restore_assets.runbook.gates import GATE_CHECKS

    folder = restored_chain.evidence
    plan = (folder / "plan.md").read_text()
    assert plan.startswith("# Restore plan — default")
    assert "**Verdict: a run would proceed (exit 0)**" in plan
    sha = hashlib.sha256((restored_chain.secrets_dir / MODERN_SCHEMA_FILE).read_bytes())
    assert f"| {MODERN_SCHEMA_FILE} | {sha.hexdigest()} |" in plan
    assert "After the restore: 5 pending from baseline 0" in plan
    assert "plan.md" in (folder / "README.md").read_text()
    # The gates the plan announces are the ones the run evaluated, sub-check by sub-check.
    report = json.loads((folder / "gate_report.json").read_text())
    assert {g["id"]: tuple(c["id"] for c in g["checks"]) for g in report["gates"]} == GATE_CHECKS
    for gate, checks in GATE_CHECKS.items():
        assert f"| {gate} | {', '.join(checks)} |" in plan


def test_dump_extensions_come_from_pg_dumps_own_toc(restored_chain):
    """The plan's preflight asks for the extensions a dump creates without a second read: the
    TOC comments real pg_dump writes (after migrate, Modernized has pg_trgm)."""
    from restore_assets.runbook.baseline_files import read_dump

    output = restored_chain.secrets_dir / "toc-check.sql"
    done = run_cli("export-baseline", "--side", "modernized", "--output", str(output))
    assert done.returncode == 0, done.stderr
    assert read_dump(output).extensions == ["pg_trgm"]
    assert read_dump(restored_chain.secrets_dir / MODERN_SCHEMA_FILE).extensions == []
