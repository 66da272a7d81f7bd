"""Who started a run (issue 21 item 6), on the run's tags and in its evidence: the CLI's OS user
and host, the sensor, or the UI. Real CLI runs, a real sensor tick's run, a run launched as the
UI launches one."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
from pathlib import Path

import pytest
from dagster import DagsterInstance

from restore_assets.settings import DEFAULT_TARGET, LEGACY_SEED_FILE, load_settings
from restore_assets.started_by import STARTED_BY_TAG, cli_tag, started_by
from restore_assets_tests.conftest import run_cli

ME = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}@{socket.gethostname()}"


def test_who_started_a_run_is_decided_from_its_tags():
    assert cli_tag() == {STARTED_BY_TAG: ME}
    assert started_by(cli_tag()) == ME
    assert started_by({"dagster/sensor_name": "followup_sensor"}) == "sensor:followup_sensor"
    assert started_by({}) == "ui"
    assert started_by({"dagster/partition": "default"}) == "ui"
    # A re-execution copies its parent's tags: it was not started by the CLI user again.
    copied = {**cli_tag(), "dagster/parent_run_id": "abc123"}
    assert started_by(copied) == "ui:re-execution of run abc123"
    retried = {**copied, "dagster/retry_number": "2"}
    assert started_by(retried) == "daemon:automatic retry 2 of run abc123"


def readme_row(folder: Path) -> str:
    (row,) = [
        line for line in (folder / "README.md").read_text().splitlines() if "run started" in line
    ]
    return row


@pytest.mark.slow
def test_a_cli_run_records_its_user_and_host(secrets_dir, artifacts_dir):
    from restore_assets.jobs import prepare_instance
    from restore_assets.resources.evidence import EVIDENCE_FOLDER_TAG

    (secrets_dir / LEGACY_SEED_FILE).unlink()  # blocked: the gate report is written at once
    done = run_cli("run", "--only", "legacy")
    assert done.returncode == 2, done.stdout + done.stderr
    folder = Path(done.stdout.strip().splitlines()[-1].removeprefix("evidence: "))
    assert f"by: {ME}" in readme_row(folder)
    assert json.loads((folder / "gate_report.json").read_text())["started_by"] == ME
    instance = prepare_instance(load_settings().paths)
    (run,) = [r for r in instance.get_runs() if r.tags.get(EVIDENCE_FOLDER_TAG) == str(folder)]
    assert run.tags[STARTED_BY_TAG] == ME


@pytest.mark.slow
def test_a_run_launched_as_the_ui_does_says_ui(secrets_dir, artifacts_dir):
    from restore_assets.assets.partitions import register_targets
    from restore_assets.definitions import defs
    from restore_assets.resources.evidence import EVIDENCE_FOLDER_TAG

    (secrets_dir / LEGACY_SEED_FILE).unlink()
    instance = DagsterInstance.ephemeral()
    register_targets(instance, [DEFAULT_TARGET])
    result = defs.resolve_job_def("restore_legacy").execute_in_process(
        instance=instance, partition_key=DEFAULT_TARGET, raise_on_error=False
    )
    run = instance.get_run_by_id(result.run_id)
    assert run.tags[STARTED_BY_TAG] == "ui"
    folder = Path(run.tags[EVIDENCE_FOLDER_TAG])
    assert "by: ui" in readme_row(folder)
    assert json.loads((folder / "gate_report.json").read_text())["started_by"] == "ui"


@pytest.mark.slow
def test_a_sensor_run_says_sensor(tmp_path, monkeypatch, artifacts_dir, demo_secrets):
    from restore_assets.resources.evidence import EVIDENCE_FOLDER_TAG
    from restore_assets_tests.test_sensor import Watcher

    store = tmp_path / "Secrets"
    store.mkdir()
    monkeypatch.setenv("SECRETS_DIR", str(store))
    watcher = Watcher()
    watcher.tick()
    shutil.copytree(demo_secrets, store, dirs_exist_ok=True)
    watcher.tick()  # landed: settling
    requests, _ = watcher.tick()
    assert [job for job, _ in requests] == ["restore_all"]
    (result,) = watcher.results
    assert result.success
    run = watcher.instance.get_run_by_id(result.run_id)
    assert run.tags[STARTED_BY_TAG] == "sensor:secrets_sensor"
    folder = Path(run.tags[EVIDENCE_FOLDER_TAG])
    assert "by: sensor:secrets_sensor" in readme_row(folder)
    report = json.loads((folder / "gate_report.json").read_text())
    assert (report["status"], report["started_by"]) == ("passed", "sensor:secrets_sensor")
