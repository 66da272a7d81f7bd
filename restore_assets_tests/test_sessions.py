"""An application still connected to a target (issue 21 item 3): every wait for its locks is
bounded by RESTORE_WAIT_SECONDS, the run stops naming it and leaves the target as it was, and
`--terminate-sessions` ends it first. Real PostgreSQL (the external TCP server), real psql and
pg_dump, real Dagster runs through the CLI."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from restore_assets.pg.database import Database
from restore_assets.settings import load_settings
from restore_assets_tests.conftest import EXTERNAL_PASSWORD, run_cli
from restore_assets_tests.helpers import catalog_fingerprint

WAIT = 5


def application(env: dict[str, str], prefix: str, name: str = "wildfly") -> psycopg.Connection:
    """An application's session on the target, as WildFly's pool opens one."""
    return psycopg.connect(
        host=env[f"{prefix}_HOST"],
        port=int(env[f"{prefix}_PORT"]),
        dbname=env[f"{prefix}_DB"],
        user=env[f"{prefix}_USER"],
        password=EXTERNAL_PASSWORD,
        application_name=name,
    )


def evidence_of(stdout: str) -> Path:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("evidence: "), stdout
    return Path(last.removeprefix("evidence: "))


def target(side: str) -> Database:
    settings = load_settings()
    return Database(getattr(settings, side), settings.pg)


@pytest.mark.slow
def test_an_open_transaction_stops_the_restore_in_bounded_time_naming_it(
    secrets_dir, artifacts_dir, external_legacy, monkeypatch
):
    first = run_cli("run", "--only", "legacy")
    assert first.returncode == 0, first.stdout + first.stderr
    legacy = target("legacy")
    before = catalog_fingerprint(legacy)

    monkeypatch.setenv("RESTORE_WAIT_SECONDS", str(WAIT))
    app = application(external_legacy, "POSTGRES")
    app.execute("SELECT count(*) FROM d_users").fetchone()  # its transaction stays open
    try:
        plan = run_cli("plan", "--only", "legacy", "--allow-reset")
        assert "Sessions connected now" in plan.stdout and "'wildfly'" in plan.stdout, plan.stdout
        assert "--terminate-sessions): not ended" in plan.stdout

        started = time.monotonic()
        stopped = run_cli("run", "--only", "legacy", "--allow-reset")
        took = time.monotonic() - started
        print(f"gave up after {took:.1f}s (RESTORE_WAIT_SECONDS={WAIT})")
        assert stopped.returncode == 1, stopped.stdout + stopped.stderr
        out = stopped.stdout
        assert "'wildfly'" in out and "idle in transaction" in out, out
        assert "at the reset (DROP SCHEMA)" in out
        assert "RESTORE_WAIT_SECONDS" in out and "--terminate-sessions" in out
        assert "locks d_users" in out
        # The wait is bounded: RESTORE_WAIT_SECONDS plus a run's own start and stop.
        assert took < WAIT + 25, took
        assert catalog_fingerprint(legacy) == before  # rolled back: unchanged
        assert app.execute("SELECT 1").fetchone() == (1,)  # the application never noticed
        readme = (evidence_of(out) / "README.md").read_text()
        assert "wildfly" in readme

        started = time.monotonic()
        ended = run_cli("run", "--only", "legacy", "--allow-reset", "--terminate-sessions")
        print(f"with --terminate-sessions: restored in {time.monotonic() - started:.1f}s")
        assert ended.returncode == 0, ended.stdout + ended.stderr
        readme = (evidence_of(ended.stdout) / "README.md").read_text()
        assert "sessions ended: 'wildfly' (user opendolphin from 127.0.0.1" in readme, readme
        with pytest.raises(psycopg.OperationalError):
            app.execute("SELECT 1")
    finally:
        app.close()


@pytest.mark.slow
def test_modernized_flyway_and_sync_give_up_naming_the_session(
    secrets_dir, artifacts_dir, external_legacy, external_modernized, monkeypatch
):
    from restore_assets.runbook.flyway_adapter import load_flyway_config, native_engine
    from restore_assets.runbook.sync import sync_tables

    first = run_cli("run")
    assert first.returncode == 0, first.stdout + first.stderr
    monkeypatch.setenv("RESTORE_WAIT_SECONDS", "2")
    settings = load_settings()
    legacy, modern = (Database(getattr(settings, s), settings.pg) for s in ("legacy", "modernized"))
    before = catalog_fingerprint(modern)
    app = application(external_modernized, "MODERNIZED_POSTGRES", "batch-job")
    app.execute("LOCK TABLE d_users, flyway_schema_history IN ACCESS EXCLUSIVE MODE")
    try:
        started = time.monotonic()
        with pytest.raises(Exception) as caught:
            sync_tables(legacy, modern, settings.checks.sync_tables)
        assert time.monotonic() - started < 2 + 5
        assert type(caught.value).__name__ == "TargetInUse", caught.value
        assert "'batch-job'" in str(caught.value) and "d_users" in str(caught.value)

        engine = native_engine(load_flyway_config(settings.flyway, modern), modern, print)
        started = time.monotonic()
        with pytest.raises(Exception) as caught:
            engine.migrate()
        assert time.monotonic() - started < 2 + 5
        assert type(caught.value).__name__ == "TargetInUse", caught.value
        assert "Flyway" in str(caught.value) and "'batch-job'" in str(caught.value)
    finally:
        app.close()
    assert catalog_fingerprint(modern) == before
