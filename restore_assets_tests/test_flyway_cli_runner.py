"""FLYWAY_RUNNER=cli with the real Flyway 10.17.3 command line (fetched with Maven, see
real_flyway.cli_launcher): the command line and environment runners.py builds (conf with
${DB_*} filled by Flyway from the environment), run for real on the external TCP/password
Modernized target, must leave the history, gates and asset metadata the native runner leaves."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from restore_assets.assets.modernized import HISTORY
from restore_assets.jobs import prepare_instance
from restore_assets.settings import DEMO_FLYWAY_CONF, load_settings
from restore_assets_tests.conftest import EXTERNAL_PASSWORD, run_cli
from restore_assets_tests.real_flyway import FLYWAY_VERSION, OracleUnavailable, cli_launcher
from restore_assets_tests.test_modernized import modern_rows

pytestmark = pytest.mark.real_flyway

GATES = ("history_versions", "expected_tables", "expected_columns", "pg_trgm")


@pytest.fixture(scope="session")
def flyway_cli() -> Path:
    try:
        return cli_launcher()
    except OracleUnavailable as exc:
        pytest.fail(f"the real Flyway CLI is needed for FLYWAY_RUNNER=cli: {exc}")


def evidence_folder(done) -> Path:
    return Path(done.stdout.strip().splitlines()[-1].removeprefix("evidence: "))


def history_metadata() -> dict[str, object]:
    """The latest modernized/flyway_history materialisation's metadata, as the UI shows it."""
    event = prepare_instance(load_settings().paths).get_latest_materialization_event(HISTORY)
    metadata = event.asset_materialization.metadata
    return {
        "keys": sorted(metadata),
        "runner": metadata["runner"].value,
        "history": [r.data for r in metadata["history"].value.records],
        "row_counts": [r.data for r in metadata["row_counts_before_sync"].value.records],
    }


def gate_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if "modernized/flyway_history:" in line]


def test_cli_runner_leaves_what_the_native_runner_leaves(
    secrets_dir, artifacts_dir, external_modernized, flyway_cli, monkeypatch
):
    native = run_cli("run", "--only", "modernized", "--allow-reset")
    assert native.returncode == 0, native.stdout + native.stderr
    native_rows, native_metadata = modern_rows(), history_metadata()

    # Same Secrets, same database, reset with consent; now the real Flyway CLI migrates it.
    monkeypatch.setenv("FLYWAY_RUNNER", "cli")
    monkeypatch.setenv("FLYWAY_BIN", str(flyway_cli))
    cli = run_cli("run", "--only", "modernized", "--allow-reset")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    log = (evidence_folder(cli) / "flyway_migrate.log").read_text()
    assert f"Flyway OSS Edition {FLYWAY_VERSION}" in log  # the real CLI ran, not the engine
    assert "A more recent version of Flyway" not in log  # no call home from a restore step
    assert "Successfully baselined schema with version: 0" in log
    assert 'Successfully applied 5 migrations to schema "opendolphin"' in log
    assert "migrate: applied" not in log  # the native runner's line

    # History rows: version, description, type, script, checksum, success (and rank) identical.
    assert len(native_rows) == 6 and modern_rows() == native_rows
    assert gate_lines(cli.stdout) == gate_lines(native.stdout)
    assert len(gate_lines(cli.stdout)) == len(GATES) and "FAILED" not in cli.stdout
    cli_metadata = history_metadata()
    assert (native_metadata["runner"], cli_metadata["runner"]) == ("native", "cli")
    assert {**cli_metadata, "runner": "native"} == native_metadata
    assert EXTERNAL_PASSWORD not in cli.stdout + cli.stderr + log


def diagnosis(folder: Path) -> list[str]:
    log = (folder / "flyway_migrate.log").read_text()
    return [line for line in log.splitlines() if line.startswith("DIAGNOSIS: ")]


