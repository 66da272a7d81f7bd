"""Every asset of the chain is partitioned by target (issue 12, issue 19): the UI shows each
target's restores, checks and gates on their own, and a run names its target by its partition.
Without RESTORE_TARGETS the one partition is `default`.

The partitions are dynamic: the definitions read nothing at import, and the same graph serves
one target or many. The targets are registered in the instance by whoever launches runs (the
CLI and `make ui` before they start, the sensor on every tick), from the settings of that moment.
One run per target at a time: the daemon's run queue (`dagster/partition` tag limit,
jobs.INSTANCE_CONFIG), the CLI's wait (recovery.wait_for_target) and the target's own lock.
"""

from dagster import DynamicPartitionsDefinition

TARGETS = DynamicPartitionsDefinition(name="targets")


def register_targets(instance, names) -> list[str]:
    """Add the targets the instance does not know yet; returns those added."""
    known = set(instance.get_dynamic_partitions(TARGETS.name))
    new = [name for name in names if name not in known]
    if new:
        instance.add_dynamic_partitions(TARGETS.name, new)
    return new
