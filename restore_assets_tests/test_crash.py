"""Bad days: a run killed outright, a run told to stop, a run that finds the slot taken.

Real `restore-assets run` processes, the real psql and PostgreSQL. The seed is slowed down by
a `pg_sleep` (plain SQL: psql runs it like any statement), which gives a window in which psql
is mid-transaction on the target.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from restore_assets.settings import LEGACY_SEED_FILE, load_settings
from restore_assets_tests.conftest import run_cli_process
from restore_assets_tests.helpers import database_fingerprint

pytestmark = pytest.mark.e2e


def slow_seed(secrets_dir: Path, seconds: int) -> bytes:
    """Put a pg_sleep right after the first COPY block of the seed; return the original."""
    seed = secrets_dir / LEGACY_SEED_FILE
    original = seed.read_bytes()
    lines = original.decode("utf-8").splitlines(keepends=True)
    at = lines.index("\\.\n") + 1
    lines.insert(at, f"SELECT pg_sleep({seconds});\n")
    seed.write_text("".join(lines), encoding="utf-8")
    return original


def start_run(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "restore_assets.cli", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def psql_child(proc: subprocess.Popen, timeout: float = 120) -> psutil.Process:
    """Wait until the run has psql loading the seed; return that psql process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for child in psutil.Process(proc.pid).children(recursive=True):
            if child.name() == "psql":
                time.sleep(1)  # well into the seed's pg_sleep
                return child
        time.sleep(0.2)
    raise AssertionError("psql never started")


def instance() -> DagsterInstance:
    home = os.environ.get("DAGSTER_HOME") or str(load_settings().paths.state_dir / "dagster_home")
    return DagsterInstance.from_config(home)


def test_sigterm_mid_seed_stops_cleanly_and_a_second_run_waits_bounded_naming_the_holder(
    secrets_dir, artifacts_dir, monkeypatch
):
    before = database_fingerprint()
    slow_seed(secrets_dir, 60)
    first = start_run("--only", "legacy")
    psql = psql_child(first)

    monkeypatch.setenv("RESTORE_WAIT_SECONDS", "3")
    second = run_cli_process("run", "--only", "legacy")
    assert second.returncode == 1, second.stdout + second.stderr
    assert "target default held by run" in second.stderr
    assert "(restore_legacy, STARTED" in second.stderr
    assert "still busy after 3s (RESTORE_WAIT_SECONDS)" in second.stdout + second.stderr

    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 143, out + err
    assert "interrupted by SIGTERM" in out
    assert not psql.is_running() or psql.status() == psutil.STATUS_ZOMBIE
    assert database_fingerprint() == before  # rolled back: the target is as it was
    folder = Path(out.strip().splitlines()[-1].removeprefix("evidence: "))
    readme = (folder / "README.md").read_text()
    assert "interrupted" in readme
    assert '"status": "interrupted"' in (folder / "gate_report.json").read_text()


def test_ctrl_c_mid_seed_exits_130_rolled_back_and_frees_the_slot_at_once(
    secrets_dir, artifacts_dir, monkeypatch
):
    """SIGINT (Ctrl-C) takes the same path as SIGTERM, with its own exit code; and the target
    is free the moment the interrupted run has exited: the next run does not wait for it."""
    before = database_fingerprint()
    original = slow_seed(secrets_dir, 60)
    first = start_run("--only", "legacy")
    psql = psql_child(first)
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 130, out + err
    assert "interrupted by SIGINT" in out
    assert not psql.is_running() or psql.status() == psutil.STATUS_ZOMBIE
    assert database_fingerprint() == before

    (secrets_dir / LEGACY_SEED_FILE).write_bytes(original)
    monkeypatch.setenv("RESTORE_WAIT_SECONDS", "1")  # a target still held would fail this run
    again = run_cli_process("run", "--only", "legacy", timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "held by run" not in again.stdout + again.stderr


def test_a_sigkilled_run_never_blocks_the_next_one(secrets_dir, artifacts_dir):
    before = database_fingerprint()
    original = slow_seed(secrets_dir, 60)
    victim = start_run("--only", "legacy")
    psql = psql_child(victim)
    victim.kill()
    victim.wait()
    psql.wait(timeout=10)  # the kernel killed psql with its parent: it cannot commit alone
    assert database_fingerprint() == before

    dead = instance().get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED]), limit=1)
    assert dead, "the killed run should still look STARTED before anyone cleans up"
    (secrets_dir / LEGACY_SEED_FILE).write_bytes(original)

    rerun = run_cli_process("run", "--only", "legacy", timeout=180)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr  # no manual clean-up
    marked = instance().get_run_by_id(dead[0].run_id)
    assert marked.status == DagsterRunStatus.FAILURE
    assert "is gone: killed or crashed" in rerun.stderr
