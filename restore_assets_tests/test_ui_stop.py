"""`make ui` stops (issue 18 part 3): on Ctrl-C (SIGINT to the terminal's whole foreground group)
or SIGTERM (to the top process only), `make ui` / `restore-assets ui` exits within 10 s and leaves
no process behind — dagster dev, webserver, daemon, code servers, run workers, psql, the embedded
server; a run in progress stops as a CLI run does on SIGTERM: rolled back, `interrupted` in its
evidence and in Dagster.

Started as a user starts it: the real `make ui` / console script in its own process group on a
free port, its own Dagster home, state dir and Secrets; a run is launched by the sensor from the
demo Secrets. The processes are recorded by walking /proc before the signal.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from restore_assets_tests.conftest import SESSION_ROOT
from restore_assets_tests.helpers import (
    end_groups,
    free_port,
    process_tree,
    start_group,
    still_running,
    ui_environment,
)
from restore_assets_tests.test_crash import slow_seed

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STOP_S = 10  # the bound, from the signal to the last process gone
STARTUP_S = 120
DAEMON_UP = '{ instance { daemonHealth { daemonStatus(daemonType: "SENSOR") { healthy } } } }'


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


def _wait_until_up(process: subprocess.Popen, port: int, log: Path) -> None:
    """The webserver answers and the daemon's sensor thread is healthy."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        with contextlib.suppress(urllib.error.URLError, ConnectionError, KeyError, TypeError):
            status = _graphql(port, DAEMON_UP)["instance"]["daemonHealth"]["daemonStatus"]
            if status["healthy"]:
                return
        time.sleep(1)
    pytest.fail(f"not up within {STARTUP_S}s:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(process: subprocess.Popen, log: Path, how: str) -> float:
    """Send the signal (`ctrl-c`: SIGINT to the group; `sigterm`: SIGTERM to the top process),
    assert everything recorded just before is gone within STOP_S; the seconds it took."""
    recorded = process_tree(process.pid)
    assert len(recorded) >= 5, recorded  # dagster dev, webserver, daemon, code server, ...
    started = time.monotonic()
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    left = still_running(recorded)
    while left and time.monotonic() - started < STOP_S + 5:
        time.sleep(0.1)
        left = still_running(recorded)
    took = time.monotonic() - started
    output = log.read_text(errors="replace")[-4000:]
    assert not left, f"still running {took:.1f}s after {how}: {left}\n{output}"
    assert process.poll() is not None, output
    assert took <= STOP_S, f"{how}: {took:.1f}s to stop\n{output}"
    steps = [line for line in output.splitlines() if line.startswith("restore-assets ui:")]
    print(f"\n{how}: everything stopped in {took:.1f}s (exit {process.returncode})", *steps)
    return took


def _embedded_servers(state_dir: Path) -> list[int]:
    """The postmaster of `state_dir`'s embedded server (the one with `-D pgdata`), if it runs."""
    pgdata = str(state_dir / "pgdata")
    return [
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and pgdata in " ".join(p.info["cmdline"] or [])
    ]


@pytest.fixture
def ui_home() -> Iterator[Path]:
    """Outside pytest's tmp tree: another pytest session starting on this machine resets
    /tmp/pytest-of-<user> to mode 700, which locks the embedded server's own user (when run
    as root) out of a pgdata below it."""
    home = Path(tempfile.mkdtemp(prefix="ui-", dir=SESSION_ROOT))
    (home / "Secrets").mkdir()
    yield home
    for pid in _embedded_servers(home / "state"):  # only after a failure: stop it (fast)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)


def _make_ui(home: Path, port: int) -> subprocess.Popen:
    """`make ui` as typed in a terminal (its own group, as a shell's foreground job); `-o` keeps
    make from reinstalling the venv when someone touched pyproject.toml."""
    env = ui_environment(home, home / "Secrets")
    command = ["make", "-o", ".venv/.installed-stamp", "ui", f"UI_ARGS=-h 127.0.0.1 -p {port}"]
    return start_group(command, REPO, env, home / "ui.log")


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_make_ui_stops_within_10s_leaving_nothing(ui_home, how):
    port = free_port()
    process = _make_ui(ui_home, port)
    try:
        _wait_until_up(process, port, ui_home / "ui.log")
        _stop(process, ui_home / "ui.log", how)
        said = (ui_home / "ui.log").read_text(errors="replace")
        code = 130 if how == "ctrl-c" else 143  # `restore-assets ui`'s, as make reports it
        assert "make: *** [Makefile:" in said and f"ui] Error {code}" in said, said[-2000:]
        assert "SIGKILL" not in said  # nothing needed killing
    finally:
        end_groups([process])


def test_sigterm_during_the_legacy_restore_rolls_it_back_and_says_interrupted(
    ui_home, demo_secrets
):
    """The sensor launches the whole chain from the demo Secrets; SIGTERM to `restore-assets ui`
    while psql is in the Legacy restore's transaction (a pg_sleep in the seed)."""
    secrets = ui_home / "Secrets"
    shutil.copytree(demo_secrets, secrets, dirs_exist_ok=True)
    env = ui_environment(ui_home, secrets)
    # The target as it was before: restored once by the CLI, so a rollback has something to keep.
    first = subprocess.run(
        [str(BIN / "restore-assets"), "run", "--only", "legacy"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    before = _legacy_fingerprint(env)
    assert before["rows"], before
    slow_seed(secrets, 60)

    port = free_port()
    log = ui_home / "ui.log"
    command = [str(BIN / "restore-assets"), "ui", "--", "-h", "127.0.0.1", "-p", str(port)]
    process = start_group(command, REPO, env, log)
    try:
        _wait_until_up(process, port, log)
        psql = _psql_under(process, log)
        _stop(process, log, "sigterm")
        assert process.returncode == 143, log.read_text(errors="replace")[-3000:]
        assert not psql.is_running() or psql.status() == psutil.STATUS_ZOMBIE
    finally:
        end_groups([process])
    assert not _embedded_servers(ui_home / "state")  # stopped by the last process using it
    assert _legacy_fingerprint(env) == before  # rolled back: the target is as it was

    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    runs = [r for r in instance.get_runs() if r.tags.get("dagster/sensor_name")]
    assert runs and all(r.is_finished for r in runs), [(r.job_name, r.status) for r in runs]
    run = runs[-1]  # the oldest: the one stopped mid-restore (nothing queued may start later)
    assert run.job_name == "restore_all"
    assert run.status == DagsterRunStatus.FAILURE, run.status
    messages = [e.message for e in instance.all_logs(run.run_id)]
    assert any("interrupted by SIGTERM" in m for m in messages), messages[-5:]
    assert not instance.event_log_storage.get_concurrency_info("restore_legacy").active_run_ids
    folder = Path(run.tags["restore_assets/evidence"])
    assert f"evidence: {folder}" in log.read_text(errors="replace")
    assert "interrupted" in (folder / "README.md").read_text()
    assert '"status": "interrupted"' in (folder / "gate_report.json").read_text()


def _psql_under(process: subprocess.Popen, log: Path) -> psutil.Process:
    """The psql of the Legacy restore, once it is well into the seed's pg_sleep (the only psql
    that lives for seconds)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        for child in psutil.Process(process.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.name() == "psql" and time.time() - child.create_time() > 2:
                    return child
        time.sleep(0.2)
    pytest.fail(f"the sensor's run never reached psql:\n{log.read_text(errors='replace')[-3000:]}")


def _legacy_fingerprint(env: dict[str, str]) -> dict:
    """The Legacy target's catalogue and rows, read by a separate process (which stops the
    embedded server again as it exits)."""
    script = (
        "import json\n"
        "from restore_assets.pg.database import Database\n"
        "from restore_assets.settings import load_settings\n"
        "from restore_assets_tests.helpers import catalog_fingerprint\n"
        "s = load_settings()\n"
        "print(json.dumps(catalog_fingerprint(Database(s.legacy, s.pg)), default=str))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
