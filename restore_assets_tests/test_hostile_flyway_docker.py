"""FLYWAY_RUNNER=docker (issue 20, third round): the container's output comes back through
Dagster Pipes. Nothing of it may reach Dagster's storage unredacted — not its event log, not the
step's compute log, where Pipes' own reader prints every line of the container."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    StaticPartitionsDefinition,
    asset,
    materialize,
)

from restore_assets.resources.config import RestoreConfig
from restore_assets.resources.flyway import FlywayResource
from restore_assets.runbook.flyway_adapter import ExternalCommand

TARGET_PASSWORD = "target-pw-4f1c9e"  # FLYWAY_PASSWORD, the target's
CONF_PASSWORD = "conf-pw-77ab02"  # a conf's own flyway.password
ROW = "patient-row-e-mail@example.org"
# What a failing `flyway migrate` prints (Flyway 10's report), with a password echoed for good
# measure: the server's text quotes the row the migration failed on.
FLYWAY_SAYS = f"""Flyway OSS Edition 10.17.3 by Redgate
Database: jdbc:postgresql://127.0.0.1:5432/opendolphin_modern (PostgreSQL 16.4)
Migrating schema "public" to version "9001 - accounts"
ERROR: Migration V9001__accounts.sql failed
ERROR: Script V9001__accounts.sql failed
SQL State  : 23505
Message    : ERROR: duplicate key value violates unique constraint "users_email_key"
  Detail: Key (email)=({ROW}) already exists.
Line       : 3
conf password {CONF_PASSWORD}, then the environment's:
"""
IMAGE = "restore-assets-test-shell:1"


def _shell_image() -> str:
    """A local image holding only this host's /bin/sh and its libraries (no registry)."""
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode:
        pytest.skip("no docker daemon here")
    if subprocess.run([docker, "image", "inspect", IMAGE], capture_output=True).returncode == 0:
        return IMAGE
    shell = os.path.realpath("/bin/sh")
    libs = subprocess.run(["ldd", shell], capture_output=True, text=True, check=True).stdout
    files = [shell, *(w for w in libs.split() if w.startswith("/"))]
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        for path in files:
            archive.add(os.path.realpath(path), arcname=path.lstrip("/"))
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, shell
        archive.addfile(link)
    subprocess.run([docker, "import", "-", IMAGE], input=tar.getvalue(), check=True)
    return IMAGE


@asset(partitions_def=StaticPartitionsDefinition(["default"]))
def flyway_in_a_container(context, flyway: FlywayResource) -> None:
    """The Modernized step's call (`run_flyway` → `_run`), with a container saying FLYWAY_SAYS."""
    script = 'printf "%s\\n" "$SAYS"; echo "$FLYWAY_PASSWORD"; exit 1'  # sh's builtins only
    spec = ExternalCommand(
        argv=["sh", "-c", script, "migrate"],
        env={"FLYWAY_PASSWORD": TARGET_PASSWORD, "SAYS": FLYWAY_SAYS},
        volumes={},
        image=IMAGE,
        secrets=(TARGET_PASSWORD, CONF_PASSWORD),
    )
    flyway.container_runner(context)(spec)


@pytest.mark.docker
def test_a_flyway_containers_output_reaches_no_dagster_storage_unredacted(tmp_path):
    """A container that fails as `flyway migrate` fails, quoting a row and printing both
    passwords: the run fails saying the script, line and SQL state; neither password nor the
    row is in the run's event log or in any file of the Dagster home (compute logs)."""
    _shell_image()
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = DagsterInstance.local_temp(str(home))
    result = materialize(
        [flyway_in_a_container],
        resources={"flyway": FlywayResource(config=RestoreConfig())},
        instance=instance,
        partition_key="default",
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    said = failure.step_failure_data.error.cause.message  # the runner's own error
    assert "V9001__accounts.sql" in said and "line 3" in said.lower() and "23505" in said, said
    stored = "\n".join(str(entry) for entry in instance.all_logs(result.run_id))
    stored += "".join(p.read_text(errors="replace") for p in Path(home).rglob("*") if p.is_file())
    for secret in (TARGET_PASSWORD, CONF_PASSWORD, ROW):
        assert secret not in stored, secret