def all_evidence(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_failing_migration_under_the_cli_runner(
    secrets_dir, artifacts_dir, external_modernized, flyway_cli, monkeypatch, tmp_path
):
    project = tmp_path / "flyway"
    shutil.copytree(DEMO_FLYWAY_CONF.parent, project)
    (project / "sql" / "V9999__broken.sql").write_text(
        "SELECT 1;\nALTER TABLE no_such_table ADD COLUMN x int;\n", encoding="utf-8"
    )
    monkeypatch.setenv("FLYWAY_CONF", str(project / "flyway.conf"))
    monkeypatch.setenv("FLYWAY_WORKING_DIRECTORY", str(project))  # its filesystem:sql
    native = run_cli("run", "--only", "modernized", "--allow-reset")
    assert native.returncode == 1, native.stdout + native.stderr
    native_rows, native_diagnosis = modern_rows(), diagnosis(evidence_folder(native))

    monkeypatch.setenv("FLYWAY_RUNNER", "cli")
    monkeypatch.setenv("FLYWAY_BIN", str(flyway_cli))
    cli = run_cli("run", "--only", "modernized", "--allow-reset")
    assert cli.returncode == 1, cli.stdout + cli.stderr
    folder = evidence_folder(cli)
    log = (folder / "flyway_migrate.log").read_text()
    # The runbook's diagnosis, parsed from Flyway's report exactly as the native runner gives it.
    assert native_diagnosis == diagnosis(folder)
    (line,) = native_diagnosis
    assert line.startswith(  # the baseline is there: the migration itself is wrong
        'DIAGNOSIS: migration V9999__broken.sql needs relation "no_such_table", which neither '
        "the Modernized baseline"
    )
    assert line.removeprefix("DIAGNOSIS: ") in cli.stdout
    # Flyway's report said from its structured fields (script, line, SQL State; 42P01's message
    # names a relation only), in the output and in the evidence: never its `Message` field as
    # such, which can quote a row's value (issue 20, class 5).
    said = (
        "Migration V9999__broken.sql failed at line 2: "
        'ERROR: relation "no_such_table" does not exist (42P01)'
    )
    assert said in log and said in cli.stdout, (log, cli.stdout)
    assert "Message    :" not in log + cli.stdout
    # Flyway rolled the failed migration back: the history is what the native runner left.
    assert modern_rows() == native_rows and native_rows[-1][1] == "0221"
    assert EXTERNAL_PASSWORD not in cli.stdout + cli.stderr + all_evidence(folder)


def test_relative_locations_start_where_the_flyway_cli_starts_them(
    external_modernized, flyway_cli, tmp_path, monkeypatch
):
    """`filesystem:sql` starts at the working directory, or at -workingDirectory — never at the
    conf's folder: the real CLI and `restore-assets flyway info` find the same migration."""
    import os
    import subprocess

    from restore_assets.pg.database import Database
    from restore_assets.runbook.flyway_adapter import QUIET, QUIET_ENV, db_env

    beside_conf, working = tmp_path / "conf", tmp_path / "work"
    for folder in (beside_conf, working):
        (folder / "sql").mkdir(parents=True)
        (folder / "sql" / f"V1__found_in_{folder.name}.sql").write_text("SELECT 1;\n")
    conf = beside_conf / "flyway.conf"
    conf.write_text(DEMO_FLYWAY_CONF.read_text())  # URL from DB_*; locations=filesystem:sql
    assert "flyway.locations=filesystem:sql\n" in conf.read_text()
    settings = load_settings()
    env = {**os.environ, **db_env(Database(settings.modernized, settings.pg)), **QUIET_ENV}

    def found(out: str) -> set[str]:
        return {name for name in ("conf", "work") if f"found in {name}" in out}

    monkeypatch.chdir(working)
    for option, expected in (([], {"work"}), ([f"-workingDirectory={beside_conf}"], {"conf"})):
        real = subprocess.run(
            [str(flyway_cli), f"-configFiles={conf}", *option, *QUIET, "info"],
            cwd=working, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert real.returncode == 0, real.stdout + real.stderr
        ours = run_cli(
            "flyway", "info", "--conf", str(conf),
            *(["--working-directory", str(beside_conf)] if option else []),
        )  # fmt: skip
        assert ours.returncode == 0, ours.stdout + ours.stderr
        assert found(real.stdout) == found(ours.stdout) == expected, (real.stdout, ours.stdout)

    # FLYWAY_WORKING_DIRECTORY is the engine's -workingDirectory; a missing folder says where
    # a relative location starts and how to move it.
    monkeypatch.setenv("FLYWAY_WORKING_DIRECTORY", str(beside_conf))
    assert found(run_cli("flyway", "info", "--conf", str(conf)).stdout) == {"conf"}
    monkeypatch.setenv("FLYWAY_WORKING_DIRECTORY", str(tmp_path))
    missing = run_cli("flyway", "info", "--conf", str(conf))
    assert missing.returncode != 0
    assert f"{tmp_path / 'sql'} does not exist" in missing.stdout + missing.stderr
    assert "FLYWAY_WORKING_DIRECTORY" in missing.stdout + missing.stderr
