"""Differential harness: the same migration folder through real Flyway on one database and
through the engine on another, then the two compared — history rows column by column (all but
installed_by, installed_on, execution_time), `pg_dump --schema-only`, and each command's outcome."""

from __future__ import annotations

import difflib
import itertools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from restore_assets.flyway import Flyway, FlywayError
from restore_assets.flyway.conf import load_conf
from restore_assets.pg.clients import bundled_bin_dir
from restore_assets_tests.conftest import EXTERNAL_PASSWORD
from restore_assets_tests.real_flyway import RealFlyway

USER = "opendolphin"
COMPARED = ("installed_rank", "version", "description", "type", "script", "checksum", "success")
_names = itertools.count()


@dataclass
class Outcome:
    """What one command did: whether it succeeded, its error text, and (validate) its verdict."""

    ok: bool
    error: str = ""
    valid: bool | None = None


class Twin:
    """Two fresh databases on the password cluster: `real` for Flyway, `ours` for the engine."""

    def __init__(self, oracle: RealFlyway, cluster, folder: Path, label: str):
        self.oracle, self.cluster, self.folder = oracle, cluster, folder
        n = next(_names)
        self.real, self.ours = f"real_{label}_{n}"[:60], f"ours_{label}_{n}"[:60]
        for name in (self.real, self.ours):
            cluster.create_database(name, USER, EXTERNAL_PASSWORD)

    def props(self, **extra: str) -> dict[str, str]:
        props = {"flyway.locations": f"filesystem:{self.folder}"}
        props.update({f"flyway.{k}": str(v) for k, v in extra.items()})
        return props

    def connect(self, dbname: str) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.cluster.port,
            user=USER,
            password=EXTERNAL_PASSWORD,
            dbname=dbname,
        )

    def engine(self, **extra: str) -> Flyway:
        config = load_conf(None, env={}, overrides=self.props(**extra))
        return Flyway(config, lambda: self.connect(self.ours), lock_wait_seconds=30)

    def run_real(self, action: str, db: str | None = None, **extra: str) -> Outcome:
        url = f"jdbc:postgresql://127.0.0.1:{self.cluster.port}/{db or self.real}"
        answer = self.oracle.run(url, USER, EXTERNAL_PASSWORD, action, self.props(**extra))
        if not answer["ok"]:
            return Outcome(False, answer["error"])
        if action == "validate":
            verdict = answer["validate"]
            errors = [verdict["error"] or ""] + [i["error"] for i in verdict["invalid"]]
            return Outcome(True, "\n".join(errors).strip(), verdict["successful"])
        return Outcome(True)

    def run_ours(self, action: str, **extra: str) -> Outcome:
        try:
            engine = self.engine(**extra)
            if action == "validate":
                errors = engine.validate()
                return Outcome(True, "\n".join(errors), not errors)
            getattr(engine, action)()
        except (FlywayError, psycopg.Error) as exc:
            return Outcome(False, str(exc))
        return Outcome(True)

    def step(self, action: str, **extra: str) -> tuple[Outcome, Outcome]:
        """`action` on both sides; they must agree on success (and validate's verdict)."""
        real, ours = self.run_real(action, **extra), self.run_ours(action, **extra)
        assert (real.ok, real.valid) == (ours.ok, ours.valid), (
            f"{action}: Flyway {real} but engine {ours}"
        )
        return real, ours

    def info(self, **extra: str) -> tuple[list[tuple], list[tuple]]:
        url = f"jdbc:postgresql://127.0.0.1:{self.cluster.port}/{self.real}"
        answer = self.oracle.run(url, USER, EXTERNAL_PASSWORD, "info", self.props(**extra))
        assert answer["ok"], answer
        real = [
            (r["category"], r["version"], r["description"], r["type"], r["state"])
            for r in answer["info"]
        ]
        ours = [
            (r.category, r.version, r.description, r.type, r.state)
            for r in self.engine(**extra).info()
        ]
        return real, ours

    def history(
        self, dbname: str, schema: str = "public", name: str = "flyway_schema_history"
    ) -> list[tuple]:
        table = sql.Identifier(schema, name)
        with self.connect(dbname) as conn:
            name = table.as_string(conn)
            if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None:
                return []
            columns = sql.SQL(", ").join(map(sql.Identifier, COMPARED))
            query = sql.SQL("SELECT {} FROM {} ORDER BY installed_rank").format(columns, table)
            return conn.execute(query).fetchall()

    def schema(self, dbname: str) -> str:
        env = {**os.environ, "PGPASSWORD": EXTERNAL_PASSWORD}
        done = subprocess.run(
            [
                str(bundled_bin_dir() / "pg_dump"),
                "--schema-only",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.cluster.port),
                "-U",
                USER,
                dbname,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        # pg_dump 17.6+ brackets its output with a random \restrict key.
        lines = done.stdout.splitlines()
        keep = [line for line in lines if not line.startswith(("\\restrict", "\\unrestrict"))]
        return "\n".join(keep)

    def assert_same(self, schema: str = "public") -> list[tuple]:
        """Identical history rows (in `schema`) and identical schemas; returns the rows."""
        real, ours = self.history(self.real, schema), self.history(self.ours, schema)
        assert ours == real, "history differs:\n" + _diff(real, ours)
        real_schema, ours_schema = self.schema(self.real), self.schema(self.ours)
        assert ours_schema == real_schema, "schema differs:\n" + _diff(
            real_schema.splitlines(), ours_schema.splitlines()
        )
        return real

    def real_accepts_ours(self, **extra: str) -> None:
        """Real Flyway's validate and migrate on the engine's database: valid, nothing to do."""
        url = f"jdbc:postgresql://127.0.0.1:{self.cluster.port}/{self.ours}"
        props = self.props(**extra)
        answer = self.oracle.run(url, USER, EXTERNAL_PASSWORD, "validate", props)
        assert answer["ok"] and answer["validate"]["successful"], answer
        answer = self.oracle.run(url, USER, EXTERNAL_PASSWORD, "migrate", props)
        assert answer == {"ok": True, "applied": 0}, answer


def _diff(real: list, ours: list) -> str:
    lines = difflib.unified_diff([str(r) for r in real], [str(r) for r in ours], "flyway", "engine")
    return "\n".join(lines)
