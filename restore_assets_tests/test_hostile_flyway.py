"""Issue 20, class 7: a flyway.conf that names another database than the target being restored.

The cli and docker runners hand the conf to real Flyway. Flyway connects to whatever the conf's
`flyway.url` names unless its command line says otherwise, so the runners name the Modernized
target on the command line (-url, -user; the password in FLYWAY_PASSWORD, which also wins over
the conf and stays out of `ps`), and refuse a conf whose `flyway.url` names another database.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from restore_assets.errors import RestoreError
from restore_assets.pg.database import Database
from restore_assets.runbook.flyway_adapter import cli_command, docker_command, load_flyway_config
from restore_assets.settings import DEMO_FLYWAY_CONF, load_settings
from restore_assets_tests.conftest import EXTERNAL_PASSWORD, run_cli
from restore_assets_tests.test_flyway_cli_runner import (
    all_evidence,
    evidence_folder,
    flyway_cli,  # noqa: F401 (the real Flyway CLI, a session fixture)
)

DEMO_URL = "flyway.url=jdbc:postgresql://${DB_HOST}:${DB_PORT}/${DB_NAME}\n"


@pytest.fixture
def neighbour(password_cluster, external_modernized) -> str:
    """Another database on the Modernized target's server, same role and password (another
    clinic's, say): what a conf written for it would reach."""
    name = external_modernized["MODERNIZED_POSTGRES_DB"].replace("extm_", "extn_", 1)
    password_cluster.create_database(name, "opendolphin", EXTERNAL_PASSWORD)
    return name


def flyway_project(tmp_path: Path, monkeypatch, url_line: str, drop: tuple[str, ...] = ()) -> Path:
    """The demo's conf and migrations copied, its flyway.url line replaced by `url_line` and the
    lines starting with `drop` removed; FLYWAY_CONF names it."""
    project = tmp_path / "flyway"
    shutil.copytree(DEMO_FLYWAY_CONF.parent, project)
    conf = project / "flyway.conf"
    text = conf.read_text()
    assert DEMO_URL in text
    lines = text.replace(DEMO_URL, url_line).splitlines(keepends=True)
    conf.write_text("".join(line for line in lines if not line.startswith(drop or ("\0",))))
    monkeypatch.setenv("FLYWAY_CONF", str(conf))
    monkeypatch.setenv("FLYWAY_WORKING_DIRECTORY", str(project))  # its filesystem:sql
    return conf


def user_objects(external: dict[str, str], dbname: str) -> list[str]:
    """Every schema and relation a migration could have left in `dbname`."""
    with psycopg.connect(
        host=external["MODERNIZED_POSTGRES_HOST"],
        port=int(external["MODERNIZED_POSTGRES_PORT"]),
        dbname=dbname,
        user="opendolphin",
        password=EXTERNAL_PASSWORD,
        sslmode="disable",
    ) as conn:
        rows = conn.execute(
            "SELECT n.nspname || coalesce('.' || c.relname, '') FROM pg_namespace n "
            "LEFT JOIN pg_class c ON c.relnamespace = n.oid "
            "WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' "
            "AND (n.nspname <> 'public' OR c.oid IS NOT NULL) ORDER BY 1"
        ).fetchall()
    return [name for (name,) in rows]


def the_runners(settings):
    """The cli and docker runners' `migrate` command for the Modernized target."""
    target = Database(settings.modernized, settings.pg)
    config = load_flyway_config(settings.flyway, target)
    return {
        "cli": lambda: cli_command(settings.flyway, config, target, "migrate"),
        "docker": lambda: docker_command(settings.flyway, config, target, "migrate"),
    }


@pytest.mark.parametrize(
    "url",
    [
        "jdbc:postgresql://${DB_HOST}:${DB_PORT}/{neighbour}",
        "jdbc:postgresql://${DB_HOST}:${DB_PORT}/{neighbour}?sslmode=disable",
        "jdbc:postgresql://${DB_HOST}:1/${DB_NAME}",
        "jdbc:postgresql://192.0.2.7:${DB_PORT}/${DB_NAME}",
    ],
    ids=["other database", "other database with a parameter", "other port", "other host"],
)
def test_the_cli_and_docker_runners_refuse_a_conf_naming_another_database_before_running(
    neighbour, tmp_path, monkeypatch, url
):
    """A flyway.conf whose flyway.url names another database than the Modernized target: another
    database on the same server, the target's name on another port or on another host."""
    named = url.replace("{neighbour}", neighbour)
    conf = flyway_project(tmp_path, monkeypatch, f"flyway.url={named}\n")
    settings = load_settings()
    for runner, command in the_runners(settings).items():
        with pytest.raises(RestoreError) as refused:
            command()  # no Docker needed: refused before a process or container starts
        message = str(refused.value)
        target = settings.modernized
        assert str(conf) in message, runner
        assert f"{target.host}:{target.port}/{target.dbname}" in message, runner
        assert "refuse" in message and EXTERNAL_PASSWORD not in message, runner


