"""The Secrets store as a resource: inspection of single files (the observations)."""

from dagster import ConfigurableResource, ResourceDependency

from restore_assets.resources.config import RestoreConfig
from restore_assets.runbook.baseline_files import SecretFile
from restore_assets.runbook.intake import SecretsStore


class SecretsResource(ConfigurableResource):
    config: ResourceDependency[RestoreConfig]

    def inspect(self, relpath: str) -> SecretFile:
        return SecretsStore(self.config.settings().paths).inspect(relpath)
