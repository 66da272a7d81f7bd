"""The environment contract (DESIGN.md "Configuration"), read once per run for the run's target
(its partition), with the few values a run may override (the CLI passes them; the launchpad
shows them)."""

from pathlib import Path

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from restore_assets.errors import ConfigError
from restore_assets.named_targets import settings_for
from restore_assets.settings import Settings


class RestoreConfig(ConfigurableResource):
    """Overrides of the environment contract; unset: the environment variable applies.
    Passwords are never config: they are read from the environment when the run starts."""

    secrets_dir: str | None = None
    artifacts_dir: str | None = None
    state_dir: str | None = None
    allow_reset: bool | None = None
    terminate_sessions: bool | None = None

    _settings: Settings | None = PrivateAttr(default=None)
    _partition: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._settings = None  # a new run reads the environment afresh
        run = context.run
        self._partition = run.tags.get("dagster/partition") if run is not None else None

    def settings(self) -> Settings:
        if self._settings is None:
            paths = {
                name: Path(value).expanduser().resolve()
                for name in ("secrets_dir", "artifacts_dir", "state_dir")
                if (value := getattr(self, name))
            }
            changes: dict[str, object] = {"paths": paths} if paths else {}
            if self.allow_reset is not None:
                changes["allow_reset"] = self.allow_reset
            if self.terminate_sessions is not None:
                changes["terminate_sessions"] = self.terminate_sessions
            if self._partition is None:
                raise ConfigError(
                    "this run names no target: launch it for a partition (a target of "
                    "RESTORE_TARGETS, or `default` without it)"
                )
            settings = settings_for(self._partition)
            self._settings = settings.with_overrides(**changes) if changes else settings
        return self._settings
