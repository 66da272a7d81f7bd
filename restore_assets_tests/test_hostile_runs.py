"""What a run records about itself (issue 20, third round): a re-execution copies its parent's
tags, and runs recorded by an older version carry tags without a run id. Each run's own
process, start and stop must be its own; a run whose process is gone must not block its target
for ever, nor a live one be failed for its parent's."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from restore_assets import recovery
from restore_assets_tests.test_hostile_local import ROOT, crashing_job


def _dead_process() -> str:
    """`host:pid:ticks` as an older version wrote it, of a process that has ended."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from restore_assets.recovery import process_identity as p; print(p())",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _run_with_tag(instance, tag: str, *, reexecution: bool):
    from dagster._core.storage.tags import PARENT_RUN_ID_TAG, ROOT_RUN_ID_TAG

    parent = "aaaaaaaa-0000-4000-8000-0000000000ff"
    family = {PARENT_RUN_ID_TAG: parent, ROOT_RUN_ID_TAG: parent} if reexecution else {}
    return instance.create_run_for_job(
        crashing_job,
        tags={recovery.PROCESS_TAG: tag, **family},
        parent_run_id=parent if reexecution else None,
        root_run_id=parent if reexecution else None,
        status=DagsterRunStatus.STARTED,
    )


def test_a_run_with_an_old_process_tag_is_freed_once_its_process_is_gone(tmp_path):
    """A run an older version recorded as `host:pid:ticks` (no run id) and whose process died
    blocked its target for ever: the tag was never judged. It is its own (no parent): freed."""
    instance = DagsterInstance.local_temp(str(tmp_path))
    dead = _dead_process()
    assert dead.startswith(f"{socket.gethostname()}:") and "@" not in dead
    run = _run_with_tag(instance, dead, reexecution=False)
    said: list[str] = []
    assert recovery.free_dead_runs(instance, said.append) == [run.run_id], said
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    alive = _run_with_tag(instance, recovery.process_identity(), reexecution=False)
    assert recovery.free_dead_runs(instance, said.append) == []  # this process lives
    assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.STARTED


def test_a_reexecution_with_an_old_copied_process_tag_is_judged_only_after_a_bound(tmp_path):
    """On a re-execution an old tag may be the parent's, copied: within the bound (its own step
    records its process within seconds) it is left alone; past it, a run that never recorded
    its own and whose tag's process is gone has nothing alive on this host: freed."""
    instance = DagsterInstance.local_temp(str(tmp_path))
    run = _run_with_tag(instance, _dead_process(), reexecution=True)
    said: list[str] = []
    assert recovery.free_dead_runs(instance, said.append) == []  # just started: the bound
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
    assert recovery.free_dead_runs(instance, said.append, unstamped_after=0) == [run.run_id]
    assert "is gone" in said[-1]


@pytest.mark.slow
def test_a_reexecution_records_its_own_start_process_and_stop(secrets_dir, artifacts_dir):
    """A real re-execution of a CLI run, with the parent's tags copied as the UI's Re-execute
    and Dagster's run retries copy them: its evidence folder is named after its own start (it
    went into the parent's name, suffixed `-2`, and said the parent's time), its process is its
    own, and a stop recorded on the parent is not the child's."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.execution.api import execute_run
    from dagster._core.storage.tags import (
        PARENT_RUN_ID_TAG,
        ROOT_RUN_ID_TAG,
        TAGS_TO_MAYBE_OMIT_ON_RETRY,
    )

    from restore_assets.assets.shell import INTERRUPTED_TAG
    from restore_assets.definitions import defs
    from restore_assets.jobs import JOBS_BY_SIDE
    from restore_assets.resources.evidence import EVIDENCE_FOLDER_TAG
    from restore_assets.runbook.evidence import folder_name
    from restore_assets_tests.conftest import run_cli

    done = run_cli("run", "--only", "legacy")
    assert done.returncode == 0, done.stdout + done.stderr
    instance = DagsterInstance.get()  # the CLI's (DAGSTER_HOME, set by prepare_instance)
    parent = instance.get_runs(limit=1)[0]
    instance.add_run_tags(
        parent.run_id, {INTERRUPTED_TAG: recovery.stamped(parent.run_id, "legacy/restore")}
    )
    parent = instance.get_run_by_id(parent.run_id)
    copied = {k: v for k, v in parent.tags.items() if k not in TAGS_TO_MAYBE_OMIT_ON_RETRY}
    time.sleep(1.1)  # the child starts in a later second than its parent
    job = defs.resolve_job_def(JOBS_BY_SIDE["legacy"])
    child = instance.create_run_for_job(
        job,
        run_config=parent.run_config,
        tags={**copied, PARENT_RUN_ID_TAG: parent.run_id, ROOT_RUN_ID_TAG: parent.run_id},
        parent_run_id=parent.run_id,
        root_run_id=parent.run_id,
    )
    execute_run(InMemoryJob(job), child, instance)  # what the run worker does
    child = instance.get_run_by_id(child.run_id)
    assert child.status == DagsterRunStatus.SUCCESS
    created = instance.get_run_record_by_id(child.run_id).create_timestamp
    folder = child.tags[EVIDENCE_FOLDER_TAG]
    assert folder != parent.tags[EVIDENCE_FOLDER_TAG]
    assert folder.endswith("/" + folder_name(created)), (folder, created)
    assert recovery.recorded_process(child) == recovery.process_identity()
    assert recovery.own_tag(child, INTERRUPTED_TAG) is None
    assert recovery.own_tag(parent, INTERRUPTED_TAG) == "legacy/restore"
    assert created > dt.datetime.fromisoformat(recovery.own_tag(parent, "restore_assets/started"))
