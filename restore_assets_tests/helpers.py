"""Shared test helpers: run the real Dagster assets, read the real databases."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
from dagster import DagsterInstance, materialize

from restore_assets.assets.legacy import legacy_facility_num, legacy_restore
from restore_assets.assets.partitions import register_targets
from restore_assets.assets.secrets import secret_files
from restore_assets.pg.database import USER_SCHEMAS_SQL, Database
from restore_assets.resources import restore_resources
from restore_assets.resources.config import RestoreConfig
from restore_assets.settings import DEFAULT_TARGET, load_settings

LEGACY_ASSETS = [*secret_files, legacy_restore, legacy_facility_num]


def target_instance() -> DagsterInstance:
    """An ephemeral instance that knows the environment's target: every asset is partitioned by
    target, and a run names its target by partition key (`DEFAULT_TARGET`)."""
    instance = DagsterInstance.ephemeral()
    register_targets(instance, [DEFAULT_TARGET])
    return instance


def materialize_legacy(selection=None, **resource_config):
    """Materialise the Legacy assets for real (in-process, ephemeral instance)."""
    return materialize(
        LEGACY_ASSETS,
        selection=selection,
        instance=target_instance(),
        partition_key=DEFAULT_TARGET,
        resources=restore_resources(RestoreConfig(**resource_config)),
        raise_on_error=False,
    )


def legacy_target() -> Database:
    settings = load_settings()
    return Database(settings.legacy, settings.pg)


def query(sql_text: str, params=None):
    target = legacy_target()
    with target.connect(autocommit=True) as conn:
        return conn.execute(sql_text, params).fetchall()


def execute(sql_text: str, params=None) -> None:
    target = legacy_target()
    with target.connect(autocommit=True) as conn:
        conn.execute(sql_text, params)


def database_fingerprint(target: Database | None = None) -> list[tuple]:
    """Every user table with its row count: equal fingerprints = nothing changed."""
    target = target or legacy_target()
    with target.connect(autocommit=True) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN "
            "('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        result = []
        for schema, table in tables:
            ident = psycopg.sql.Identifier(schema, table)
            count = conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(ident))
            result.append((schema, table, count.fetchone()[0]))
        return result


def catalog_fingerprint(target: Database) -> dict[str, list]:
    """A database as the catalogue and its rows show it: the schemas, every relation and its
    kind, every table's row count, every sequence's last_value. Equal = nothing changed
    (server-wide activity counters, which reading alone moves, are deliberately not in it)."""
    with target.connect(autocommit=True) as conn:
        schemas = [r[0] for r in conn.execute(USER_SCHEMAS_SQL).fetchall()]
        relations = conn.execute(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname !~ '^pg_' "
            "AND n.nspname <> 'information_schema' ORDER BY 1, 2"
        ).fetchall()
        sequences = conn.execute(
            "SELECT schemaname, sequencename, last_value FROM pg_sequences "
            "WHERE schemaname !~ '^pg_' ORDER BY 1, 2"
        ).fetchall()
    return {
        "schemas": schemas,
        "relations": relations,
        "rows": database_fingerprint(target),
        "sequences": sequences,
    }


def state_listing(state_dir: Path) -> dict[str, tuple[int, int] | None]:
    """What lies under RESTORE_STATE_DIR (file: size and mtime), the sha256 cache and the
    embedded server's data left out."""
    listing: dict[str, tuple[int, int] | None] = {}
    for folder, dirs, files in os.walk(state_dir):
        here = Path(folder)
        if here == state_dir:
            dirs[:] = [d for d in dirs if d != "pgdata"]
        for name in dirs:
            listing[(here / name).relative_to(state_dir).as_posix()] = None
        for name in files:
            if here == state_dir and name.startswith("sha256-cache."):
                continue
            stat = (here / name).stat()
            listing[(here / name).relative_to(state_dir).as_posix()] = (
                stat.st_size,
                stat.st_mtime_ns,
            )
    return listing


