"""The `restore-assets` command line: exit codes, consent, redaction. Most tests call `cli.main`
in-process; the e2e ones go through the console script as a separate process."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from restore_assets.settings import LEGACY_SEED_FILE
from restore_assets_tests.conftest import EXTERNAL_PASSWORD, run_cli, run_cli_process
from restore_assets_tests.helpers import database_fingerprint


def evidence_line(stdout: str) -> Path:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("evidence: "), stdout
    return Path(last.removeprefix("evidence: "))


def all_text_under(*folders: Path) -> bytes:
    blob = b""
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                blob += path.read_bytes()
    return blob


@pytest.mark.e2e
def test_missing_secrets_exit_2_and_nothing_touched(secrets_dir, artifacts_dir, external_legacy):
    (secrets_dir / LEGACY_SEED_FILE).unlink()
    done = run_cli_process("run", "--only", "legacy")
    assert "Traceback" not in done.stderr and len(done.stdout.splitlines()) < 15  # short
    assert done.returncode == 2, done.stdout + done.stderr
    folder = evidence_line(done.stdout)
    log = (folder / "baseline_search.log").read_text()
    assert f"{LEGACY_SEED_FILE}: missing" in log and "Gate #40" in log
    assert database_fingerprint() == []  # the external database was never touched


@pytest.mark.slow
def test_loose_mode_exit_2_names_file_and_mode(secrets_dir, artifacts_dir):
    (secrets_dir / LEGACY_SEED_FILE).chmod(0o644)
    done = run_cli("run", "--only", "legacy")
    assert done.returncode == 2
    assert "mode 0644" in done.stdout and LEGACY_SEED_FILE in done.stdout


@pytest.mark.slow
def test_external_consent_backup_and_no_password_anywhere(
    secrets_dir, artifacts_dir, external_legacy
):
    first = run_cli("run", "--only", "legacy")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "all steps and checks passed" in first.stdout

    before = database_fingerprint()
    refused = run_cli("run", "--only", "legacy")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert external_legacy["POSTGRES_DB"] in refused.stdout
    assert "--allow-reset" in refused.stdout
    assert database_fingerprint() == before
    assert not (secrets_dir / "backups").exists()

    allowed = run_cli("run", "--only", "legacy", "--allow-reset")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    (backup,) = (secrets_dir / "backups").glob("*/*.dump")
    readme = (evidence_line(allowed.stdout) / "README.md").read_text()
    assert str(backup.relative_to(secrets_dir)) in readme

    # A wrong password: a failure that must still not print it.
    os.environ["POSTGRES_PASSWORD"] = EXTERNAL_PASSWORD + "-wrong"
    try:
        wrong = run_cli("run", "--only", "legacy", "--allow-reset")
    finally:
        os.environ["POSTGRES_PASSWORD"] = EXTERNAL_PASSWORD
    assert wrong.returncode == 1
    assert "password authentication failed" in wrong.stdout + wrong.stderr

    outputs = "".join(d.stdout + d.stderr for d in (first, refused, allowed, wrong))
    assert EXTERNAL_PASSWORD not in outputs
    state = Path(os.environ["RESTORE_STATE_DIR"]) / "dagster_home"
    assert EXTERNAL_PASSWORD.encode() not in all_text_under(artifacts_dir, state)


def test_status_is_read_only_and_reports_files_and_targets(secrets_dir, external_legacy):
    done = run_cli("status")
    assert done.returncode == 0, done.stderr
    assert "legacy-server/db-baseline/opendolphin-legacy-schema.sql: ok" in done.stdout
    assert "reachable, PostgreSQL 18" in done.stdout
    assert "Flyway: latest " in done.stdout  # the embedded server runs: its history is read
    assert EXTERNAL_PASSWORD not in done.stdout


def test_unusable_setting_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("RESTORE_ALLOW_RESET", "perhaps")
    done = run_cli("status")
    assert done.returncode == 3
    assert "RESTORE_ALLOW_RESET" in done.stderr


def test_embedded_server_has_the_runbook_databases(settings):
    from restore_assets.pg.database import Database

    target = Database(settings.legacy, settings.pg)
    with psycopg.connect(**target.conninfo(dbname="postgres")) as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
    assert {"opendolphin", "opendolphin_modern"} <= names


def test_sslmode_is_honoured(external_legacy, monkeypatch):
    # The test server has no TLS: `require` must make the connection fail, `disable` succeed.
    monkeypatch.setenv("POSTGRES_SSLMODE", "require")
    done = run_cli("status")
    assert "unreachable" in done.stdout and "SSL" in done.stdout


@pytest.mark.e2e
def test_two_processes_starting_the_embedded_server_share_one(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys, psycopg\n"
        "from pathlib import Path\n"
        "from restore_assets.pg.database import start_embedded, embedded_admin\n"
        "endpoint = start_embedded(Path(sys.argv[1]))\n"
        "with embedded_admin(endpoint) as conn:\n"
        "    print(conn.execute('SELECT pg_backend_pid() > 0, current_setting(%s)',"
        " ('data_directory',)).fetchone()[1])\n"
    )
    state = tmp_path / "state"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(state)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs[0] == outputs[1] == str((state / "pgdata").resolve())


def test_ops_request_names_what_is_missing(secrets_dir):
    assert "nothing to request" in run_cli("ops-request").stdout
    (secrets_dir / LEGACY_SEED_FILE).unlink()
    done = run_cli("ops-request")
    assert done.returncode == 0
    assert f"{secrets_dir / LEGACY_SEED_FILE}" in done.stdout and "(missing)" in done.stdout
    for needed in ("Gate #40", "Deadline:", "Target: Legacy", "Evidence:"):
        assert needed in done.stdout


@pytest.mark.slow
def test_blocked_run_starts_no_server_and_prints_the_gates_it_stopped(tmp_path, monkeypatch):
    """Intake comes first: with no Secrets not even the embedded server is started."""
    state = tmp_path / "fresh-state"
    monkeypatch.setenv("RESTORE_STATE_DIR", str(state))
    monkeypatch.setenv("RESTORE_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "empty"))
    done = run_cli("run")
    assert done.returncode == 2, done.stdout + done.stderr
    assert not (state / "pgdata").exists()
    gate_lines = [line for line in done.stdout.splitlines() if line.startswith("db_restore")]
    assert gate_lines and "FAILED" in gate_lines[0] and "not reached" in gate_lines[0]
    assert evidence_line(done.stdout).is_dir()


@pytest.mark.slow
def test_unexpected_step_error_still_names_the_evidence_folder(
    secrets_dir, artifacts_dir, monkeypatch
):
    monkeypatch.setenv("RESTORE_LEGACY_COUNT_TABLES", "d_users,no.such.table.at_all")
    done = run_cli("run", "--only", "legacy")
    assert done.returncode == 1
    folder = evidence_line(done.stdout)
    assert (folder / "legacy_psql.log").is_file()


def test_flyway_command_on_an_unreachable_target_says_so_without_a_traceback(monkeypatch):
    monkeypatch.setenv("MODERNIZED_POSTGRES_HOST", "127.0.0.1")
    monkeypatch.setenv("MODERNIZED_POSTGRES_PORT", "1")  # nothing listens there
    done = run_cli("flyway", "info")  # in-process: an uncaught error would fail the test
    assert done.returncode == 1
    assert "ERROR: cannot connect to the modernized" in done.stdout
    assert "MODERNIZED_POSTGRES_HOST" in done.stdout  # what to check


@pytest.mark.e2e
def test_ui_reads_secrets_dir_from_dotenv_and_puts_the_demo_on_the_embedded_server(tmp_path):
    """`make ui` after `make demo`: a SECRETS_DIR in .env is the store watched; without one, the
    demo's Secrets — and then the embedded server even when .env names a real one."""
    import subprocess
    import sys

    state = tmp_path / "state"
    (state / "demo" / "Secrets").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("RESTORE_DOTENV", "DAGSTER_HOME")}
    env |= {"RESTORE_STATE_DIR": str(state)}
    for name in ("SECRETS_DIR", "POSTGRES_HOST", "MODERNIZED_POSTGRES_HOST", "RESTORE_TARGETS"):
        env.pop(name, None)

    def ui_with(dotenv: str) -> str:
        (tmp_path / ".env").write_text(dotenv)
        cli = Path(sys.executable).parent / "restore-assets"
        done = subprocess.run(
            [str(cli), "ui", "--", "--help"],  # `dagster dev --help`: prints and exits
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.splitlines()[0]

    store = tmp_path / "ops-store"
    assert ui_with(f"SECRETS_DIR={store}\n") == f"watching the Secrets store: {store}"
    said = ui_with("POSTGRES_HOST=db.example\nMODERNIZED_POSTGRES_HOST=db.example\n")
    assert said.startswith(f"watching the demo Secrets: {state / 'demo' / 'Secrets'}, "), said
    assert "legacy opendolphin@embedded/" in said and "modernized opendolphin@embedded/" in said
    assert "db.example" not in said
