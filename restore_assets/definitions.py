"""The Dagster code location: wiring only."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from restore_assets.assets.gates import gates_report
from restore_assets.assets.legacy import legacy_facility_num, legacy_restore
from restore_assets.assets.modernized import modernized_flyway_history, modernized_schema
from restore_assets.assets.reports import ddl_inventory, missing_objects
from restore_assets.assets.secrets import secret_files, secrets_intake
from restore_assets.assets.sync import sync_facility_users
from restore_assets.console import brief_console_logger
from restore_assets.jobs import all_jobs
from restore_assets.resources import restore_resources
from restore_assets.sensors import followup_sensor, max_runtime_sensor, secrets_sensor

defs = Definitions(
    assets=[
        *secret_files,
        secrets_intake,
        legacy_restore,
        legacy_facility_num,
        modernized_schema,
        modernized_flyway_history,
        sync_facility_users,
        ddl_inventory,
        missing_objects,
        gates_report,
    ],
    jobs=all_jobs,
    sensors=[secrets_sensor, followup_sensor, max_runtime_sensor],
    resources=restore_resources(),
    loggers={"console": brief_console_logger},
    # One process per run, as the CLI runs it: a step per process re-imports Dagster and the
    # project each time (a UI run took 36 s where the CLI takes 7 s); steps run one after the
    # other either way, since each side's steps share one target.
    executor=in_process_executor,
)
