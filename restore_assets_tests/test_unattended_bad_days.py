"""The unattended service on a bad day (issue 21 items 2 and 4), as a user runs it: the real
`restore-assets ui` (dagster dev: webserver, daemon with its sensors, run queue and run
monitoring, code server, run workers), the sensor launching the whole chain from the demo
Secrets, the real psql and PostgreSQL. A `pg_sleep` in the seed (plain SQL, part of the files'
content, so the retry restores the very same content) holds psql mid-transaction.

- the run worker SIGKILLed mid-seed: the next tick marks the run failed, and the sensor requests
  it again (RESTORE_CRASH_RETRIES); the retry restores and every gate passes, with no click;
- a run over RESTORE_MAX_RUNTIME_SECONDS: run monitoring fails it and stops its process, psql
  with it; the target is as it was, nothing holds a lock on it, and it is not requested again.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from restore_assets.recovery import own_tag
from restore_assets_tests.helpers import end_groups, free_port, start_group, ui_environment
from restore_assets_tests.test_crash import slow_seed
from restore_assets_tests.test_ui_stop import (
    REPO,
    _legacy_fingerprint,
    _psql_under,
    _wait_until_up,
    ui_home,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
RESTORE_JOBS = ("restore_all", "restore_legacy", "restore_modernized")


def _ui(home: Path, env: dict[str, str]) -> subprocess.Popen:
    port = free_port()
    log = home / "ui.log"
    command = [str(BIN / "restore-assets"), "ui", "--", "-h", "127.0.0.1", "-p", str(port)]
    process = start_group(command, REPO, env, log)
    _wait_until_up(process, port, log)
    return process


def _restore_runs(env: dict[str, str]) -> list:
    """The restore runs the sensor launched, oldest first."""
    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    runs = [r for r in instance.get_runs() if r.job_name in RESTORE_JOBS]
    return list(reversed(runs))


def _wait_for(what: str, check, process: subprocess.Popen, log: Path, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        found = check()
        if found:
            return found
        time.sleep(1)
    pytest.fail(f"{what}: not within {seconds:.0f}s\n{log.read_text(errors='replace')[-3000:]}")


def _messages(env: dict[str, str], run_id: str) -> list[str]:
    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    return [e.message for e in instance.all_logs(run_id)]


def _told(webhook, mailbox) -> dict[str, str]:
    """The environment that sends Ops' messages to the test's real receivers."""
    return {
        "RESTORE_NOTIFY_WEBHOOK_URL": webhook.url,
        "RESTORE_NOTIFY_EMAIL_TO": "ops-db@example.test",
        "RESTORE_SMTP_HOST": "127.0.0.1",
        "RESTORE_SMTP_PORT": str(mailbox.port),
        "RESTORE_SMTP_STARTTLS": "false",
    }


def test_a_sigkilled_sensor_run_is_retried_and_its_gates_pass_with_no_click(
    ui_home,  # noqa: F811
    demo_secrets,
    webhook,
    mailbox,
):
    secrets = ui_home / "Secrets"
    shutil.copytree(demo_secrets, secrets, dirs_exist_ok=True)
    slow_seed(secrets, 10)
    env = ui_environment(ui_home, secrets) | _told(webhook, mailbox)
    log = ui_home / "ui.log"
    process = _ui(ui_home, env)
    try:
        psql = _psql_under(process, log)
        worker = psql.parent()  # the run worker: `dagster api execute_run`
        worker.send_signal(signal.SIGKILL)  # the OOM killer's way
        psql.wait(timeout=10)  # the kernel ends psql with it: it cannot commit alone

        def retried_and_ended():
            runs = _restore_runs(env)
            return runs if len(runs) >= 2 and runs[1].is_finished else None

        started = time.monotonic()
        first, retry, *more = _wait_for("the retry", retried_and_ended, process, log, 240)
        took = time.monotonic() - started
    finally:
        end_groups([process])
    print(f"\nkill → retry ended: {took:.1f}s")
    assert not more, [(r.job_name, r.status) for r in more]
    assert first.status == DagsterRunStatus.FAILURE
    # Failed by the code server, which saw its run worker die (`free_dead_runs` does it when
    # the code server died too: reboot, `make ui` killed).
    said = [m for m in _messages(env, first.run_id) if "SIGKILL" in m or "is gone" in m]
    assert said, _messages(env, first.run_id)[-8:]
    print(said[0])
    assert retry.job_name == "restore_all" and retry.tags.get("dagster/sensor_name")
    said = retry.tags["restore_assets/crash_retry"]
    assert f"run {first.run_id[:8]}" in said and "retry 1 of 2" in said, said
    assert retry.tags["dagster/max_runtime"] == str(4 * 3600)
    assert retry.status == DagsterRunStatus.SUCCESS, _messages(env, retry.run_id)[-10:]
    report = json.loads(
        (Path(retry.tags["restore_assets/evidence"]) / "gate_report.json").read_text()
    )
    assert report["status"] == "passed", report
    assert [g["passed"] for g in report["gates"]] == [True] * 3, report["gates"]
    # Ops heard of the kill once, by webhook and by mail, with the retry decided.
    for said in (webhook.texts, mailbox.texts):
        (crashed,) = [t for t in said if "CRASHED" in t]
        assert f"run {first.run_id[:8]}" in crashed and "retry 1 of 2" in crashed, crashed


def test_a_run_over_its_maximum_runtime_is_stopped_rolled_back_and_not_retried(
    ui_home,  # noqa: F811
    demo_secrets,
    webhook,
    mailbox,
):
    secrets = ui_home / "Secrets"
    shutil.copytree(demo_secrets, secrets, dirs_exist_ok=True)
    slow_seed(secrets, 300)
    env = ui_environment(ui_home, secrets) | {"RESTORE_MAX_RUNTIME_SECONDS": "20"}
    env |= _told(webhook, mailbox)
    before = _legacy_fingerprint(env)  # the embedded target, empty
    log = ui_home / "ui.log"
    process = _ui(ui_home, env)
    try:
        psql = _psql_under(process, log)
        worker = psql.parent()

        def ended():
            runs = _restore_runs(env)
            return runs if runs and runs[0].is_finished else None

        (run, *more) = _wait_for("run monitoring's stop", ended, process, log, 120)
        psql.wait(timeout=30)
        worker.wait(timeout=30)  # the run worker exited: nothing of the run is left
        held = _locks_on_legacy(env)
        folder = Path(run.tags["restore_assets/evidence"])
        _wait_for("the stop in the evidence", (folder / "README.md").exists, process, log, 30)
        told = lambda: [t for t in webhook.texts if "FAILED" in t]  # noqa: E731
        _wait_for("Ops told of the stop", told, process, log, 60)
        time.sleep(5)  # five more sensor looks (RESTORE_SENSOR_INTERVAL_SECONDS=1)
        again = _restore_runs(env)
    finally:
        end_groups([process])
    assert not more and len(again) == 1, [(r.job_name, r.status) for r in again]
    assert run.status == DagsterRunStatus.FAILURE, run.status
    messages = _messages(env, run.run_id)
    assert any("exceeding maximum runtime of 20 seconds" in m for m in messages), messages[-8:]
    assert held == {"locks": 0, "sessions": 0}, held
    record = DagsterInstance.from_config(env["DAGSTER_HOME"]).get_run_record_by_id(run.run_id)
    print(f"\nrun start → failed by run monitoring: {record.end_time - record.start_time:.1f}s")
    # max_runtime_sensor: the evidence and gates/report say why the run stopped.
    assert "over its maximum runtime of 20 s" in (folder / "README.md").read_text()
    report = json.loads((folder / "gate_report.json").read_text())
    assert report["status"] == "interrupted", report
    assert own_tag(record.dagster_run, "restore_assets/interrupted") == "run"
    assert _legacy_fingerprint(env) == before  # rolled back: the target is as it was
    # Never retried, so Ops are told once that it stopped and why.
    (failed,) = [t for t in webhook.texts if "FAILED" in t]
    assert "over its maximum runtime of 20 s" in failed, failed


def _locks_on_legacy(env: dict[str, str]) -> dict[str, int]:
    """What still holds the Legacy target: other sessions connected to it, and advisory locks
    (the restore's lock) anywhere on the server."""
    script = (
        "import json\n"
        "from restore_assets.pg.database import Database\n"
        "from restore_assets.settings import load_settings\n"
        "s = load_settings()\n"
        "with Database(s.legacy, s.pg).connect(autocommit=True) as conn:\n"
        "    locks = conn.execute(\"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'\")\n"
        "    sessions = conn.execute('SELECT count(*) FROM pg_stat_activity WHERE datname = "
        "current_database() AND pid <> pg_backend_pid()')\n"
        "    held = {'locks': locks.fetchone()[0], 'sessions': sessions.fetchone()[0]}\n"
        "    print(json.dumps(held))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
