"""Builds a demo Secrets store: OpenDolphin-like databases dumped by the bundled pg_dump.

The files are real pg_dump output (`\\restrict`, `COPY ... FROM stdin`, `search_path` cleared), so
the demo exercises exactly what a delivery from Ops would. Nothing here comes from real patients.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql

from restore_assets.errors import ConfigError
from restore_assets.files import make_private_dirs, refuse_redirectable, write_private
from restore_assets.pg.clients import client_binary
from restore_assets.pg.database import Database, embedded_admin
from restore_assets.settings import (
    LEGACY_SCHEMA_FILE,
    LEGACY_SEED_FILE,
    MODERN_SCHEMA_FILE,
    Settings,
)

DEFAULT_PATIENTS = 300
# A fixed \restrict key keeps the demo files byte-identical between builds of the same size.
DEMO_RESTRICT_KEY = "RestoreAssetsDemoKey"


def demo_sql(name: str) -> str:
    return resources.files("restore_assets.demo").joinpath("sql", name).read_text(encoding="utf-8")


@dataclass
class DemoBuild:
    secrets_dir: Path
    files: dict[str, Path]
    patients: int
    seconds: float


@dataclass
class ScratchDatabase:
    """A throw-away database on the embedded server to build one demo dump from."""

    db: Database
    name: str

    def __enter__(self) -> ScratchDatabase:
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"))
        self._admin(sql.SQL("CREATE DATABASE {} OWNER {}"), self.db.settings.user)
        return self

    def __exit__(self, *exc) -> None:
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"))

    def _admin(self, statement: sql.SQL, owner: str | None = None) -> None:
        names = [sql.Identifier(self.name)] + ([sql.Identifier(owner)] if owner else [])
        with embedded_admin(self.db.endpoint()) as conn:
            conn.execute(statement.format(*names))

    def run(self, script: str, params: dict[str, object] | None = None) -> None:
        with self.db.connect(dbname=self.name) as conn:
            # ClientCursor binds client-side, so one script of many statements can take params.
            psycopg.ClientCursor(conn).execute(script, params)
            conn.commit()

    def dump(self, path: Path, *args: str) -> None:
        pg_dump = client_binary("pg_dump", self.db.pg.tools.pg_dump)
        env = self.db.client_env(dbname=self.name)

        def writer(out) -> None:
            cmd = [pg_dump, "--no-owner", f"--restrict-key={DEMO_RESTRICT_KEY}", *args]
            subprocess.run(cmd, env=env, stdout=out, check=True)

        write_private(path, writer)


def build_demo_secrets(
    settings: Settings, secrets_dir: Path, patients: int = DEFAULT_PATIENTS
) -> DemoBuild:
    """Write the runbook's baseline files under `secrets_dir` (dirs 0700, files 0600)."""
    if patients < 1:
        raise ConfigError("patients must be at least 1")
    started = time.monotonic()
    db = Database(settings.legacy, settings.pg)
    if not db.embedded:
        raise ConfigError("the demo builds its dumps on the embedded server only")
    refuse_redirectable(secrets_dir)  # created as root below: never through another's link
    make_private_dirs(secrets_dir)
    files: dict[str, Path] = {}
    with ScratchDatabase(db, "restore_demo_build_legacy") as scratch:
        scratch.run(demo_sql("hibernate_tables.sql"))
        scratch.run(demo_sql("legacy_schema.sql"))
        scratch.run(demo_sql("legacy_data.sql"), {"patients": patients})
        files[LEGACY_SCHEMA_FILE] = secrets_dir / LEGACY_SCHEMA_FILE
        scratch.dump(files[LEGACY_SCHEMA_FILE], "--schema-only")
        files[LEGACY_SEED_FILE] = secrets_dir / LEGACY_SEED_FILE
        scratch.dump(files[LEGACY_SEED_FILE], "--data-only")
    with ScratchDatabase(db, "restore_demo_build_modern") as scratch:
        scratch.run(demo_sql("hibernate_tables.sql"))
        scratch.run(demo_sql("modern_schema.sql"))
        files[MODERN_SCHEMA_FILE] = secrets_dir / MODERN_SCHEMA_FILE
        scratch.dump(files[MODERN_SCHEMA_FILE], "--schema-only")
    return DemoBuild(secrets_dir, files, patients, round(time.monotonic() - started, 3))
