"""Runbook §0/§1: the baseline files as observable source assets (data version = sha256)."""

import warnings

from dagster import (
    AssetKey,
    BetaWarning,
    DataVersion,
    MetadataValue,
    ObserveResult,
    observable_source_asset,
)

from restore_assets.resources.environment import RestoreEnvironment
from restore_assets.resources.secrets_store import FILE_ROLES, SecretsStore
from restore_assets.settings import LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE, MODERN_SCHEMA_FILE

SECRET_KEYS = {
    LEGACY_SCHEMA_FILE: AssetKey(["secrets", "legacy_schema_sql"]),
    LEGACY_SEED_FILE: AssetKey(["secrets", "legacy_seed_sql"]),
    MODERN_SCHEMA_FILE: AssetKey(["secrets", "modern_schema_sql"]),
}


def _observable(relpath: str):
    key = SECRET_KEYS[relpath]

    @observable_source_asset(
        key=key,
        group_name="secrets",
        description=f"{FILE_ROLES[relpath]}: `{relpath}` under the Secrets root.",
    )
    def _observe(restore: RestoreEnvironment) -> ObserveResult:
        info = SecretsStore(restore.settings()).inspect(relpath)
        status = "ok" if info.usable else "; ".join(info.problems)
        return ObserveResult(
            data_version=DataVersion(info.sha256 or f"unusable: {status}"),
            metadata={
                "path": MetadataValue.path(str(info.path)),
                "status": status,
                "sha256": info.sha256,
                "size": info.size,
                "mode": info.mode,
                "dumped_by": info.dumped_by or "",
                "dumped_from": info.dumped_from or "",
            },
        )

    return _observe


# Observable source assets are "beta" in Dagster 1.13 but are the documented way to version files.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)
    secret_files = [_observable(relpath) for relpath in SECRET_KEYS]
