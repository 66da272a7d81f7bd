"""Jobs the CLI and the UI launch: one per side, and the whole chain."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import AssetSelection, DagsterInstance, define_asset_job

from restore_assets.assets.secrets import INTAKE, SECRET_KEYS
from restore_assets.assets.shell import SIDES_TAG
from restore_assets.assets.stops import record_unexpected_failure
from restore_assets.files import keep_private, private_folder
from restore_assets.i18n import _
from restore_assets.pg.database import close_state_dir
from restore_assets.runbook.baseline_files import SIDE_FILES
from restore_assets.settings import Paths

LEGACY_JOB = "restore_legacy"
MODERNIZED_JOB = "restore_modernized"
ALL_JOB = "restore_all"


# Every stop is recorded, unexpected failures too (stops.record_unexpected_failure).
STOPS_RECORDED = {record_unexpected_failure}


def _side(side: str) -> AssetSelection:
    # Observing the baseline files in the same run records the sha256 each step was built from.
    files = AssetSelection.assets(*(SECRET_KEYS[f] for f in SIDE_FILES[side]))
    return files | AssetSelection.groups(side)


restore_legacy_job = define_asset_job(
    LEGACY_JOB,
    selection=_side("legacy"),
    tags={SIDES_TAG: "legacy"},
    hooks=STOPS_RECORDED,
    description=_("Runbook §3: restore the Legacy database from its baseline and verify it."),
)
restore_modernized_job = define_asset_job(
    MODERNIZED_JOB,
    selection=_side("modernized"),
    tags={SIDES_TAG: "modernized"},
    hooks=STOPS_RECORDED,
    description=_(
        "Runbook §4: restore the Modernized baseline, Flyway baseline + migrate, verify."
    ),
)
restore_all_job = define_asset_job(
    ALL_JOB,
    selection=_side("legacy")
    | _side("modernized")
    | AssetSelection.groups("sync", "reports", "gates"),
    # Both sides' Secrets are vetted before either side touches anything (runbook §0).
    tags={SIDES_TAG: "legacy,modernized"},
    hooks=STOPS_RECORDED,
    description=_("The whole chain: both sides, the account sync, the reports and the gates (§6)."),
)

FOLLOWUP_JOB = "restore_followup"
restore_followup_job = define_asset_job(
    FOLLOWUP_JOB,
    selection=AssetSelection.groups("sync", "reports", "gates"),  # restores nothing
    hooks=STOPS_RECORDED,
    description=_("After one side was restored again: §4.4 sync, §2 reports and the §6 gates."),
)

INTAKE_JOB = "secrets_intake"
secrets_intake_job = define_asset_job(
    INTAKE_JOB,
    selection=AssetSelection.assets(INTAKE),  # touches no database
    description=_(
        "§0: unpack the settled ZIPs of the inbox and read a new delivery, outside the "
        "sensor's tick (requested by secrets_sensor)."
    ),
)

JOBS_BY_SIDE = {"legacy": LEGACY_JOB, "modernized": MODERNIZED_JOB}
all_jobs = [
    restore_legacy_job,
    restore_modernized_job,
    restore_all_job,
    restore_followup_job,
    secrets_intake_job,
]


# One run per target at a time, whoever launched it: the queue's limit per `dagster/partition`
# (the target) for runs the daemon starts, `recovery.wait_for_target` for the CLI's. Run
# monitoring (the daemon, in `make ui`) fails runs stuck starting, and stops a run over its
# `dagster/max_runtime` tag (RESTORE_MAX_RUNTIME_SECONDS, set by the sensors), looking every
# 15 s; runs whose process died are marked failed by `recovery.free_dead_runs`, and the
# sensor requests them again (RESTORE_CRASH_RETRIES). Dagster's own run retries stay off: they
# cannot tell a run stopped over its maximum runtime from one whose process died.
INSTANCE_CONFIG = """# written by restore_assets (delete this line to keep your own edits)
telemetry:
  enabled: false
nux:
  enabled: false
concurrency:
  runs:
    tag_concurrency_limits:  # one run per target (partition) at a time
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
run_queue:
  dequeue_interval_seconds: 1  # a queued run starts within a second, not five
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  free_slots_after_run_end_seconds: 30
  poll_interval_seconds: 15  # a run over its maximum runtime is stopped within 15 s
"""
_OLD_INSTANCE_CONFIG = (  # written by early versions, before the "written by" line
    "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
)


def keep_instance_private(instance: DagsterInstance) -> None:
    """The Dagster home `instance` keeps its storage in, this user's only (0700, and what is
    directly in it 0700/0600), whoever started the process: `dagster dev` or a daemon started
    by hand keep their umask (022: SQLite files 0644, the home 0755), not `restore-assets`'s
    077. Every step (`EvidenceResource.for_run`) and sensor tick calls it."""
    keep_private(Path(instance.root_directory), entries=True)


def prepare_instance(paths: Paths):
    """The Dagster instance the CLI and `make ui` record runs in (DAGSTER_HOME, else
    RESTORE_STATE_DIR/dagster_home), with the instance settings above. Both folders are this
    user's only: Dagster's SQLite files hold every run's counts and target details."""
    home = paths.dagster_home
    # For DagsterInstance.get() below and every process it starts (`dagster dev`, runs).
    os.environ["DAGSTER_HOME"] = str(home)
    close_state_dir(paths.state_dir)
    keep_private(home)
    with private_folder(home) as held:  # by descriptor, as keep_private checked it
        try:
            with held.open_read("dagster.yaml") as handle:
                current = handle.read().decode()
        except FileNotFoundError:
            current = None
        ours = current in (None, _OLD_INSTANCE_CONFIG) or current.startswith("# written by")
        if ours and current != INSTANCE_CONFIG:
            held.write("dagster.yaml", lambda out: out.write(INSTANCE_CONFIG.encode()))
    return DagsterInstance.get()