def test_the_runners_tell_flyway_the_target_and_keep_the_password_off_the_command_line(
    external_modernized, monkeypatch
):
    """Another local user reading the process table (`ps`, /proc/<pid>/cmdline is world-readable):
    the target's password must not be on Flyway's command line, while the URL and user that
    overrule the conf must be."""
    settings = load_settings()
    target = settings.modernized
    url = (
        f"-url=jdbc:postgresql://127.0.0.1:{target.port}/{target.dbname}?sslmode=disable"
        "&options=-c%20lock_timeout%3D300000"
    )
    for runner, command in the_runners(settings).items():
        spec = command()
        assert url in spec.argv and "-user=opendolphin" in spec.argv, runner
        assert all(EXTERNAL_PASSWORD not in arg for arg in spec.argv), runner
        assert spec.env["FLYWAY_PASSWORD"] == EXTERNAL_PASSWORD, runner  # the child's env only


@pytest.fixture
def cli_runner(request, monkeypatch) -> None:
    """FLYWAY_RUNNER=cli, with the real Flyway 10.17.3 command line."""
    monkeypatch.setenv("FLYWAY_RUNNER", "cli")
    monkeypatch.setenv("FLYWAY_BIN", str(request.getfixturevalue("flyway_cli")))


@pytest.mark.slow
@pytest.mark.real_flyway
def test_a_conf_naming_another_database_is_refused_before_flyway_touches_either_database(
    secrets_dir,
    artifacts_dir,
    external_modernized,
    neighbour,
    cli_runner,
    tmp_path,
    monkeypatch,
):
    """A flyway.conf whose flyway.url names another database on the Modernized target's own
    server (same role, same password), run by the real Flyway CLI. Before: the target was
    restored, Flyway migrated the other database instead, and the run blamed a missing
    baseline."""
    conf = flyway_project(
        tmp_path,
        monkeypatch,
        f"flyway.url=jdbc:postgresql://${{DB_HOST}}:${{DB_PORT}}/{neighbour}\n",
    )
    target = external_modernized["MODERNIZED_POSTGRES_DB"]
    planned = run_cli("plan", "--only", "modernized", "--allow-reset")
    assert planned.returncode != 0 and str(conf) in planned.stdout, planned.stdout  # foretold

    done = run_cli("run", "--only", "modernized", "--allow-reset")
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert str(conf) in output and neighbour in output and target in output, output
    assert "baseline missing" not in output
    assert user_objects(external_modernized, neighbour) == []  # Flyway never reached it
    restored = user_objects(external_modernized, target)
    assert "opendolphin.appointment_model" in restored  # the baseline, restored by psql
    assert "opendolphin.flyway_schema_history" not in restored  # refused before Flyway ran

    # `restore-assets flyway migrate`, the conf given by --conf: the same refusal.
    monkeypatch.delenv("FLYWAY_CONF")
    by_hand = run_cli("flyway", "migrate", "--conf", str(conf))
    assert by_hand.returncode != 0
    assert str(conf) in by_hand.stdout and neighbour in by_hand.stdout, by_hand.stdout
    assert user_objects(external_modernized, neighbour) == []
    assert EXTERNAL_PASSWORD not in output + by_hand.stdout + by_hand.stderr


@pytest.mark.slow
@pytest.mark.real_flyway
def test_a_conf_without_url_or_user_and_a_wrong_password_still_migrates_the_target(
    secrets_dir,
    artifacts_dir,
    external_modernized,
    neighbour,
    cli_runner,
    tmp_path,
    monkeypatch,
):
    """A flyway.conf with no flyway.url and no flyway.user, and a flyway.password that is not the
    target's: Flyway must be given the target's URL, user and password by the runner, whatever
    the conf holds."""
    flyway_project(
        tmp_path, monkeypatch, "flyway.password=not-the-password\n", drop=("flyway.user",)
    )
    done = run_cli("run", "--only", "modernized", "--allow-reset")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    evidence = all_evidence(evidence_folder(done))
    assert 'Successfully applied 5 migrations to schema "opendolphin"' in evidence
    target = external_modernized["MODERNIZED_POSTGRES_DB"]
    assert "opendolphin.flyway_schema_history" in user_objects(external_modernized, target)
    assert user_objects(external_modernized, neighbour) == []
    assert EXTERNAL_PASSWORD not in output + evidence


def test_a_fifo_swapped_in_for_flyway_conf_is_refused_never_waited_on(tmp_path):
    """flyway.conf is read again by every step after the settings checked it: a FIFO put in its
    place (by whoever can write its folder) must be refused at once, not hang the step."""
    import os
    import threading

    from restore_assets.flyway.conf import read_conf_file
    from restore_assets.flyway.errors import FlywayError

    conf = tmp_path / "flyway.conf"
    os.mkfifo(conf)
    outcome: list[BaseException | dict] = []

    def read() -> None:
        try:
            outcome.append(read_conf_file(conf, {}))
        except BaseException as exc:  # noqa: BLE001 - what the reader ended with, whatever it is
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # it blocked: let it go before failing
        with open(conf, "w"):
            pass
        reader.join(10)
        pytest.fail("reading a FIFO for flyway.conf blocked")
    (ended,) = outcome
    assert isinstance(ended, FlywayError) and "not a regular file" in str(ended), ended
