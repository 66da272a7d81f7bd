"""Who started a run — the auditor's first question — decided here only, from the run's tags.

- the CLI tags its runs `restore_assets/started_by = cli:<OS user>@<host>` (`cli_tag`);
- the secrets sensor tags its requests `sensor:secrets_sensor` (`sensor_tag`), and Dagster
  tags every sensor's runs with `dagster/sensor_name`: `sensor:<name>`;
- a re-execution (Dagster's `dagster/parent_run_id`) is the UI's, or the daemon's automatic
  retry when Dagster numbered it (`dagster/retry_number`), whatever tags it copied from its
  parent;
- anything else was launched from the UI (the launchpad, "Materialize"): `ui`.

The first step of every run writes the answer on the run as `restore_assets/started_by`
(`tag_of`) and at the top of its evidence (README.md, gate_report.json).
"""

from __future__ import annotations

import os
import pwd
import socket
from collections.abc import Mapping

STARTED_BY_TAG = "restore_assets/started_by"
# Dagster's own tags (public names, as the UI shows them).
SENSOR_NAME_TAG = "dagster/sensor_name"
PARENT_RUN_TAG = "dagster/parent_run_id"
RETRY_NUMBER_TAG = "dagster/retry_number"


def cli_tag() -> dict[str, str]:
    """The CLI's runs: the OS user this process runs as (its uid, not $USER, which anyone can
    set) and the host."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    return {STARTED_BY_TAG: f"cli:{user}@{socket.gethostname()}"}


def sensor_tag(name: str) -> dict[str, str]:
    """A sensor's run requests (the daemon adds `dagster/sensor_name` too)."""
    return {STARTED_BY_TAG: f"sensor:{name}"}


def started_by(tags: Mapping[str, str]) -> str:
    parent = tags.get(PARENT_RUN_TAG)
    if parent:
        retry = tags.get(RETRY_NUMBER_TAG)
        if retry:
            return f"daemon:automatic retry {retry} of run {parent}"
        return f"ui:re-execution of run {parent}"
    own = tags.get(STARTED_BY_TAG)
    if own:  # the CLI's, the secrets sensor's, or written by the run's first step
        return own
    sensor = tags.get(SENSOR_NAME_TAG)  # every other sensor's run, as the daemon tags it
    if sensor:
        return f"sensor:{sensor}"
    return "ui"


def tag_of(tags: Mapping[str, str]) -> dict[str, str]:
    """The tag to write on the run, or nothing when it already says so."""
    who = started_by(tags)
    return {} if tags.get(STARTED_BY_TAG) == who else {STARTED_BY_TAG: who}
