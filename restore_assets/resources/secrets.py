"""The Secrets store as a resource: intake of a run's sides, and inspection of single files."""

from collections.abc import Iterable

from dagster import ConfigurableResource, ResourceDependency

from restore_assets.resources.config import RestoreConfig
from restore_assets.runbook.baseline_files import SecretFile
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.runbook.intake import Intake, SecretsStore, intake


class SecretsResource(ConfigurableResource):
    config: ResourceDependency[RestoreConfig]

    def store(self) -> SecretsStore:
        return SecretsStore(self.config.settings())

    def inspect(self, relpath: str) -> SecretFile:
        return self.store().inspect(relpath)

    def intake(self, sides: Iterable[str], evidence: EvidenceStore) -> Intake:
        return intake(self.config.settings(), sides, evidence)
