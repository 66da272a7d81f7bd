"""The code location loads as Dagster would load it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey

from restore_assets.definitions import defs
from restore_assets.settings import DEFAULT_SENSOR_INTERVAL_SECONDS

REPO = Path(__file__).resolve().parents[1]


def test_definitions_hold_the_legacy_chain_and_job():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"legacy/schema", "legacy/seed", "legacy/facility_num"} <= keys
    assert graph.get(AssetKey(["legacy", "facility_num"])).parent_keys == {
        AssetKey(["legacy", "seed"])
    }
    legacy_job = defs.resolve_job_def("restore_legacy")
    selected = {k.to_user_string() for k in legacy_job.asset_layer.executable_asset_keys}
    assert selected == {
        "secrets/legacy_schema_sql",  # observed in the same run: lineage to the exact sha256
        "secrets/legacy_seed_sql",
        "legacy/schema",
        "legacy/seed",
        "legacy/facility_num",
    }


def test_every_job_carries_the_sides_it_restores():
    """The whole-chain job vets both sides' Secrets before either side touches anything."""
    tags = {
        name: defs.resolve_job_def(name).tags.get("restore_assets/sides")
        for name in ("restore_legacy", "restore_modernized", "restore_all")
    }
    assert tags == {
        "restore_legacy": "legacy",
        "restore_modernized": "modernized",
        "restore_all": "legacy,modernized",
    }


def test_the_runbook_core_imports_without_dagster():
    """The core (runbook/, pg/, flyway/, settings, errors) and the CLI's non-run commands never
    import Dagster."""
    script = (
        "import sys, pkgutil, importlib\n"
        "sys.modules['dagster'] = None\n"
        "import restore_assets.runbook, restore_assets.pg, restore_assets.flyway\n"
        "names = []\n"
        "for package in (restore_assets.runbook, restore_assets.pg, restore_assets.flyway):\n"
        "    prefix = package.__name__ + '.'\n"
        "    names += [m.name for m in pkgutil.walk_packages(package.__path__, prefix)]\n"
        "core = ['restore_assets.settings', 'restore_assets.named_targets', 'restore_assets.cli',\n"
        "        'restore_assets.redaction']\n"
        "for name in names + core:\n"
        "    importlib.import_module(name)\n"
        "print(sum(n.startswith('restore_assets.runbook.') for n in names))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 12  # one module per runbook section


def test_every_step_crosses_the_redaction_boundary():
    """Whatever a step logs or yields reaches Dagster through `shell.redacted_step`: a new step
    without it would be a message path the redactor never sees."""
    from dagster import AssetsDefinition

    steps = [
        a
        for a in defs.assets
        if isinstance(a, AssetsDefinition) and a.is_executable and not a.is_observable
    ]
    assert len(steps) >= 9
    for step in steps:
        assert getattr(step.op.compute_fn.decorated_fn, "redacted", False), step.op.name


@pytest.mark.e2e
def test_dagster_definitions_validate():
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            str(REPO / "workspace.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_instance_config_is_ours_upgraded_and_a_users_own_is_kept(tmp_path, monkeypatch):
    from restore_assets.jobs import _OLD_INSTANCE_CONFIG, INSTANCE_CONFIG, prepare_instance
    from restore_assets.settings import load_settings

    config = tmp_path / "dagster.yaml"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    config.write_text(_OLD_INSTANCE_CONFIG)  # written by an older version: upgraded
    prepare_instance(load_settings().paths)
    assert config.read_text() == INSTANCE_CONFIG
    assert "free_slots_after_run_end_seconds" in INSTANCE_CONFIG
    own = "telemetry:\n  enabled: true\n"  # a user's own: kept
    config.write_text(own)
    prepare_instance(load_settings().paths)
    assert config.read_text() == own


@pytest.mark.slow
@pytest.mark.parametrize(
    "bad", ["POSTGRES_PORT=abc", "RESTORE_SENSOR_INTERVAL_SECONDS=abc", "RESTORE_TARGETS=/no/such"]
)
def test_a_bad_setting_does_not_break_the_code_location(bad, tmp_path):
    """The UI must load to show what is wrong: the sensor keeps the default interval and each
    of its ticks (test_sensor) or runs reports the configuration error naming the variable."""
    name, value = bad.split("=")
    script = (
        "from restore_assets.definitions import defs\n"
        "print(defs.resolve_sensor_def('secrets_sensor').minimum_interval_seconds)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, name: value},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == DEFAULT_SENSOR_INTERVAL_SECONDS
