"""Named targets (RESTORE_TARGETS → targets.yaml): validation, and real runs of two clinics."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from restore_assets.errors import ConfigError
from restore_assets.named_targets import load_targets
from restore_assets.pg.database import Database
from restore_assets.settings import LEGACY_SEED_FILE, load_settings
from restore_assets_tests.conftest import run_cli

TWO_CLINICS = """
targets:
  clinic-a:
    secrets_dir: clinic-a
    legacy:     {db: od_a}
    modernized: {db: od_a_modern}
  clinic-b:
    secrets_dir: clinic-b
    legacy:     {db: od_b}
    modernized: {db: od_b_modern}
"""


def targets_file(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "targets.yaml"
    path.write_text(text)
    return {"RESTORE_TARGETS": str(path)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "targets:\n  a:\n    secrets_dir: a\n    legacy: {db: x, password: hunter2}\n"
            "    modernized: {db: y}\n",
            "targets.a.legacy.password: passwords are never written in the file",
        ),
        (
            "targets:\n  a:\n    secrets_dir: a\n    legacy: {db: x, colour: red}\n"
            "    modernized: {db: y}\n",
            "targets.a.legacy.colour: unknown field",
        ),
        (
            "targets:\n  Clinic A:\n    secrets_dir: a\n    legacy: {db: x}\n"
            "    modernized: {db: y}\n",
            "target name 'Clinic A': use lower-case letters",
        ),
        (
            "targets:\n  a:\n    secrets_dir: a\n    legacy: {db: x, port: 99999}\n"
            "    modernized: {db: y}\n",
            "targets.a.legacy.port: Input should be less than or equal to 65535",
        ),
        (
            "targets:\n  a:\n    secrets_dir: a\n    legacy: {host: db1, db: x}\n"
            "    modernized: {db: y}\n",
            "targets.a.legacy: an external server needs password_env",
        ),
        (
            "targets:\n  a:\n    secrets_dir: a\n"
            "    legacy: {host: db1, db: x, password_env: A_PW_NOT_SET}\n"
            "    modernized: {db: y}\n",
            "targets.a.legacy.password_env: A_PW_NOT_SET is not set",
        ),
        (
            "targets:\n  a:\n    secrets_dir: a\n    legacy: {db: x}\n    modernized: {db: y}\n"
            "  b:\n    secrets_dir: b\n    legacy: {db: x}\n    modernized: {db: z}\n",
            "targets.b.legacy and targets.a.legacy are the same database",
        ),
        (
            "targets:\n  a:\n    secrets_dir: a\n    legacy: {db: x}\n    modernized: {db: y}\n"
            "    sync_tables: [d_patient]\n",
            "targets.a.sync_tables: names d_patient, which cannot be synced",
        ),
        (
            "targets:\n  a:\n    secrets_dir: a\n    legacy: {db: x}\n    modernized: {db: y}\n"
            "    flyway_working_directory: no-such-folder\n",
            "no-such-folder is not a folder",
        ),
        ("targets: {}\n", "targets: Value error, lists no target"),
        ("targets: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_bad_targets_file_is_refused_naming_the_field(tmp_path, text, expected):
    env = targets_file(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        load_targets(load_settings(env))
    assert expected in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_each_named_target_is_a_whole_settings(tmp_path, monkeypatch):
    env = targets_file(
        tmp_path,
        "targets:\n  a:\n    secrets_dir: /abs/a\n"
        "    legacy: {host: db1, port: 6543, db: x, user: u, password_env: A_PW}\n"
        "    modernized: {db: y}\n    legacy_expected_tables: [d_users]\n"
        "    flyway_working_directory: migrations\n",
    )
    (tmp_path / "migrations").mkdir()
    named = load_targets(load_settings({**env, "A_PW": "s3cret"}))
    a = named["a"]
    assert a.flyway.working_directory == tmp_path / "migrations"  # beside targets.yaml
    assert (a.target_name, a.paths.secrets_dir, a.checks.legacy_expected_tables) == (
        "a",
        Path("/abs/a"),
        ("d_users",),
    )
    assert (a.legacy.host, a.legacy.port, a.legacy.dbname, a.legacy.password) == (
        "db1",
        6543,
        "x",
        "s3cret",
    )
    assert a.modernized.embedded and a.modernized.dbname == "y"
    assert "s3cret" in a.passwords  # so redaction knows it


def _dbs(settings) -> dict[str, int]:
    """Patients per Legacy database of each named target (the restored data)."""
    counts = {}
    for name, target_settings in load_targets(settings).items():
        target = Database(target_settings.legacy, target_settings.pg)
        with target.connect(autocommit=True) as conn:
            try:
                counts[name] = conn.execute("SELECT count(*) FROM d_patient").fetchone()[0]
            except psycopg.errors.UndefinedTable:
                counts[name] = 0
    return counts


@pytest.mark.slow
def test_run_all_restores_every_clinic_into_its_own_databases_and_evidence(
    demo_secrets, tmp_path, monkeypatch, artifacts_dir
):
    root = tmp_path / "Secrets"
    for clinic in ("clinic-a", "clinic-b"):
        shutil.copytree(demo_secrets, root / clinic)
    monkeypatch.setenv("SECRETS_DIR", str(root))
    monkeypatch.setenv("RESTORE_TARGETS", targets_file(tmp_path, TWO_CLINICS)["RESTORE_TARGETS"])

    plain = run_cli("run")
    assert plain.returncode == 3
    assert "lists 2 target(s) (clinic-a, clinic-b): choose one" in plain.stderr

    done = run_cli("run", "--all")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "== target clinic-a ==" in done.stdout and "== target clinic-b ==" in done.stdout
    evidence = artifacts_dir / "parity-manual" / "db-restore"
    for clinic in ("clinic-a", "clinic-b"):
        runs = list((evidence / clinic).glob("*/gate_report.json"))
        assert len(runs) == 1 and '"status": "passed"' in runs[0].read_text()
    assert set(_dbs(load_settings()).values()) == {60}

    planned = run_cli("plan", "--all")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "clinic-a" in planned.stdout and "clinic-b" in planned.stdout
    assert set(_dbs(load_settings()).values()) == {60}  # the plan changed nothing

    status = run_cli("status")
    assert status.returncode == 0
    lines = status.stdout.splitlines()
    assert lines[0].split()[:3] == ["target", "Secrets", "files"]
    assert any(line.startswith("clinic-b") and "3/3 usable" in line for line in lines)


def test_the_plan_of_a_target_never_restored_creates_nothing(demo_secrets, tmp_path, monkeypatch):
    """A new embedded target: the plan says the run would create its databases, and does not."""
    from restore_assets.pg.database import embedded_admin, start_embedded

    root = tmp_path / "Secrets"
    shutil.copytree(demo_secrets, root / "clinic-new")
    monkeypatch.setenv("SECRETS_DIR", str(root))
    text = (
        "targets:\n  clinic-new:\n    secrets_dir: clinic-new\n"
        "    legacy: {db: od_never_legacy}\n    modernized: {db: od_never_modern}\n"
    )
    monkeypatch.setenv("RESTORE_TARGETS", targets_file(tmp_path, text)["RESTORE_TARGETS"])

    done = run_cli("plan", "--target", "clinic-new")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("does not exist yet (the run creates it, empty)") == 2
    assert done.stdout.count("### Preflight\n\nok: PostgreSQL ") == 2
    assert done.stdout.count("nothing to drop: the database does not exist yet") == 2
    assert "After the restore: 5 pending from baseline 0" in done.stdout
    with embedded_admin(start_embedded(load_settings().paths.state_dir)) as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert not {"od_never_legacy", "od_never_modern"} & names


@pytest.mark.slow
def test_one_clinic_blocked_does_not_stop_the_others_and_the_exit_says_so(
    demo_secrets, tmp_path, monkeypatch, artifacts_dir
):
    root = tmp_path / "Secrets"
    for clinic in ("clinic-a", "clinic-b"):
        shutil.copytree(demo_secrets, root / clinic)
    (root / "clinic-a" / LEGACY_SEED_FILE).unlink()
    monkeypatch.setenv("SECRETS_DIR", str(root))
    monkeypatch.setenv("RESTORE_TARGETS", targets_file(tmp_path, TWO_CLINICS)["RESTORE_TARGETS"])

    done = run_cli("run", "--all", "--only", "legacy")
    assert done.returncode == 2, done.stdout + done.stderr
    table = done.stdout[done.stdout.rindex("target    exit  result") :].splitlines()
    assert table[1].split()[:2] == ["clinic-a", "2"] and "blocked" in table[1]
    assert table[2].split()[:2] == ["clinic-b", "0"] and "passed" in table[2]
    single = run_cli("run", "--target", "clinic-b", "--only", "legacy")
    assert single.returncode == 0
    unknown = run_cli("run", "--target", "clinic-z")
    assert unknown.returncode == 3 and "no target named 'clinic-z'" in unknown.stderr


@pytest.mark.e2e
def test_targets_are_partitions_when_the_definitions_load_with_them(
    demo_secrets, tmp_path, monkeypatch, artifacts_dir
):
    """A fresh process loads the definitions with RESTORE_TARGETS: every asset is partitioned
    by target, and a run of one target materialises that partition only."""
    from dagster import AssetKey, DagsterInstance

    from restore_assets_tests.conftest import run_cli_process

    root = tmp_path / "Secrets"
    shutil.copytree(demo_secrets, root / "clinic-b")
    monkeypatch.setenv("SECRETS_DIR", str(root))
    monkeypatch.setenv("RESTORE_TARGETS", targets_file(tmp_path, TWO_CLINICS)["RESTORE_TARGETS"])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    done = run_cli_process("run", "--target", "clinic-b", "--only", "legacy")
    assert done.returncode == 0, done.stdout + done.stderr
    instance = DagsterInstance.get()
    (run,) = instance.get_runs()
    assert run.tags["dagster/partition"] == "clinic-b"
    seed = AssetKey(["legacy", "seed"])
    assert instance.get_materialized_partitions(seed) == {"clinic-b"}


@pytest.mark.slow
def test_without_targets_yaml_the_default_target_prints_and_files_as_before(
    secrets_dir, artifacts_dir
):
    """The environment's target is the target `default` (one code path for every target), but
    a setup without targets.yaml prints and files exactly as before targets had names: no
    target header or summary table, evidence and baseline_search.log directly under
    db-restore/, the plan titled `default`; its runs are the partition `default`."""
    from dagster import DagsterInstance

    plan = run_cli("plan", "--only", "legacy")
    assert plan.stdout.startswith("# Restore plan — default\n") and not plan.stdout.endswith("\n\n")
    done = run_cli("run", "--only", "legacy")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("step / check") and "== target" not in done.stdout
    assert "target  exit  result" not in done.stdout
    root = artifacts_dir / "parity-manual" / "db-restore"
    folder = Path(lines[-1].removeprefix("evidence: "))
    assert folder.parent == root and (folder / "README.md").is_file()
    assert not (root / "default").exists()
    run = DagsterInstance.get().get_runs(limit=1)[0]
    assert run.tags["dagster/partition"] == "default"
    assert run.tags["restore_assets/restored.legacy"] == "default"
