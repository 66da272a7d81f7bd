"""`restore-assets plan`: the dry run's exit codes (0 proceed, 2 Secrets blocked, 3 consent
missing or configuration bad), and that it changes nothing on empty targets. The plan on a
restored chain, and `plan.md` in a run's evidence, are in test_chain_readonly.py."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg

from restore_assets.pg.database import Database
from restore_assets.runbook.baseline_files import read_dump
from restore_assets.settings import LEGACY_SEED_FILE, SIDES, load_settings
from restore_assets_tests.conftest import EXTERNAL_PASSWORD, run_cli
from restore_assets_tests.helpers import catalog_fingerprint, state_listing
from restore_assets_tests.test_cli import evidence_line


def targets() -> list[Database]:
    settings = load_settings()
    return [Database(getattr(settings, side), settings.pg) for side in SIDES]


def test_plan_on_empty_external_targets_changes_nothing_and_would_proceed(
    secrets_dir, artifacts_dir, external_legacy, external_modernized
):
    settings = load_settings()
    before = [catalog_fingerprint(t) for t in targets()]
    files_before = state_listing(settings.paths.state_dir)
    done = run_cli("plan")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [catalog_fingerprint(t) for t in targets()] == before
    assert before[0]["schemas"] == ["public"] and before[0]["relations"] == []  # really empty
    assert state_listing(settings.paths.state_dir) == files_before  # only the sha256 cache written
    assert not artifacts_dir.exists()  # no evidence folder: a plan is not a run
    out = done.stdout
    assert "Verdict: a run would proceed (exit 0)" in out
    assert out.count("Consent: not needed: the target is empty") == 2
    assert "| public | 0 | 0 | 0 | 0 bytes |" in out
    assert "After the restore: 5 pending from baseline 0: V0001__baseline_tag.sql" in out
    assert "Load: fast: the seed into bare tables" in out  # RESTORE_LOAD's default
    assert "Load: plain: no seed to load" in out  # Modernized
    seed = read_dump(secrets_dir / LEGACY_SEED_FILE)
    assert f"| {LEGACY_SEED_FILE} | {seed.sha256} |" in out
    assert EXTERNAL_PASSWORD not in out + done.stderr


def test_plan_missing_file_exit_2_asks_no_target(secrets_dir, tmp_path, monkeypatch):
    """As in a run, intake comes first: one unusable file and no target is asked anything,
    not even the embedded server started."""
    state = tmp_path / "fresh-state"
    monkeypatch.setenv("RESTORE_STATE_DIR", str(state))
    (secrets_dir / LEGACY_SEED_FILE).unlink()
    done = run_cli("plan")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"Secrets not usable: {LEGACY_SEED_FILE} (missing)" in done.stdout
    # Modernized's own file is fine, yet its target is not asked either: the run stops first.
    assert done.stdout.count("Target: not asked: intake stops the run first") == 2
    assert "Verdict: a run would stop: Secrets missing or unusable" in done.stdout
    assert not (state / "pgdata").exists()


def test_plan_external_non_empty_without_consent_exit_3(secrets_dir, external_legacy):
    conninfo = {
        "host": "127.0.0.1",
        "port": external_legacy["POSTGRES_PORT"],
        "dbname": external_legacy["POSTGRES_DB"],
        "user": "opendolphin",
        "password": EXTERNAL_PASSWORD,
    }
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA clinic")
        conn.execute("CREATE TABLE clinic.notes AS SELECT g AS id FROM generate_series(1, 500) g")
        conn.execute("ANALYZE clinic.notes")
    target = targets()[0]
    before = catalog_fingerprint(target)

    refused = run_cli("plan", "--only", "legacy")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "Consent: MISSING: the legacy opendolphin@127.0.0.1" in refused.stdout
    assert "Backup: yes (once consent is given)" in refused.stdout
    assert "| clinic | 2 | 1 | 500 |" in refused.stdout  # schema + table; rows from ANALYZE

    consented = run_cli("plan", "--only", "legacy", "--allow-reset")
    assert consented.returncode == 0, consented.stdout + consented.stderr
    assert "Drops schema(s) public, clinic" in consented.stdout
    assert "Backup: yes: pg_dump --format=custom into <Secrets>/backups/<UTC>/legacy-" in (
        consented.stdout
    )
    assert "## Gates that would be evaluated\n\nNone in this run" in consented.stdout
    assert catalog_fingerprint(target) == before
    assert EXTERNAL_PASSWORD not in refused.stdout + consented.stdout


def test_plan_bad_psql_setting_exit_3(secrets_dir, external_legacy, monkeypatch, tmp_path):
    monkeypatch.setenv("RESTORE_PSQL", str(tmp_path / "no-such-psql"))
    done = run_cli("plan", "--only", "legacy")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "psql binary" in done.stdout and "is not executable" in done.stdout


def test_plan_runs_without_dagster(secrets_dir, external_legacy):
    """`plan` is core only: with the dagster import blocked it still answers."""
    script = (
        "import sys\n"
        "sys.modules['dagster'] = None\n"
        "from restore_assets import cli\n"
        "sys.exit(cli.main(['plan', '--only', 'legacy']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# Restore plan" in done.stdout


def test_a_blocked_run_still_starts_with_its_plan(secrets_dir, artifacts_dir, external_legacy):
    """`run` logs the plan and keeps it as plan.md before intake stops it."""
    (secrets_dir / LEGACY_SEED_FILE).unlink()
    done = run_cli("run", "--only", "legacy")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "plan: a run would stop: Secrets missing or unusable" in done.stderr
    folder = evidence_line(done.stdout)
    plan = (folder / "plan.md").read_text()
    assert (
        "**Verdict: a run would stop: Secrets missing or unusable, nothing touched (exit 2)**"
        in (plan)
    )
    assert f"{LEGACY_SEED_FILE} | - | 0 | - | - | missing |" in plan
