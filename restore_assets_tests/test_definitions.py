"""The code location loads as Dagster would load it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dagster import AssetKey

from restore_assets.definitions import defs

REPO = Path(__file__).resolve().parents[1]


def test_definitions_hold_the_legacy_chain_and_job():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"legacy/schema", "legacy/seed", "legacy/facility_num"} <= keys
    assert graph.get(AssetKey(["legacy", "facility_num"])).parent_keys == {
        AssetKey(["legacy", "seed"])
    }
    assert defs.resolve_job_def("restore_legacy") is not None


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
