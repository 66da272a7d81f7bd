"""deploy/ run for real in containers (issue 24): the shipped docker-compose.yml — PostgreSQL
storage, code server, daemon, webserver — on a real Docker engine, the DockerRunLauncher starting
each run in its own container. Demo Secrets land in the watched volume; the sensor alone starts
the restore; a run container restores both sides into a database container, runs Flyway, the sync
and the gates; the gates pass, read through the webserver's GraphQL API and from the evidence
volume; `docker events` shows the run's own container, started and removed.

`make deploy-test` (scripts/deploy-test) starts the engine and builds the images, then runs this
module; without it (DEPLOY_TEST_IMAGE_TAG unset) the test is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from restore_assets_tests.test_deploy import DEPLOY, SENSOR, _free_port

# Set by scripts/deploy-test: the images it built, and the compose command it found.
IMAGE_TAG = os.environ.get("DEPLOY_TEST_IMAGE_TAG")
POSTGRES_IMAGE = os.environ.get("DEPLOY_TEST_POSTGRES_IMAGE", "postgres:17")
COMPOSE = os.environ.get("DEPLOY_TEST_COMPOSE", "docker-compose").split()
RUN_UID = 10001  # the image's user (deploy/Dockerfile): it reads the Secrets, writes evidence
TARGET = "clinic-a"
UP_S = 300  # `compose up`: storage healthy, the code server answering, webserver and daemon up
WATCHING_S = 180  # the webserver answers and the sensor has looked at the empty store
GREEN_S = 300  # from the Secrets landing to the gates passed
DOWN_S = 120
FIXED_VOLUMES = {"restore_secrets", "restore_artifacts", "restore_config", "restore_compute_logs"}

# A database server for the target beside the stack, on its network (the stack's own file does
# not ship one: in production the targets are the clinics' servers).
TARGET_DB_SERVICE = """
services:
  clinic-db:
    image: ${POSTGRES_IMAGE:-postgres:17}
    networks: [restore_assets]
    environment:
      POSTGRES_USER: opendolphin
      POSTGRES_DB: od_a
      POSTGRES_PASSWORD: ${CLINIC_A_PGPASSWORD:?set in .env}
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U opendolphin -d od_a"]
      interval: 2s
      timeout: 5s
      retries: 30
