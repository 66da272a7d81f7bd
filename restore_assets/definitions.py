"""The Dagster code location: wiring only."""

from __future__ import annotations

from dagster import Definitions

from restore_assets.assets.legacy import legacy_facility_num, legacy_restore
from restore_assets.assets.modernized import modernized_flyway_history, modernized_schema
from restore_assets.assets.secrets import secret_files
from restore_assets.jobs import all_jobs
from restore_assets.resources.environment import RestoreEnvironment

defs = Definitions(
    assets=[
        *secret_files,
        legacy_restore,
        legacy_facility_num,
        modernized_schema,
        modernized_flyway_history,
    ],
    jobs=all_jobs,
    resources={"restore": RestoreEnvironment()},
)
