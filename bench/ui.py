"""`make bench`'s UI figure: the whole chain launched the way the UI launches it (a GraphQL
`launchRun` of `restore_all`, queued, dequeued by the daemon, executed by a run worker), against
the same chain from the CLI. `restore-assets ui` serves it, on the bench's own instance.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

_LAUNCH = """
mutation Launch($selector: JobOrPipelineSelector!) {
  launchRun(executionParams: {selector: $selector, runConfigData: {}}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
_RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status creationTime startTime endTime }
  }
}"""
_SELECTOR = {
    "repositoryLocationName": "restore_assets",
    "repositoryName": "__repository__",
    "jobName": "restore_all",
}
_FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


class _Webserver:
    def __init__(self, env: dict[str, str], log: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        cli = [sys.executable, "-m", "restore_assets.cli", "ui", "--"]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*cli, "-h", "127.0.0.1", "-p", str(self.port)],
                env={**env, "RESTORE_SENSOR_INTERVAL_SECONDS": "3600"},  # only our launches
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def graphql(self, query: str, **variables) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["data"]

    def wait_up(self, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(urllib.error.URLError, ConnectionError, KeyError):
                if self.graphql("{ version }")["version"]:
                    return
            time.sleep(1)
        raise RuntimeError(f"restore-assets ui did not answer on {self.url} in {seconds:.0f}s")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def ui_chain(env: dict[str, str], log: Path, repeats: int = 3) -> list[dict[str, float]]:
    """`repeats` UI-style launches of the whole chain, one after another: per run the seconds
    from the launch request to the end, and the run's own start to end."""
    server = _Webserver(env, log)
    runs = []
    try:
        server.wait_up()
        for _ in range(repeats):
            launched = server.graphql(_LAUNCH, selector=_SELECTOR)["launchRun"]
            if launched["__typename"] != "LaunchRunSuccess":
                raise RuntimeError(f"launchRun: {launched}")
            run_id = launched["run"]["runId"]
            while True:
                run = server.graphql(_RUN, runId=run_id)["runOrError"]
                if run["status"] in _FINISHED:
                    break
                time.sleep(0.2)
            if run["status"] != "SUCCESS":
                raise RuntimeError(f"UI-launched run {run_id} ended {run['status']}; see {log}")
            runs.append(
                {
                    "request_to_end": round(run["endTime"] - run["creationTime"], 3),
                    "start_to_end": round(run["endTime"] - run["startTime"], 3),
                }
            )
            print(f"  UI-launched restore_all: {runs[-1]}", flush=True)
    finally:
        server.stop()
    return runs
