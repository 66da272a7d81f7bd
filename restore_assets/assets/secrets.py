"""Runbook §0/§1: the baseline files as observable source assets (data version = sha256), and
the intake that reads a new delivery outside the sensor's tick."""

import json
import warnings

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    BetaWarning,
    DataVersionsByPartition,
    MaterializeResult,
    MetadataValue,
    asset,
    observable_source_asset,
)

from restore_assets.errors import ConfigError
from restore_assets.i18n import _
from restore_assets.resources.config import RestoreConfig
from restore_assets.resources.secrets import SecretsResource
from restore_assets.runbook.baseline_files import FILE_ROLES
from restore_assets.runbook.inbox import unpack_inbox
from restore_assets.runbook.intake import SecretsStore
from restore_assets.settings import (
    LEGACY_SCHEMA_FILE,
    LEGACY_SEED_FILE,
    MODERN_SCHEMA_FILE,
    load_settings,
)

from .partitions import TARGETS
from .shell import redacted_metadata, redacted_step, table

SECRET_KEYS = {
    LEGACY_SCHEMA_FILE: AssetKey(["secrets", "legacy_schema_sql"]),
    LEGACY_SEED_FILE: AssetKey(["secrets", "legacy_seed_sql"]),
    MODERN_SCHEMA_FILE: AssetKey(["secrets", "modern_schema_sql"]),
}
DATA_VERSION_TAG = "dagster/data_version"  # Dagster's tag for an observation's version


def watched_root() -> str:
    """The Secrets root this code location reads, for descriptions in the UI (a bad setting
    must not stop the UI from loading: every run reports it with its variable name)."""
    try:
        return str(load_settings().paths.secrets_dir)
    except ConfigError:
        return "SECRETS_DIR (currently invalid: see any run's error)"


def _observable(relpath: str):
    @observable_source_asset(
        key=SECRET_KEYS[relpath],
        group_name="secrets",
        description=f"{FILE_ROLES[relpath]}: `{relpath}` under the Secrets root "
        f"`{watched_root()}`.",
        partitions_def=TARGETS,
    )
    def _observe(context, secrets: SecretsResource) -> DataVersionsByPartition:
        info = secrets.inspect(relpath)
        metadata = {
            "path": MetadataValue.path(str(info.path)),
            "status": info.status,
            "sha256": info.sha256,
            "size": info.size,
            "mode": info.mode,
            "dumped_by": info.dumped_by or "",
            "dumped_from": info.dumped_from or "",
        }
        # A partitioned observation returns versions only: the observation is logged here, so
        # the UI shows where the file is and what was found, with the version Dagster keeps;
        # through the run's redactor, like every step's results (its header is the file's text).
        context.log_event(
            AssetObservation(
                asset_key=SECRET_KEYS[relpath],
                partition=context.partition_key,
                tags={DATA_VERSION_TAG: info.sha256 or f"unusable: {info.status}"},
                metadata=redacted_metadata(metadata, secrets.config.settings().redactor),
            )
        )
        with warnings.catch_warnings():  # beta in Dagster 1.13, the documented way
            warnings.simplefilter("ignore", BetaWarning)
            return DataVersionsByPartition({})

    return _observe


# Observable source assets are "beta" in Dagster 1.13 but are the documented way to version files.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)
    secret_files = [_observable(relpath) for relpath in SECRET_KEYS]


INTAKE = AssetKey(["secrets", "intake"])
INBOX_TAG = "restore_assets/inbox"  # the ZIPs the sensor saw settled: name -> [size, mtime_ns]


@asset(
    key=INTAKE,
    group_name="intake",
    description=_(
        "§0 outside the sensor's tick: unpack the encrypted ZIPs the sensor saw settled "
        "in the inbox, then read every baseline file (sha256, header and footer, the psql scan) "
        "into the cache, so the sensor's next look finds them read and can request the restore."
    ),
    partitions_def=TARGETS,
)
@redacted_step
def secrets_intake(context: AssetExecutionContext, restore: RestoreConfig) -> MaterializeResult:
    settings = restore.settings()
    settled = json.loads(context.run.tags.get(INBOX_TAG) or "{}")
    unpacked = unpack_inbox(settings, settled) if settled else []
    for result in unpacked:
        context.log.info(result.line())
    files = SecretsStore(settings.paths).inspect_all()
    return MaterializeResult(
        metadata={
            "inbox": table(
                [{"zip": r.name, "status": r.status, "detail": r.detail} for r in unpacked]
            ),
            "files": table([f.as_evidence() | {"status": f.status} for f in files]),
        }
    )
