"""Another local user, and the runs that share the machine with them (issue 20, classes 6, 8
and 9): what one run, one target or one user must not be able to take from another."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, in_process_executor, job, op

from restore_assets import recovery
from restore_assets_tests.conftest import run_cli_process

ROOT = Path(__file__).resolve().parents[1]


@op
def step_that_dies(context) -> None:
    """What every restore step does first (`EvidenceResource.for_run`), then a crash."""
    recovery.tag_run_process(context)
    os._exit(9)


@job(executor_def=in_process_executor)  # as every job of the project (definitions.py)
def crashing_job():
    step_that_dies()


def _in_a_process_that_dies(code: str) -> None:
    """Run `code` in a Python process that is gone once this returns."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 9, done.stderr[-2000:]


def test_a_reexecution_is_never_marked_crashed_for_its_dead_parents_process(tmp_path):
    """The parent run's process died; a UI re-execution of it copies the parent's tags, the
    parent's `restore_assets/process` included, and is starting (its own step has not tagged it
    yet). Crash recovery must leave it alone — and still fail it once its own process dies."""
    from dagster._core.storage.tags import (
        PARENT_RUN_ID_TAG,
        ROOT_RUN_ID_TAG,
        TAGS_TO_MAYBE_OMIT_ON_RETRY,
    )

    instance = DagsterInstance.local_temp(str(tmp_path))
    home = repr(str(tmp_path))
    parent_id = "aaaaaaaa-0000-4000-8000-000000000001"
    _in_a_process_that_dies(
        "from dagster import DagsterInstance\n"
        "from restore_assets_tests.test_hostile_local import crashing_job\n"
        f"crashing_job.execute_in_process(instance=DagsterInstance.local_temp({home}), "
        f"run_id={parent_id!r})\n"
    )
    parent = instance.get_run_by_id(parent_id)
    assert parent.status == DagsterRunStatus.STARTED and recovery.PROCESS_TAG in parent.tags
    said: list[str] = []
    assert recovery.free_dead_runs(instance, said.append) == [parent_id]  # the crash is seen

    # What the UI's "Re-execute" creates (create_reexecuted_run with the parent's tags).
    copied = {k: v for k, v in parent.tags.items() if k not in TAGS_TO_MAYBE_OMIT_ON_RETRY}
    child = instance.create_run_for_job(
        crashing_job,
        tags={**copied, PARENT_RUN_ID_TAG: parent_id, ROOT_RUN_ID_TAG: parent_id},
        parent_run_id=parent_id,
        root_run_id=parent_id,
        status=DagsterRunStatus.STARTING,  # the launcher started its worker
    )
    assert recovery.free_dead_runs(instance, said.append) == [], said
    assert instance.get_run_by_id(child.run_id).status == DagsterRunStatus.STARTING

    # Its own process runs its step, records itself, and dies: now it is a crash.
    _in_a_process_that_dies(
        "from dagster import DagsterInstance, reconstructable\n"
        "from dagster._core.execution.api import execute_run\n"  # what a run worker calls
        "from restore_assets_tests.test_hostile_local import crashing_job\n"
        f"instance = DagsterInstance.local_temp({home})\n"
        f"execute_run(reconstructable(crashing_job), instance.get_run_by_id({child.run_id!r}), "
        "instance)\n"
    )
    assert recovery.free_dead_runs(instance, said.append) == [child.run_id]
    assert instance.get_run_by_id(child.run_id).status == DagsterRunStatus.FAILURE


def _as_nobody(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["su", "nobody", "-s", "/bin/sh", "-c", command], capture_output=True, text=True
    )


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another local user needs root")
def test_another_local_user_reads_nothing_of_the_state_and_dagster_storage(
    secrets_dir, artifacts_dir, monkeypatch
):
    """A state folder left 0755 by an older version, in a folder every user may enter (a home
    directory); the Dagster home made by the first run: its SQLite files hold every run's
    patient counts and target details. After a real CLI run, `nobody` can list or read none."""
    place = Path(tempfile.mkdtemp(prefix="restore-local-user-"))
    try:
        place.chmod(0o755)
        state = place / "state"
        state.mkdir(mode=0o755)
        state.chmod(0o755)  # whatever the umask: as an older version left it
        monkeypatch.setenv("RESTORE_STATE_DIR", str(state))
        # Its Dagster home under this state folder, whatever an earlier test left in the env.
        monkeypatch.delenv("DAGSTER_HOME", raising=False)
        done = run_cli_process("run", "--only", "legacy")
        assert done.returncode == 0, done.stdout + done.stderr
        home = state / "dagster_home"
        stored = [*home.rglob("*.db"), state / "sha256-cache.json"]
        assert home / "history" / "runs.db" in stored
        for folder in (state, home):
            assert _as_nobody(f"ls -- {shlex.quote(str(folder))}").returncode != 0, folder
        for file in stored:
            assert _as_nobody(f"cat -- {shlex.quote(str(file))} >/dev/null").returncode != 0, file
        assert _as_nobody(f"ls -- {shlex.quote(str(place))}").returncode == 0  # su works
        # Private by their own modes too (the umask), not only by the folder above them.
        for path in [home, *home.rglob("*"), state / "sha256-cache.json"]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {mode:o}"
    finally:
        shutil.rmtree(place, ignore_errors=True)


