"""Notifications through real runs (issue 21 items 1, 7, 8): a blocked CLI run, a failed gate, a
run whose process died and the Secrets sensor's ticks each deliver exactly one message to a
real webhook receiver and a real SMTP server (127.0.0.1), naming the cause, no password; a
receiver that is down changes nothing in the run. A blocked run's progress snippet carries the
§0.3 record (`ops-request --tracking-id`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus

from restore_assets.definitions import defs
from restore_assets.recovery import PARTITION_TAG, PROCESS_TAG, free_dead_runs, process_identity
from restore_assets.settings import DEFAULT_TARGET, LEGACY_SEED_FILE, MODERN_SCHEMA_FILE
from restore_assets_tests.conftest import run_cli
from restore_assets_tests.fixtures.receivers import WEBHOOK_TOKEN, Webhook, closed_port_url
from restore_assets_tests.helpers import gate_results, gates_only
from restore_assets_tests.test_cli import evidence_line
from restore_assets_tests.test_sensor import Watcher

pytestmark = pytest.mark.slow  # CLI runs, Dagster runs, sensor ticks

SMTP_PASSWORD = "Smtp-pw-5Rq-never-print"


@pytest.fixture
def empty_store(tmp_path, monkeypatch):
    """No Secrets at all, and a state dir of the test's own (a blocked run starts no server)."""
    monkeypatch.setenv("RESTORE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RESTORE_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "Secrets"))
    monkeypatch.setenv("RESTORE_SMTP_PASSWORD", SMTP_PASSWORD)
    (tmp_path / "Secrets").mkdir()
    return tmp_path


def notifications_log(root) -> str:
    return (root / "artifacts/parity-manual/db-restore/notifications.log").read_text()


def test_a_blocked_run_tells_ops_once_and_its_snippet_carries_the_request(empty_store, notify_env):
    webhook, mailbox = notify_env
    recorded = run_cli("ops-request", "--tracking-id", "OPS-4711")
    assert recorded.returncode == 0, recorded.stderr
    assert re.search(
        r"Recorded: requested \d{4}-\d\d-\d\d \d\d:\d\d UTC, tracking ID OPS-4711", recorded.stdout
    )
    folders = []
    for _ in range(2):  # blocked twice by the same missing files: told once
        done = run_cli("run")
        assert done.returncode == 2, done.stdout + done.stderr
        folders.append(evidence_line(done.stdout))
    assert len(webhook.texts) == 1 and len(mailbox.messages) == 1
    for said in (webhook.texts[0], mailbox.texts[0]):
        assert "BLOCKED: target default" in said
        for relpath in (LEGACY_SEED_FILE, MODERN_SCHEMA_FILE):
            assert relpath in said
        assert "Gate #40" in said and "Deadline:" in said and "(missing)" in said
        assert "Already requested: requested" in said and "OPS-4711" in said
        assert SMTP_PASSWORD not in said
    assert folders[0].name in webhook.texts[0]  # the first run's evidence
    for folder in folders:  # every blocked run's snippet says when Ops was asked, and the ID
        snippet = (folder / "progress_snippet.md").read_text()
        assert re.search(
            r"Secrets 未取得 / Secrets not received — requested \d{4}-\d\d-\d\d \d\d:\d\d UTC, "
            r"tracking ID OPS-4711",
            snippet,
        ), snippet
    log = notifications_log(empty_store)
    assert log.count(" delivered: ") == 2 and "NOT delivered" not in log


def test_without_a_recorded_request_the_snippet_says_how_to_record_one(empty_store):
    done = run_cli("run", "--only", "legacy")
    assert done.returncode == 2
    snippet = (evidence_line(done.stdout) / "progress_snippet.md").read_text()
    assert "Secrets not received — no request recorded yet" in snippet
    assert "ops-request --tracking-id" in snippet


def test_a_tracking_id_that_is_not_one_line_of_plain_characters_is_refused(empty_store):
    done = run_cli("ops-request", "--tracking-id", "OPS-1\n| forged row |")
    assert done.returncode == 3 and "refused" in done.stderr + done.stdout
    assert not (empty_store / "state/ops/ops_requests.json").exists()


@pytest.mark.parametrize("receiver", ["closed port", "HTTP 500"])
def test_a_receiver_that_is_down_changes_nothing_in_the_run_and_is_recorded(
    empty_store, monkeypatch, receiver
):
    webhook = Webhook()
    webhook.status = 500
    url = closed_port_url() if receiver == "closed port" else webhook.url
    try:
        monkeypatch.setenv("RESTORE_NOTIFY_WEBHOOK_URL", url)
        started = time.monotonic()
        done = run_cli("run", "--only", "legacy")
        seconds = time.monotonic() - started
    finally:
        webhook.close()
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Secrets not usable" in done.stdout and "Traceback" not in done.stderr
    assert seconds < 30
    log = notifications_log(empty_store)
    assert "blocked target=default" in log and "NOT delivered (round 1/3)" in log
    assert ("Connection refused" if receiver == "closed port" else "HTTP Error 500") in log
    assert WEBHOOK_TOKEN not in log and WEBHOOK_TOKEN not in done.stdout + done.stderr


def test_a_failed_gate_tells_ops_which_sub_check_failed_and_why_once(
    notify_env, artifacts_dir, monkeypatch
):
    webhook, mailbox = notify_env
    facility = Webhook()  # the facility API: answers 503, so the gate's facility_api fails
    facility.status = 503
    secret = "Api-pw-9Wx-never-print"
    api = f"{facility.url}?token={secret}"  # a query value is a secret (redaction.shown_url)
    monkeypatch.setenv("RESTORE_FACILITY_API_URL", api)
    try:
        result = gates_only()
    finally:
        facility.close()
    passed, detail = gate_results(result)["db_restore"]
    assert not passed and "facility_api" in detail
    assert len(webhook.texts) == 1 and len(mailbox.messages) == 1
    for said in (webhook.texts[0], mailbox.texts[0]):
        assert "FAILED: target default: gates/report failed" in said
        assert "db_restore: failed:" in said and "facility_api" in said and "503" in said
        assert str(artifacts_dir) in said or "parity-manual/db-restore/" in said
        assert secret not in said


def test_a_run_whose_process_died_is_told_once_as_crashed(notify_env):
    webhook, mailbox = notify_env
    instance = DagsterInstance.ephemeral()
    worker = subprocess.Popen(["sleep", "60"])  # the run's process, then killed outright
    job = defs.resolve_job_def("restore_legacy")
    run = instance.create_run_for_job(
        job_def=job, status=DagsterRunStatus.STARTED, tags={PARTITION_TAG: DEFAULT_TARGET}
    )
    instance.add_run_tags(run.run_id, {PROCESS_TAG: f"{run.run_id}@{process_identity(worker.pid)}"})
    worker.kill()
    worker.wait()
    assert free_dead_runs(instance, lambda _: None) == [run.run_id]
    assert free_dead_runs(instance, lambda _: None) == []  # marked once, told once
    assert len(webhook.texts) == 1 and len(mailbox.messages) == 1
    for said in (webhook.texts[0], mailbox.texts[0]):
        assert f"CRASHED: target default: run {run.run_id[:8]} (restore_legacy) died" in said
        assert "is gone: killed or crashed" in said and "Retry:" in said


def test_the_sensor_tells_blocked_once_then_still_waiting_and_the_ui_sees_missing(
    tmp_path, monkeypatch, notify_env, demo_secrets, artifacts_dir
):
    webhook, mailbox = notify_env
    store = tmp_path / "Secrets"
    store.mkdir()
    monkeypatch.setenv("SECRETS_DIR", str(store))
    monkeypatch.setenv("RESTORE_NOTIFY_WAITING_HOURS", "0.0005")  # 1.8 s: the stall, quickly
    watcher = Watcher()
    watcher.instance.add_dynamic_partitions("targets", [DEFAULT_TARGET])
    reasons = []
    for _ in range(3):
        result = watcher.look()
        watcher.cursor = result.cursor
        _report(watcher.instance, result)
        reasons.append(result.skip_reason.skip_message)
    assert len(webhook.texts) == 1 and "BLOCKED" in webhook.texts[0]
    assert re.search(
        r"Secrets missing since \d{4}-\d\d-\d\d \d\d:\d\d UTC \(Secrets 未取得\)", reasons[0]
    )
    assert reasons[0] == reasons[2]  # the same "since" tick after tick
    # The UI: each secrets/* file observed "missing" once (not once per tick).
    for key in ("legacy_schema_sql", "legacy_seed_sql", "modern_schema_sql"):
        observations = _observations(watcher.instance, AssetKey(["secrets", key]))
        assert [o["status"] for o in observations] == ["missing"]

    time.sleep(2)  # past the waiting hours
    for _ in range(2):
        result = watcher.look()
        watcher.cursor = result.cursor
    assert len(webhook.texts) == 2 and "WAITING" in webhook.texts[1]
    assert "Secrets missing since" in webhook.texts[1]
    assert len(mailbox.messages) == 2

    shutil.copytree(demo_secrets, store, dirs_exist_ok=True)  # delivered: "changed", then read
    for _ in range(2):
        result = watcher.look()
        watcher.cursor = result.cursor
        _report(watcher.instance, result)
    assert "Secrets missing" not in (result.skip_reason.skip_message if result.skip_reason else "")
    statuses = [
        o["status"]
        for o in _observations(watcher.instance, AssetKey(["secrets", "legacy_seed_sql"]))
    ]
    assert statuses == ["missing", "changed", "ok"]
    assert len(webhook.texts) == 2  # nothing more to say


def _report(instance, result):
    """Store the tick's observations as the daemon does."""
    for event in result.asset_events or []:
        instance.report_runless_asset_event(event)


def _observations(instance, key):
    records = instance.fetch_observations(AssetRecordsFilter(asset_key=key), limit=100).records
    return [
        {name: value.value for name, value in r.asset_observation.metadata.items()}
        for r in reversed(records)  # oldest first
    ]


def test_a_crash_the_sensor_retries_tells_ops_which_retry_and_the_last_one_not_retried(
    secrets_dir, artifacts_dir, notify_env, monkeypatch
):
    """A run whose worker died, marked failed by its code server (as under `make ui`, where
    `free_dead_runs` never sees it): the sensor's look tells Ops once per run whether it is
    retried (retry n of RESTORE_CRASH_RETRIES) or, after the last, left failed."""
    from restore_assets_tests.test_sensor import _crash_tags, _started

    webhook, mailbox = notify_env
    monkeypatch.setenv("RESTORE_CRASH_RETRIES", "1")
    watcher = Watcher()
    job, tags = _crash_tags(watcher)
    tags |= {PARTITION_TAG: DEFAULT_TARGET}  # the sensor's runs carry their target
    runs = []
    for _ in range(2):
        runs.append(_started(watcher, job, tags))
        watcher.instance.report_run_failed(runs[-1], "Run execution process was terminated")
        watcher.tick(launch=False)
        watcher.tick(launch=False)  # a second look tells nothing new
    assert len(webhook.texts) == 2 and len(mailbox.messages) == 2, webhook.texts
    first, last = webhook.texts
    assert f"run {runs[0].run_id[:8]}" in first and "retry 1 of 1" in first
    assert f"run {runs[1].run_id[:8]}" in last and "not retried any more" in last


def test_a_dead_restore_the_sensor_finds_itself_is_told_once_with_its_retry(
    secrets_dir, artifacts_dir, notify_env, monkeypatch
):
    """The sensor's own look marks the dead run failed (free_dead_runs: a reboot, a killed code
    server): Ops get one message for it, and it says whether it is retried, not "not decided"."""
    from restore_assets_tests.test_sensor import _crash_tags, _started

    webhook, mailbox = notify_env
    monkeypatch.setenv("RESTORE_CRASH_RETRIES", "1")
    watcher = Watcher()
    job, tags = _crash_tags(watcher)
    run = _started(watcher, job, tags | {PARTITION_TAG: DEFAULT_TARGET})
    worker = subprocess.Popen(["sleep", "60"])  # the run's process, then killed outright
    identity = f"{run.run_id}@{process_identity(worker.pid)}"
    watcher.instance.add_run_tags(run.run_id, {PROCESS_TAG: identity})
    worker.kill()
    worker.wait()
    for _ in range(2):
        watcher.tick(launch=False)
    assert len(webhook.texts) == 1 and len(mailbox.messages) == 1, webhook.texts
    (said,) = webhook.texts
    assert f"run {run.run_id[:8]}" in said and "retry 1 of 1" in said
    assert "not decided here" not in said
