"""Named targets as partitions (issue 12): with RESTORE_TARGETS, every asset of the chain is
partitioned by target, so the UI shows each clinic's restores, checks and gates on their own.

Without named targets nothing is partitioned: the single target behaves exactly as before. The
run's partition reaches every resource through `RestoreConfig` (the `dagster/partition` tag).
"""

from dagster import StaticPartitionsDefinition

from restore_assets.errors import ConfigError
from restore_assets.named_targets import load_targets
from restore_assets.settings import load_settings


def _target_partitions() -> StaticPartitionsDefinition | None:
    try:
        named = load_targets(load_settings())
    except ConfigError:
        return None  # the UI still loads; every run then reports the error, naming the field
    return StaticPartitionsDefinition(sorted(named)) if named else None


TARGETS = _target_partitions()


def pool(name: str) -> str | None:
    """One target: Dagster's pool keeps one step per database at a time. Named targets: no pool
    (it would serialise every clinic); the daemon's run queue runs one run per target at a time
    (`dagster/partition` tag limit, jobs.INSTANCE_CONFIG) and the target's own lock serialises
    CLI runs of one target."""
    return None if TARGETS else name