"""

STATE_QUERY = """
query State($sensor: SensorSelector!) {
  runsOrError {
    ... on Runs {
      results { runId jobName status creationTime startTime endTime tags { key value } }
    }
  }
  assetNodeOrError(assetKey: {path: ["gates", "report"]}) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks {
          checks { name executionForLatestMaterialization { runId status } }
        }
      }
    }
  }
  sensorOrError(sensorSelector: $sensor) {
    ... on Sensor { sensorState { ticks(limit: 1) { status skipReason } } }
  }
}
"""

CAPTURED_QUERY = """
query Captured($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection { events { ... on LogsCapturedEvent { fileKey stepKeys } } }
  }
}
"""
ERRORS_QUERY = """
query Errors($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection { events {
      __typename
      ... on MessageEvent { message stepKey }
      ... on ExecutionStepFailureEvent { error { message } }
      ... on RunFailureEvent { error { message } }
    } }
  }
}
"""
LOGS_QUERY = """
query Logs($key: [String!]!) { capturedLogs(logKey: $key) { stdout stderr } }
"""


@dataclass
class Stack:
    root: Path  # the deploy/ copy with .env, targets.env and the host folders beside it
    url: str
    events: subprocess.Popen  # `docker events` for containers with a dagster/run_id label
    events_log: Path

    def compose(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [
            *COMPOSE,
            "--project-directory",
            str(self.root / "deploy"),
            "-f",
            str(self.root / "deploy" / "docker-compose.yml"),
            "-f",
            str(self.root / "deploy" / "target-db.yml"),
            *args,
        ]
        try:
            done = subprocess.run(
                command,
                cwd=self.root / "deploy",
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{' '.join(command[-len(args) :])}: over {timeout}s") from exc
        return done

    def logs(self, lines: int = 40) -> str:
        done = self.compose("logs", "--no-color", "--tail", str(lines), timeout=60)
        return done.stdout + done.stderr

    def fail(self, why: str) -> None:
        pytest.fail(f"{why}\n--- the stack's containers ---\n{self.logs()}")

    def graphql(self, query: str, **variables) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as exc:  # its body says why
            raise AssertionError(f"{exc}: {exc.read()[:2000]!r}") from None
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    def container_events(self) -> list[dict]:
        return [
            json.loads(line)
            for line in self.events_log.read_text().splitlines()
            if line.startswith("{")
        ]


def _docker(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


def _owned_by_runs(path: Path, mode: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, RUN_UID, RUN_UID)
    path.chmod(mode)
    return path


@pytest.fixture
def stack(tmp_path) -> Iterator[Stack]:
    """The shipped compose file (a copy of deploy/ with its .env and targets.env filled in) plus
    a target database container, up; afterwards `down -v` and every run container removed."""
    if not IMAGE_TAG:
        pytest.skip("run by `make deploy-test` (it starts a Docker engine and builds the images)")
    # The deployment's volumes have fixed names (dagster.yaml mounts them by name): never reuse
    # or remove another stack's, nor a killed test's that still binds a deleted folder.
    taken = set(_docker("volume", "ls", "-q").split()) & FIXED_VOLUMES
    if taken:
        pytest.fail(
            f"volumes {sorted(taken)} exist on this engine: a deployment (or a killed test) holds "
            f"them; if they are a test's leftovers: docker volume rm {' '.join(sorted(taken))}"
        )
    work = tmp_path / "deploy"
    shutil.copytree(DEPLOY, work)
    (work / "target-db.yml").write_text(TARGET_DB_SERVICE)
    secrets_dir = _owned_by_runs(tmp_path / "Secrets", 0o700)
    artifacts = _owned_by_runs(tmp_path / "artifacts", 0o700)
    config = tmp_path / "config"
    config.mkdir()
    # The stack's own database container, built from the wheel (no SSL), reached by name: TLS
    # said as it is, `prefer` (a server across the network defaults to `require`, docs/deploy.md).
    side = {"host": "clinic-db", "port": 5432, "user": "opendolphin", "sslmode": "prefer"}
    side["password_env"] = "CLINIC_A_PGPASSWORD"
    targets = {
        TARGET: {
            "secrets_dir": TARGET,
            "legacy": {**side, "db": "od_a"},
            "modernized": {**side, "db": "od_a_modern"},
        }
    }
    (config / "targets.yaml").write_text(yaml.safe_dump({"targets": targets}))
    target_password = secrets.token_urlsafe(18)
    port = _free_port()
    env = {
        "COMPOSE_PROJECT_NAME": "restore_assets_deploy_test",
        "DAGSTER_POSTGRES_PASSWORD": secrets.token_urlsafe(18),
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "SECRETS_HOST_DIR": str(secrets_dir),
        "ARTIFACTS_HOST_DIR": str(artifacts),
        "CONFIG_HOST_DIR": str(config),
        "RESTORE_IMAGE_TAG": IMAGE_TAG,
        "POSTGRES_IMAGE": POSTGRES_IMAGE,
        "DAGSTER_UI_PORT": str(port),
        "CLINIC_A_PGPASSWORD": target_password,  # for target-db.yml
    }
    (work / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    (work / "targets.env").write_text(
        f"CLINIC_A_PGPASSWORD={target_password}\nCLINIC_B_PGPASSWORD=unused\n"
        # The sensor looks every second, not every 30 s: the test waits on it twice.
        "RESTORE_SENSOR_INTERVAL_SECONDS=1\n"
    )
    events_log = tmp_path / "docker-events.jsonl"
    with events_log.open("w") as out:
        events = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--filter", "label=dagster/run_id"]
            + ["--format", "{{json .}}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    stack = Stack(tmp_path, f"http://127.0.0.1:{port}", events, events_log)
    try:
        started = time.monotonic()
        up = stack.compose("up", "-d", "--no-build", timeout=UP_S)
        if up.returncode:
            stack.fail(f"compose up failed ({up.returncode}):\n{up.stderr[-3000:]}")
        print(
            f"\ncompose up (storage healthy, code server healthy, all up): "
            f"{time.monotonic() - started:.1f}s"
        )
        yield stack
    finally:
        events.terminate()
        events.wait(timeout=10)
        down = stack.compose("down", "-v", "--remove-orphans", timeout=DOWN_S)
        leftover = _docker("ps", "-aq", "--filter", f"ancestor=restore_assets:{IMAGE_TAG}").split()
        if leftover:  # a run container that outlived its run (a failure before auto_remove)
            _docker("rm", "-f", *leftover)
        assert down.returncode == 0, down.stderr


def _state(stack: Stack) -> tuple[list[dict], dict[str, dict | None], dict | None]:
    """The runs, the gate checks' latest executions and the sensor's latest tick."""
    data = stack.graphql(STATE_QUERY, sensor=SENSOR)
    runs = data["runsOrError"].get("results", [])
    for run in runs:
        run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
    node = data["assetNodeOrError"] or {}
    checks = (node.get("assetChecksOrError") or {}).get("checks", [])
    latest = {c["name"]: c["executionForLatestMaterialization"] for c in checks}
    ticks = ((data["sensorOrError"] or {}).get("sensorState") or {}).get("ticks") or [None]
    return runs, latest, ticks[0]


def _describe(runs: list[dict], tick: dict | None) -> str:
    lines = [f"  run {r['jobName']} {r['runId'][:8]}: {r['status']}" for r in runs]
    return "\n".join([f"sensor's latest tick: {tick}", *lines])


def _wait_until_watching(stack: Stack) -> None:
    deadline = time.monotonic() + WATCHING_S
    last: object = None
    while True:
        try:
            _, _, last = _state(stack)
            if last and f"[{TARGET}]" in (last["skipReason"] or ""):
                return
        except (urllib.error.URLError, ConnectionError, AssertionError) as exc:
            last = exc
        if time.monotonic() > deadline:
            stack.fail(f"the sensor did not look at {TARGET} within {WATCHING_S}s; last: {last!r}")
        time.sleep(1)


def _wait_for_gates(stack: Stack) -> tuple[dict, dict[str, dict]]:
    """Until a sensor-launched restore_all of the target succeeded and every gates/report check
    of that run passed; fails at once on a failed run, after GREEN_S saying what was going on."""
    deadline = time.monotonic() + GREEN_S
    while True:
        runs, checks, tick = _state(stack)
        failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
        if failed:
            stack.fail(
                "a run failed:\n"
                + _describe(runs, tick)
                + _run_errors(stack, failed[0])
                + _run_output(stack, failed[0])
            )
        done = [
            r
            for r in runs
            if r["jobName"] == "restore_all"
            and r["status"] == "SUCCESS"
            and r["tags"].get("dagster/partition") == TARGET
        ]
        if done and checks and all(c and c["runId"] == done[0]["runId"] for c in checks.values()):
            return done[0], checks
        if time.monotonic() > deadline:
            stack.fail(f"no gates for {TARGET} {GREEN_S}s after landing\n" + _describe(runs, tick))
        time.sleep(1)


def _run_output(stack: Stack, run: dict) -> str:
    """A run's stdout/stderr as the UI shows it: its compute logs, written by the run's container
    to the volume the webserver shares, one file per group of steps (LogsCapturedEvent)."""
    try:
        events = stack.graphql(CAPTURED_QUERY, runId=run["runId"])["logsForRun"]["events"]
        parts = []
        for file_key in dict.fromkeys(e["fileKey"] for e in events if e.get("fileKey")):
            key = [run["runId"], "compute_logs", file_key]
            logs = stack.graphql(LOGS_QUERY, key=key)["capturedLogs"]
            parts.append(f"--- {file_key} ---\n{logs['stdout'] or ''}{logs['stderr'] or ''}")
    except (AssertionError, KeyError, urllib.error.URLError) as exc:
        return f"\n(no compute logs: {exc!r})"
    return "\n" + "\n".join(parts)


def _run_errors(stack: Stack, run: dict) -> str:
    """What a failed run's own events say (its failure and each failed step's error)."""
    events = stack.graphql(ERRORS_QUERY, runId=run["runId"])["logsForRun"].get("events", [])
    lines = [
        f"{e['__typename']} {e.get('stepKey') or ''}: {e['message']}"
        + (f" / {e['error']['message']}" if e.get("error") else "")
        for e in events
        if "Failure" in e["__typename"] or e.get("error")
    ]
    return "\n--- the run's failure events ---\n" + "\n".join(lines[-20:])


def _land(stack: Stack, demo_secrets: Path) -> float:
    """The demo Secrets into the watched store with one rename: complete when they appear."""
    staging = stack.root / "Secrets" / f".landing-{TARGET}"
    shutil.copytree(demo_secrets, staging)
    for path in (staging, *staging.rglob("*")):
        os.chown(path, RUN_UID, RUN_UID)
    staging.rename(stack.root / "Secrets" / TARGET)
    return time.time()


@pytest.mark.docker
@pytest.mark.e2e
def test_a_sensor_launched_run_restores_in_its_own_container(stack, demo_secrets):
    # The target's second database, on its own server (the first is the container's POSTGRES_DB).
    made = stack.compose(
        "exec",
        "-T",
        "clinic-db",
        "psql",
        "-U",
        "opendolphin",
        "-d",
        "od_a",
        "-c",
        "CREATE DATABASE od_a_modern",
    )
    assert made.returncode == 0, made.stderr
    _wait_until_watching(stack)

    landed = _land(stack, demo_secrets)
    run, checks = _wait_for_gates(stack)
    green_s = time.time() - landed

    # The gates, as the UI shows them: every gates/report check of this run passed.
    assert set(checks) == {"db_restore", "audit_capture", "jms_claim"}, checks
    assert all(c["status"] == "SUCCEEDED" for c in checks.values()), checks
    assert run["tags"].get("dagster/sensor_name") == "secrets_sensor", run["tags"]

    # The evidence, read from its volume's host folder: the same verdict.
    reports = sorted(
        (stack.root / "artifacts").glob(f"parity-manual/db-restore/{TARGET}/*/gate_report.json")
    )
    assert reports, "no gate_report.json in the artifacts volume"
    report = json.loads(reports[-1].read_text())
    assert report["status"] == "passed", report

    # Both sides were restored into the database container (not an embedded server).
    for db, table in (("od_a", "d_patient"), ("od_a_modern", "flyway_schema_history")):
        counted = stack.compose(
            "exec",
            "-T",
            "clinic-db",
            "psql",
            "-U",
            "opendolphin",
            "-d",
            db,
            "-Atc",
            f"SELECT count(*) FROM {table}",
        )
        assert counted.returncode == 0, counted.stderr
        assert int(counted.stdout.strip()) > 0, (db, table, counted.stdout)

    # The run ran in a container of its own, started by the DockerRunLauncher from the code
    # server's image, and that container was removed when it ended (auto_remove).
    container_id = run["tags"]["docker/container_id"]
    deadline = time.monotonic() + 30  # `docker events` writes as it goes; the destroy is last
    while True:
        seen = [e for e in stack.container_events() if e.get("id") == container_id]
        actions = [e["Action"] for e in seen]
        if "destroy" in actions or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {"create", "start", "die", "destroy"} <= set(actions), (container_id, actions)
    labels = seen[0]["Actor"]["Attributes"]
    assert labels["dagster/run_id"] == run["runId"], labels
    assert labels["image"] == f"restore_assets:{IMAGE_TAG}", labels
    died = next(e for e in seen if e["Action"] == "die")
    assert died["Actor"]["Attributes"]["exitCode"] == "0", died
    services = set(stack.compose("ps", "-q").stdout.split())
    assert not any(s.startswith(container_id[:12]) for s in services), "a service ran the run"
    assert not _docker("ps", "-aq", "--filter", f"label=dagster/run_id={run['runId']}").strip()

    # The run's stdout is in the UI after its container is gone (the shared compute-log volume).
    output = _run_output(stack, run)
    assert "gates" in output, output[-2000:]

    since = {k: run[k] - landed for k in ("creationTime", "startTime", "endTime")}
    print(
        f"landing -> gates green: {green_s:.1f}s (run requested +{since['creationTime']:.1f}s, "
        f"started in its container +{since['startTime']:.1f}s, "
        f"ended +{since['endTime']:.1f}s); run {run['runId']} in container "
        f"{container_id[:12]} (events: {', '.join(actions)})"
    )
