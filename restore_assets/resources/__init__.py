"""Dagster resources: thin adapters that hand the runbook core its settings, targets, Secrets
store, evidence folder and Flyway container runner. One resource per concern; all of them read
the same `RestoreConfig`, so a run's overrides (from the CLI or the launchpad) reach every step.
"""

from __future__ import annotations

from restore_assets.resources.config import RestoreConfig
from restore_assets.resources.database import PostgresResource
from restore_assets.resources.evidence import EvidenceResource
from restore_assets.resources.flyway import FlywayResource
from restore_assets.resources.secrets import SecretsResource


def restore_resources(config: RestoreConfig | None = None) -> dict[str, object]:
    """The resource set of the code location (and of tests, with `config` fixed in code).
    Unset: `restore` is configured at launch, so the CLI and the UI can override it per run."""
    config = config or RestoreConfig.configure_at_launch()
    return {
        "restore": config,
        "legacy_db": PostgresResource(side="legacy", config=config),
        "modernized_db": PostgresResource(side="modernized", config=config),
        "secrets": SecretsResource(config=config),
        "evidence": EvidenceResource(config=config),
        "flyway": FlywayResource(config=config),
    }
