"""A database as a resource: the embedded server is started (and the runbook's databases
created) at most once per run, on first use — not on every call, and not at all for a run that
intake stops before any database is touched."""

from dagster import ConfigurableResource, InitResourceContext, ResourceDependency
from pydantic import PrivateAttr

from restore_assets.pg.database import Database
from restore_assets.resources.config import RestoreConfig


class PostgresResource(ConfigurableResource):
    side: str  # "legacy" or "modernized": which half of the environment contract
    config: ResourceDependency[RestoreConfig]

    _database: Database | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._database = None

    @property
    def database(self) -> Database:
        if self._database is None:
            settings = self.config.settings()
            self._database = Database(getattr(settings, self.side), settings.pg)
        return self._database
