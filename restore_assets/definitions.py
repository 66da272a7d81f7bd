"""The Dagster code location: wiring only."""

from __future__ import annotations

from dagster import Definitions

from restore_assets.assets.legacy import legacy_facility_num, legacy_restore
from restore_assets.assets.secrets import secret_files
from restore_assets.jobs import all_jobs
from restore_assets.resources.environment import RestoreEnvironment

defs = Definitions(
    assets=[*secret_files, legacy_restore, legacy_facility_num],
    jobs=all_jobs,
    resources={"restore": RestoreEnvironment()},
)
