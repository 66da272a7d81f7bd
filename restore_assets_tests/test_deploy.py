"""deploy/ (issue 12, item 4): the Docker deployment's instance settings are valid Dagster config,
and the same topology — code server, daemon and webserver as three processes over PostgreSQL
instance storage — restores named targets from the sensor alone, two of them in parallel.

The topology test needs no Docker engine: it uses deploy/dagster.yaml with the default run
launcher in place of the DockerRunLauncher. `compose config` runs with each Compose found (v2,
Debian's v1). The stack itself, in containers, is test_deploy_containers.py (make deploy-test).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import yaml

from restore_assets_tests.helpers import end_groups, start_group

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PG_ENV = ("HOST", "PORT", "DB", "USER", "PASSWORD")  # DAGSTER_POSTGRES_<...>
SENSOR = {
    "repositoryName": "__repository__",
    "repositoryLocationName": "restore_assets",
    "sensorName": "secrets_sensor",
}
STARTUP_S = 180  # three processes up, the code loaded, the sensor's first look
DONE_S = 300  # from Secrets landing to every target's gates passed


def _deploy_config() -> dict:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


def _walk(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, i))
    else:
        yield path, node


# --- deploy/dagster.yaml as Dagster reads it ------------------------------------------------


def test_deploy_instance_config_is_valid_with_the_docker_launcher(tmp_path, monkeypatch):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes.config_class import ConfigurableClassData
    from dagster_docker import DockerRunLauncher
    from dagster_postgres import DagsterPostgresStorage

    from restore_assets.jobs import INSTANCE_CONFIG

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    for name in PG_ENV:
        monkeypatch.setenv(f"DAGSTER_POSTGRES_{name}", "5432" if name == "PORT" else f"v-{name}")
    config, instance_class = dagster_instance_config(str(home))  # raises on any schema error
    assert instance_class is None

    # Run, event log and schedule storage: one Postgres database, password from the env only.
    storage = process_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert storage.success, storage.errors
    assert storage.value["postgres_db"]["password"] == "v-PASSWORD"
    passwords = [(p, v) for p, v in _walk(_deploy_config()) if "password" in map(str, p)]
    assert passwords and all(p[-1] == "env" for p, _ in passwords), passwords

    # The same run queue limits and run monitoring as the CLI's and `make ui`'s instance.
    ours = yaml.safe_load(INSTANCE_CONFIG)
    for section in ("concurrency", "run_monitoring"):
        assert config[section] == ours[section], section
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"

    # The Docker run launcher, built from its section as the daemon builds it.
    section = config["run_launcher"]
    launcher = ConfigurableClassData(
        section["module"], section["class"], yaml.safe_dump(section["config"])
    ).rehydrate(DockerRunLauncher)
    assert isinstance(launcher, DockerRunLauncher)
    mounts = {v.split(":")[1]: v for v in launcher.container_kwargs["volumes"]}
    # A run backs a non-empty target up into <Secrets>/backups/ before dropping it (restore.py).
    assert mounts["/secrets"].endswith(":rw"), "a read-only store fails every second restore"
    assert mounts["/artifacts"].endswith(":rw")
    image_env = _dockerfile_env()
    assert image_env["SECRETS_DIR"] == "/secrets"
    assert image_env["RESTORE_ARTIFACTS_DIR"] == "/artifacts"
    assert Path(image_env["RESTORE_TARGETS"]).parent.as_posix() in mounts
    assert all("=" not in name for name in launcher.env_vars), "values never in the file"
    needed = {f"DAGSTER_POSTGRES_{n}" for n in PG_ENV} | _example_password_envs()
    assert needed <= set(launcher.env_vars), needed - set(launcher.env_vars)

    # What dagster.yaml names by name exists under that name in docker-compose.yml.
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    volume_names = {v.get("name") for v in compose["volumes"].values() if v}
    assert {v.split(":")[0] for v in mounts.values()} <= volume_names
    assert launcher.networks == [compose["networks"]["restore_assets"]["name"]]
    for service in compose["services"].values():  # passwords only from .env / targets.env
        for key, value in (service.get("environment") or {}).items():
            assert "PASSWORD" not in key or str(value).startswith("${"), (key, value)


def _dockerfile_lines() -> list[str]:
    """deploy/Dockerfile's instructions, continuation lines joined."""
    return (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ").splitlines()


def _dockerfile_env() -> dict[str, str]:
    """The KEY=VALUE pairs of the Dockerfile's ENV instructions."""
    pairs = [
        word.split("=", 1)
        for line in _dockerfile_lines()
        if line.startswith("ENV ")
        for word in line.split()[1:]
    ]
    return dict(pairs)


def _example_password_envs() -> set[str]:
    targets = yaml.safe_load((DEPLOY / "targets.example.yaml").read_text())["targets"]
    return {
        side["password_env"] for t in targets.values() for side in (t["legacy"], t["modernized"])
    }


def _compose_commands() -> list[list[str]]:
    """Compose v2 (the docker plugin) and v1 (Debian's docker-compose 1.29), where present."""
    found = []
    docker = shutil.which("docker")
    if (
        docker
        and not subprocess.run([docker, "compose", "version"], capture_output=True).returncode
    ):
        found.append([docker, "compose"])
    if shutil.which("docker-compose"):
        found.append([shutil.which("docker-compose")])
    return found


def test_compose_file_is_for_compose_v1_and_v2():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert "name" not in compose, "Compose 1.29 (Debian's docker-compose) rejects a top-level name"
    services = compose["services"]
    assert all("healthcheck" in s for s in services.values()), "each service says when it is up"
    for name in ("webserver", "daemon"):  # they start once the storage and code server answer
        assert services[name]["depends_on"]["code"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["dagster-postgres"]["condition"] == "service_healthy"
    # Compute logs: runs write them (dagster.yaml's launcher), the webserver reads the same volume.
    instance = _deploy_config()
    base_dir = instance["compute_logs"]["config"]["base_dir"]
    run_volumes = instance["run_launcher"]["config"]["container_kwargs"]["volumes"]
    assert f"restore_compute_logs:{base_dir}:rw" in run_volumes
    assert f"restore_compute_logs:{base_dir}:ro" in services["webserver"]["volumes"]
    assert instance["run_launcher"]["config"]["container_kwargs"]["auto_remove"] is True


@pytest.mark.docker
@pytest.mark.parametrize("version", ["v2", "v1"])
def test_docker_compose_config(tmp_path, version):
    commands = {("compose" in c and "v2") or "v1": c for c in _compose_commands()}
    if version not in commands:
        pytest.skip(f"no Compose {version} here (v2: `docker compose`; v1: `docker-compose`)")
    work = tmp_path / "deploy"
    shutil.copytree(DEPLOY, work)
    (work / "targets.env").write_text((work / "targets.env.example").read_text())
    env = {
        **os.environ,
        "DAGSTER_POSTGRES_PASSWORD": "compose-check-only",
        "DOCKER_GID": "999",
        "SECRETS_HOST_DIR": str(tmp_path / "Secrets"),
        "ARTIFACTS_HOST_DIR": str(tmp_path / "artifacts"),
        "CONFIG_HOST_DIR": str(tmp_path / "config"),
    }
    # v1 prints YAML only; v2 takes --format json. Both: the file as Compose understood it.
    done = subprocess.run(
        [*commands[version], "-f", str(work / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
    )
    assert done.returncode == 0, done.stderr
    rendered = yaml.safe_load(done.stdout)
    services = rendered["services"]
    assert set(services) == {"dagster-postgres", "code", "webserver", "daemon"}
    # Runs start from the code server's own image, with the volumes dagster.yaml names.
    assert services["code"]["environment"]["DAGSTER_CURRENT_IMAGE"] == services["code"]["image"]
    names = {v.get("name") for v in rendered["volumes"].values()}
    assert {"restore_secrets", "restore_artifacts", "restore_config"} <= names
    assert "restore_compute_logs" in names
    for name in ("code", "webserver", "daemon"):
        assert services[name]["environment"]["DAGSTER_POSTGRES_PASSWORD"] == "compose-check-only"


# --- the same topology without containers -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Deployment:
    url: str
    root: Path
    storage: dict[str, object]  # psycopg.connect() arguments of the instance storage
    env: dict[str, str]  # the three processes' environment
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def tails(self, lines: int = 25) -> str:
        parts = []
        for name in self.processes:
            text = self.log(name).read_text(encoding="utf-8", errors="replace")
            parts.append(f"--- tail of {name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)

    def fail(self, why: str) -> None:
        pytest.fail(f"{why}\n{self.tails()}")

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                self.fail(f"{name} exited with {process.returncode}")

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


def _test_instance_yaml(socket_dir: str, compute_logs: Path) -> str:
    """deploy/dagster.yaml with the default run launcher (no Docker engine here). Same storage,
    coordinator and limits; the embedded server listens on a Unix socket only, which libpq's
    `host` parameter names (it wins over the URL's host); compute logs in the test's folder."""
    config = _deploy_config()
    config["run_launcher"] = {"module": "dagster._core.launcher", "class": "DefaultRunLauncher"}
    config["compute_logs"]["config"]["base_dir"] = str(compute_logs)
    config["storage"]["postgres"]["postgres_db"]["params"] = {"host": socket_dir}
    return yaml.safe_dump(config, sort_keys=False)


def _test_workspace_yaml(port: int) -> str:
    """deploy/workspace.yaml pointed at this test's code server."""
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=port)
    return yaml.safe_dump(workspace)


def _deploy_commands(local: dict[str, str]) -> dict[str, list[str]]:
    """The deployment's own commands (the image's CMD, the compose services' `command`), with
    container addresses and paths replaced by `local` and programs taken from this venv."""
    cmd = next(line for line in _dockerfile_lines() if line.startswith("CMD "))
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    commands = {
        "code-server": json.loads(cmd.removeprefix("CMD ")),
        "daemon": compose["daemon"]["command"],
        "webserver": compose["webserver"]["command"],
    }
    bin_dir = Path(sys.executable).parent
    return {
        name: [str(bin_dir / program), *(local.get(arg, arg) for arg in args)]
        for name, (program, *args) in commands.items()
    }


TARGETS = {
    "solo": ("deploy_solo_legacy", "deploy_solo_modern"),
    "north": ("deploy_north_legacy", "deploy_north_modern"),
    "south": ("deploy_south_legacy", "deploy_south_modern"),
}
# Where each target's Secrets sub-root is under SECRETS_DIR: north and south share a parent, so
# one rename lands both at the same instant and the sensor sees them in the same tick.
SUB_ROOTS = {"solo": "solo", "north": "pair/north", "south": "pair/south"}


@pytest.fixture
def deployment(tmp_path, settings) -> Iterator[Deployment]:
    """Code server, daemon and webserver, each in its own process group over PostgreSQL storage
    (a `dagster_storage` database on the session's embedded server); all ended afterwards."""
    from psycopg import sql

    from restore_assets.pg.database import embedded_admin, restrict_embedded_auth, start_embedded

    endpoint = start_embedded(settings.paths.state_dir)
    restrict_embedded_auth(settings.paths.state_dir / "pgdata", endpoint, ["opendolphin"])
    with embedded_admin(endpoint) as admin:
        for name in ("dagster_storage", *(db for pair in TARGETS.values() for db in pair)):
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        admin.execute("CREATE DATABASE dagster_storage")

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(_test_instance_yaml(endpoint.host, tmp_path / "logs"))
    code_port, web_port = _free_port(), _free_port()
    (tmp_path / "workspace.yaml").write_text(_test_workspace_yaml(code_port))
    (tmp_path / "targets.yaml").write_text(
        yaml.safe_dump(
            {
                "targets": {
                    name: {
                        "secrets_dir": SUB_ROOTS[name],
                        "legacy": {"db": a},
                        "modernized": {"db": b},
                    }
                    for name, (a, b) in TARGETS.items()
                }
            }
        )
    )
    (tmp_path / "Secrets").mkdir()
    (tmp_path / "tmp").mkdir()
    # Explicit: nothing from the developer's or the test session's environment leaks in.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYTHONPATH": str(REPO),
        "TMPDIR": str(tmp_path / "tmp"),
        "XDG_RUNTIME_DIR": os.environ["XDG_RUNTIME_DIR"],  # the embedded server's start-up lock
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_HOST": "localhost",  # overridden by the socket dir (params above)
        "DAGSTER_POSTGRES_PORT": str(endpoint.port),
        "DAGSTER_POSTGRES_DB": "dagster_storage",
        "DAGSTER_POSTGRES_USER": "postgres",
        "DAGSTER_POSTGRES_PASSWORD": "",  # peer authentication on the socket
        "RESTORE_TARGETS": str(tmp_path / "targets.yaml"),
        "SECRETS_DIR": str(tmp_path / "Secrets"),
        "RESTORE_STATE_DIR": str(settings.paths.state_dir),  # the session's embedded server
        "RESTORE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "RESTORE_DOTENV": str(tmp_path / "no.env"),
        "RESTORE_SENSOR_INTERVAL_SECONDS": "1",
    }
    commands = _deploy_commands(
        {
            "0.0.0.0": "127.0.0.1",
            "4000": str(code_port),
            "3000": str(web_port),
            "/opt/dagster/home/workspace.yaml": str(tmp_path / "workspace.yaml"),
        }
    )
    storage = {
        "host": endpoint.host,
        "port": endpoint.port,
        "user": "postgres",
        "dbname": "dagster_storage",
    }
    deployment = Deployment(f"http://127.0.0.1:{web_port}", tmp_path, storage, env)
    try:
        for name, command in commands.items():
            log = deployment.log(name)
            deployment.processes[name] = start_group(command, tmp_path, env, log)
        yield deployment
    finally:
        end_groups(list(deployment.processes.values()))


RUNS_QUERY = """
query State($sensor: SensorSelector!) {
  runsOrError {
    ... on Runs { results {
      runId jobName status creationTime startTime endTime tags { key value }
    } }
  }
  sensorOrError(sensorSelector: $sensor) {
    ... on Sensor { sensorState { ticks(limit: 1) { status skipReason } } }
  }
}
"""


@dataclass
class Run:
    id: str
    job: str
    status: str
    created: float
    start: float | None
    end: float | None
    tags: dict[str, str]

    @property
    def target(self) -> str | None:
        return self.tags.get("dagster/partition")


def _state(deployment: Deployment) -> tuple[list[Run], dict | None]:
    data = deployment.graphql(RUNS_QUERY, sensor=SENSOR)
    runs = [
        Run(
            r["runId"],
            r["jobName"],
            r["status"],
            r["creationTime"],
            r["startTime"],
            r["endTime"],
            {t["key"]: t["value"] for t in r["tags"]},
        )
        for r in data["runsOrError"].get("results", [])
    ]
    ticks = ((data["sensorOrError"] or {}).get("sensorState") or {}).get("ticks") or [None]
    return runs, ticks[0]


def _describe(runs: list[Run], tick: dict | None) -> str:
    lines = [f"  run {r.job} [{r.target}] {r.id[:8]}: {r.status}" for r in runs]
    return "\n".join([f"sensor's latest tick: {tick}", *lines])


def _gate_status(deployment: Deployment, target: str) -> str | None:
    """The status in the target's newest gate_report.json, if any."""
    evidence = deployment.root / "artifacts" / "parity-manual" / "db-restore" / target
    reports = sorted(evidence.glob("*/gate_report.json"))
    return json.loads(reports[-1].read_text())["status"] if reports else None


def _wait_until_watching(deployment: Deployment) -> None:
    """All three up, and the sensor has looked at every target's empty sub-root."""
    deadline = time.monotonic() + STARTUP_S
    last = None  # what the webserver last said, for the failure message
    while True:
        deployment.check_alive()
        try:
            _, last = _state(deployment)
            if last and all(f"[{t}]" in (last["skipReason"] or "") for t in TARGETS):
                return
        except (urllib.error.URLError, ConnectionError, AssertionError) as exc:
            last = exc
        if time.monotonic() > deadline:
            deployment.fail(
                f"the sensor did not watch every target within {STARTUP_S}s; last: {last!r}"
            )
        time.sleep(1)


def _wait_for_targets(deployment: Deployment, targets: tuple[str, ...]) -> dict[str, Run]:
    """Until each target has a successful sensor-launched run and a passed gate report; fails at
    once on a failed run, after DONE_S with what the sensor and the runs were doing."""
    deadline = time.monotonic() + DONE_S
    while True:
        deployment.check_alive()
        runs, tick = _state(deployment)
        if any(r.status in ("FAILURE", "CANCELED") for r in runs):
            deployment.fail("a run failed:\n" + _describe(runs, tick))
        # The chain's runs: a delivery this size is read by a secrets_intake run first.
        chains = [r for r in runs if r.job == "restore_all" and r.status == "SUCCESS"]
        done = {r.target: r for r in chains if r.target in targets}
        if set(done) == set(targets) and all(_gate_status(deployment, t) for t in targets):
            statuses = {t: _gate_status(deployment, t) for t in targets}
            assert set(statuses.values()) == {"passed"}, statuses
            return done
        if time.monotonic() > deadline:
            deployment.fail(
                f"{', '.join(targets)} not restored {DONE_S}s after their Secrets landed\n"
                + _describe(runs, tick)
            )
        time.sleep(1)


def _land(deployment: Deployment, demo_secrets: Path, *targets: str) -> float:
    """Copies the demo Secrets for `targets` beside the store, then moves their common parent in
    with one rename: every target's files appear at once, complete (a copy straight into the
    store would be seen half-done by a tick, and the targets settle ticks apart)."""
    parents = {Path(SUB_ROOTS[t]).parts[0] for t in targets}
    assert len(parents) == 1, f"{targets} do not share a sub-root parent: {parents}"
    parent = parents.pop()
    staging = deployment.root / "staging"
    for target in targets:
        shutil.copytree(demo_secrets, staging / SUB_ROOTS[target])  # modes kept
    (staging / parent).rename(deployment.root / "Secrets" / parent)
    shutil.rmtree(staging)
    return time.time()


# Runs long enough that "both started before either ended" follows from what the daemon does,
# not from luck. The sensor requests north and south in one tick, but the queued run coordinator
# dequeues only every dequeue_interval_seconds (deploy/dagster.yaml: 1 s; Dagster's default 5 s):
# a dequeue between the two requests leaves the second queued for up to one interval, and each
# launch then loads the code in a fresh process (seconds on a busy machine). The session's
# 60-patient seed made a run of about 3 s, shorter than that gap (issue 18: north ran 11.0-13.8 s,
# south started at 16.0 s). With this seed a run lasts about 10 s on an idle 2-core machine and
# the pair is in flight together for 21-25 s with both cores busy (the Legacy restore alone
# 15 s): well beyond one dequeue interval plus a launch, however the requests fall.
DEPLOY_PATIENTS = 100_000


@pytest.fixture(scope="module")
def deploy_secrets(settings, tmp_path_factory) -> Path:
    """Demo Secrets with DEPLOY_PATIENTS patients (about 80 MB of Legacy seed)."""
    from restore_assets.demo.build import build_demo_secrets

    folder = tmp_path_factory.mktemp("deploy-secrets") / "Secrets"
    return build_demo_secrets(settings, folder, DEPLOY_PATIENTS).secrets_dir


# Dagster 1.13's daemon marks a dequeue with RUN_STARTING (it reports it, then calls the run
# launcher); RUN_DEQUEUED is not written. RUN_START is the run's own process beginning.
LIFECYCLE = ("enqueued", "dequeued", "started", "ended")


def _lifecycles(deployment: Deployment, runs: dict[str, Run], monkeypatch) -> dict[str, dict]:
    """Per run, when (epoch seconds) its own event log says the coordinator queued it, the
    daemon dequeued it to launch, its process began the run and the run succeeded — read from
    the deployment's PostgreSQL instance storage with Dagster's own instance API."""
    from dagster import DagsterEventType, DagsterInstance

    kinds = dict(
        zip(
            (
                DagsterEventType.RUN_ENQUEUED,
                DagsterEventType.RUN_STARTING,
                DagsterEventType.RUN_START,
                DagsterEventType.RUN_SUCCESS,
            ),
            LIFECYCLE,
            strict=True,
        )
    )
    for name in PG_ENV:
        monkeypatch.setenv(f"DAGSTER_POSTGRES_{name}", deployment.env[f"DAGSTER_POSTGRES_{name}"])
    lifecycles = {}
    with DagsterInstance.from_config(str(deployment.root / "dagster_home")) as instance:
        for target, run in runs.items():
            events = instance.all_logs(run.id, of_type=set(kinds))
            seen = [(kinds[e.dagster_event.event_type], e.timestamp) for e in events]
            assert sorted(name for name, _ in seen) == sorted(LIFECYCLE), (target, seen)
            lifecycles[target] = dict(seen)
    return lifecycles


@pytest.mark.e2e
def test_separate_processes_over_postgres_restore_two_targets_in_parallel(
    deployment, deploy_secrets, monkeypatch
):
    _wait_until_watching(deployment)

    # One target alone first: the time to compare with.
    solo_landed = _land(deployment, deploy_secrets, "solo")
    solo = _wait_for_targets(deployment, ("solo",))["solo"]
    one_target_s = solo.end - solo_landed

    # Two targets at once: both chains run, and at the same time.
    landed = _land(deployment, deploy_secrets, "north", "south")
    pair = _wait_for_targets(deployment, ("north", "south"))
    two_targets_s = max(r.end for r in pair.values()) - landed

    for run in (solo, *pair.values()):
        assert run.job == "restore_all", run
        assert run.tags.get("dagster/sensor_name") == "secrets_sensor", run

    # What the daemon did, from the runs' own event logs: both dequeued and both runs begun
    # before either ended — both targets' chains were in flight at once.
    lives = _lifecycles(deployment, pair, monkeypatch)
    first_end = min(life["ended"] for life in lives.values())
    timeline = "; ".join(
        f"{target} " + " ".join(f"{k} +{life[k] - landed:.1f}s" for k in LIFECYCLE)
        for target, life in sorted(lives.items())
    )
    for target, life in lives.items():
        assert life["dequeued"] < life["started"] < first_end, (
            f"{target} was not dequeued and started before the other target's run ended "
            f"(seconds after the Secrets landed): {timeline}"
        )
    overlap = first_end - max(life["started"] for life in lives.values())

    # The runs are recorded in the PostgreSQL instance storage (and no SQLite file exists).
    with psycopg.connect(**deployment.storage) as conn:
        stored = conn.execute(
            "SELECT run_id FROM runs WHERE run_id = ANY(%s) AND status = 'SUCCESS'",
            ([solo.id, *(r.id for r in pair.values())],),
        ).fetchall()
    assert len(stored) == 3, stored
    assert not list((deployment.root / "dagster_home").glob("**/*.db"))

    solo_life = _lifecycles(deployment, {"solo": solo}, monkeypatch)["solo"]
    solo_line = " ".join(f"{k} +{solo_life[k] - solo_landed:.1f}s" for k in LIFECYCLE)
    print(
        f"\none target: gates passed {one_target_s:.1f}s after its Secrets landed ({solo_line})"
        f"\ntwo targets: {two_targets_s:.1f}s, both in flight for {overlap:.1f}s ({timeline})"
    )
