"""Read-only tests on one restored chain (the `restored_chain` fixture restores it once for this
module): the gates, the evidence folder, the exports. Nothing here changes a database."""

from __future__ import annotations

import hashlib
import json
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