def evidence_folders(artifacts: Path) -> list[Path]:
    return sorted((artifacts / "parity-manual" / "db-restore").glob("*/"))


def failure_messages(result) -> list[str]:
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data is not None:
                messages.append(data.user_failure_data.description or "")
            elif data.error is not None:
                messages.append(data.error.message)
    return messages


def check_results(result) -> dict[str, bool]:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def run_all():
    """The whole chain as the UI launches it (the job's own tags), consent to reset given."""
    from restore_assets.definitions import defs

    job = defs.resolve_job_def("restore_all")
    return job.execute_in_process(
        instance=target_instance(),
        partition_key=DEFAULT_TARGET,
        run_config={"resources": {"restore": {"config": {"allow_reset": True}}}},
        raise_on_error=False,
    )


def gates_only():
    """Materialise just gates/report against the databases as they are now."""
    from restore_assets.assets.gates import gates_report

    return materialize(
        [gates_report],
        instance=target_instance(),
        partition_key=DEFAULT_TARGET,
        resources=restore_resources(),
        raise_on_error=False,
    )


def gate_results(result) -> dict[str, tuple[bool, str]]:
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.asset_check_evaluation_data
            out[data.check_name] = (data.passed, data.description or "")
    return out


def start_group(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`command` in its own process group (so `end_groups` ends it and every child), no stdin,
    stdout and stderr appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def end_groups(processes: list[subprocess.Popen]) -> None:
    """Ctrl-C to each whole process group (dagster's own shutdown; a run worker is in its code
    server's group), then SIGKILL to whatever is left: webservers and daemons outlive their
    parent otherwise."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ui_environment(tmp_path: Path, secrets_dir: Path) -> dict[str, str]:
    """The whole environment of a `restore-assets ui` / `make ui` under test: its own Dagster
    home, state dir (embedded targets), artifacts, private code-server sockets and Secrets;
    nothing from the developer's or the test session's environment."""
    for name in ("dagster_home", "tmp"):
        (tmp_path / name).mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),  # this checkout's code
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "TMPDIR": str(tmp_path / "tmp"),
        "SECRETS_DIR": str(secrets_dir),
        "RESTORE_STATE_DIR": str(tmp_path / "state"),
        "RESTORE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "RESTORE_DOTENV": str(tmp_path / "no.env"),
        "RESTORE_SENSOR_INTERVAL_SECONDS": "1",
    }


def process_tree(top: int) -> dict[tuple[int, float], tuple[int, str]]:
    """Every process under `top` and every process of the sessions they belong to (a process
    whose parent died stays in its session), as (pid, start time) → (session, command line)."""
    import psutil

    found: dict[tuple[int, float], tuple[int, str]] = {}
    mine = os.getsid(0)
    candidates = []
    with contextlib.suppress(psutil.NoSuchProcess):
        candidates = [psutil.Process(top), *psutil.Process(top).children(recursive=True)]
    sessions = set()
    for proc in candidates:
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            sessions.add(os.getsid(proc.pid))
            found[(proc.pid, proc.create_time())] = (os.getsid(proc.pid), " ".join(proc.cmdline()))
    sessions.discard(mine)
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            if os.getsid(proc.pid) in sessions:
                found[(proc.pid, proc.create_time())] = (
                    os.getsid(proc.pid),
                    " ".join(proc.cmdline()),
                )
    return found


def still_running(recorded: dict[tuple[int, float], tuple[int, str]]) -> list[str]:
    """Those of `recorded` (see `process_tree`) still running, and any process now in one of
    their sessions (the test's own session aside), zombies aside."""
    import psutil

    sessions = {session for session, _ in recorded.values()} - {os.getsid(0)}
    left = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if (proc.pid, proc.create_time()) in recorded or os.getsid(proc.pid) in sessions:
                left.append(f"{proc.pid}: {' '.join(proc.cmdline())}")
    return left
