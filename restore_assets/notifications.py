"""The Dagster shell's side of telling Ops (`runbook/notify.py` builds, dedupes and delivers):
which settings an event goes out with, and one guard, so that a notification never fails the
step, the hook or the sensor tick that sends it.

Where each event comes from:
- blocked / still waiting: `secrets_sensor`'s look at the Secrets store, and a run stopped by
  `SecretsBlocked` (`assets/stops.record_stop`) — the same content, so said once;
- failed: `assets/stops.record_stop` (a step, the failure hook, a side's blocking check) and
  the gates' verdict (`assets/gates.py`);
- crashed: `recovery.free_dead_runs`, where a run whose process died is marked failed;
- passed: the gates' verdict.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from restore_assets.runbook import notify
from restore_assets.runbook.notify import Event
from restore_assets.settings import Settings

log = logging.getLogger(__name__)


def tell(settings: Settings | None, event: Callable[[Settings], Event]) -> None:
    """Build the event with `settings` and send it; whatever goes wrong is logged, never raised
    (a bug here must not turn a recorded stop into a different one)."""
    if settings is None:
        return
    try:
        notify.send(settings, event(settings))
    except Exception as exc:  # noqa: BLE001 - the restore's outcome must not depend on it
        log.error("notification not sent: %s", settings.redactor(f"{type(exc).__name__}: {exc}"))


def run_settings(context) -> Settings | None:
    """The run's own settings (its target, its overrides), from a step's or a hook's context:
    every step that records a stop holds the evidence resource, whose config they are."""
    try:
        return context.resources.evidence.config.settings()
    except Exception:  # noqa: BLE001 - no evidence resource, no settings: nothing to send with
        log.warning("no run settings here: no notification")
        return None


def target_settings(run) -> Settings | None:
    """The settings of a run's target (its partition), read now: for a run found by another
    process (a dead run the sensor or the CLI marks failed)."""
    from restore_assets.named_targets import settings_for
    from restore_assets.recovery import PARTITION_TAG

    target = run.tags.get(PARTITION_TAG)
    if target is None:
        return None
    try:
        return settings_for(target)
    except Exception:  # noqa: BLE001 - a bad setting is reported by every run and tick
        return None


def tell_about_secrets(settings: Settings, problems: dict[str, str], since: str) -> None:
    """The sensor's look at one target's Secrets store (see `notify.tell_about_secrets`)."""
    try:
        notify.tell_about_secrets(settings, problems, since, dt.datetime.now(dt.UTC))
    except Exception as exc:  # noqa: BLE001 - a tick must go on watching
        log.error("notification not sent: %s", settings.redactor(f"{type(exc).__name__}: {exc}"))


def tell_crashed(run, reason: str, retry: str | None = None) -> None:
    """A run whose process died; `retry`: whether it is retried (the caller's decision)."""
    tell(
        target_settings(run),
        lambda s: notify.crashed_event(s, run.run_id, run.job_name, reason, retry),
    )
