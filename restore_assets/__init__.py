"""restore_assets: the OpenDolphin DB baseline-restore runbook as Dagster assets."""

__version__ = "0.1.0"
