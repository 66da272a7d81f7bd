"""Jobs the CLI, the UI and (later) sensors launch: one per side, and the whole chain."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from restore_assets.assets.secrets import SECRET_KEYS
from restore_assets.settings import LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE

LEGACY_JOB = "restore_legacy"

# Observing the baseline files in the same run records the sha256 each step was built from.
restore_legacy_job = define_asset_job(
    LEGACY_JOB,
    selection=AssetSelection.assets(SECRET_KEYS[LEGACY_SCHEMA_FILE], SECRET_KEYS[LEGACY_SEED_FILE])
    | AssetSelection.groups("legacy"),
    description="Runbook §3: restore the Legacy database from its baseline and verify it.",
)

JOBS_BY_SIDE = {"legacy": LEGACY_JOB}
all_jobs = [restore_legacy_job]