@pytest.mark.slow
def test_two_targets_naming_one_database_by_two_host_names_are_refused_before_it_is_touched(
    demo_secrets, external_legacy, tmp_path, monkeypatch, artifacts_dir
):
    """`127.0.0.1` for one clinic, `localhost` for the other, the same database on the same
    password-protected server: the text of targets.yaml differs, the database does not."""
    from restore_assets.pg.database import Database
    from restore_assets.settings import load_settings
    from restore_assets_tests.conftest import run_cli
    from restore_assets_tests.helpers import database_fingerprint

    root = tmp_path / "Secrets"
    for clinic in ("north", "south"):
        shutil.copytree(demo_secrets, root / clinic)
    monkeypatch.setenv("SECRETS_DIR", str(root))
    same = (
        f"port: {external_legacy['POSTGRES_PORT']}, db: {external_legacy['POSTGRES_DB']}, "
        "password_env: POSTGRES_PASSWORD, sslmode: disable"
    )
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        "targets:\n"
        f"  north:\n    secrets_dir: north\n    legacy: {{host: 127.0.0.1, {same}}}\n"
        "    modernized: {db: od_north_modern}\n"
        f"  south:\n    secrets_dir: south\n    legacy: {{host: localhost, {same}}}\n"
        "    modernized: {db: od_south_modern}\n"
    )
    monkeypatch.setenv("RESTORE_TARGETS", str(targets))
    shared = Database(load_settings().legacy, load_settings().pg)  # the environment's: 127.0.0.1

    done = run_cli("run", "--target", "south", "--only", "legacy")
    assert done.returncode == 3, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "targets.south.legacy" in said and "targets.north.legacy" in said, said
    assert "are the same database" in said
    assert database_fingerprint(shared) == []  # never touched


@pytest.mark.slow
def test_intake_reads_a_dump_with_a_huge_row_in_bounded_memory(demo_secrets, tmp_path):
    """A seed with one 128 MiB COPY row (a bytea or text value): intake's one pass held about six
    times the longest line (1.9 GB for a 300 MiB row, on every status, plan, run and tick). The
    peak must stay within 64 MiB of the process before the read, whatever the row's length."""
    from restore_assets.settings import LEGACY_SEED_FILE

    seed = (demo_secrets / LEGACY_SEED_FILE).read_bytes()
    copy = seed.index(b" FROM stdin;\n") + len(b" FROM stdin;\n")
    row = b"9" * (128 << 20) + b"\n"
    dump = tmp_path / "seed.sql"
    dump.write_bytes(seed[:copy] + row + seed[copy:])
    grown_kib, complete, refused = peak_of_reading(dump)
    assert complete == "True" and refused == "[]"  # read whole: the footer, nothing refused
    assert grown_kib < 64 << 10, f"peak grew by {grown_kib >> 10} MiB"


def peak_of_reading(dump: Path) -> tuple[int, str, str]:
    """(KiB the process grew by while `read_dump` read `dump`, complete, refused)."""
    measured = subprocess.run(
        [sys.executable, "-c", _PEAK_OF_READ_DUMP, str(dump)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert measured.returncode == 0, measured.stderr[-2000:]
    grown_kib, complete, refused = measured.stdout.strip().split(maxsplit=2)
    return int(grown_kib), complete, refused


_PEAK_OF_READ_DUMP = """
import resource, sys
from pathlib import Path
from restore_assets.runbook.baseline_files import read_dump
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
facts = read_dump(Path(sys.argv[1]))
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(grown, facts.complete, facts.refused)
"""
