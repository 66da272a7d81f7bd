"""`make bench`: the project's restore against raw psql on the same files and server, measured.

Measures; asserts nothing (a benchmark, never a timed test). Every figure but the sensor tick is a
whole process, run against the embedded server that this process starts and holds, so that all
children share one warm server:
- raw `psql -X -1 -v ON_ERROR_STOP=1 -f schema -f seed` into a fresh database of its own (A)
  against `restore-assets run --only legacy --allow-reset` (B), alternating A B A B after one
  unmeasured B, with the sha256 cache cleared before each B (Secrets never seen before); then one
  B more with the cache warm (what a run costs after the sensor has looked);
- peak RSS of B's process tree (psutil, sampled every 50 ms: the sum over the process and its
  children, psql and pg_dump included) and of its largest process;
- each phase before and around psql, from the run's own evidence (`phases (s)` of the restore
  step) and Dagster's event log (process start to the first step = start-up);
- the Secrets sensor's tick over the biggest seed, in this process (cold, then cached);
- `restore-assets flyway info` and `migrate` (nothing pending), the demo chain from the CLI, and
  both sides in one run against each side alone.
Seeds come from the demo builder and are cached under `.restore_state/bench/seeds/`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

BYTES_PER_PATIENT = 813  # the demo builder's Legacy seed grows by about this much per patient
SIZES_MB = (100, 500)
QUICK_SIZES_MB = (2, 10)
BIG_MB = 2000
RAW_DB = "restore_bench_raw"


@dataclass
class Sample:
    """One whole-process run."""

    wall: float
    code: int
    peak_tree_mb: float  # largest sum of RSS over the process and its children at one instant
    peak_process_mb: float  # largest RSS of any single process of the tree
    phases: dict[str, float] = field(default_factory=dict)


def measure(cmd: list[str], env: dict[str, str], log: Path) -> tuple[Sample, float]:
    """Run `cmd` to its end, sampling its process tree's memory; returns the sample and the
    wall-clock time it was started at (to place Dagster's event timestamps)."""
    peak_tree = peak_one = 0.0
    with log.open("ab") as out:
        launched = time.time()
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_tree, peak_one
            root = psutil.Process(proc.pid)
            while not done.wait(0.05):
                try:
                    rss = [p.memory_info().rss for p in [root, *root.children(recursive=True)]]
                except psutil.Error:
                    continue  # a child ended between listing and reading: next sample
                peak_tree = max(peak_tree, sum(rss) / 1e6)
                peak_one = max(peak_one, max(rss) / 1e6)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        wall = time.monotonic() - started
        done.set()
        sampler.join()
    return Sample(round(wall, 3), code, round(peak_tree, 1), round(peak_one, 1)), launched


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


class Bench:
    """The bench's own state dir, the embedded server it holds, and the commands it times."""

    def __init__(self, root: Path):
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("POSTGRES_", "MODERNIZED_POSTGRES_", "RESTORE_", "FLYWAY_"))
            and k not in ("SECRETS_DIR", "DAGSTER_HOME")
        }
        self.env.update(
            RESTORE_STATE_DIR=str(root / "state"),
            RESTORE_ARTIFACTS_DIR=str(root / "artifacts"),
            DAGSTER_HOME=str(root / "state" / "dagster_home"),
            RESTORE_DOTENV=str(root / "no.env"),  # never a developer's .env
            SECRETS_DIR=str(root / "no-secrets-yet"),
        )
        os.environ.clear()
        os.environ.update(self.env)
        from restore_assets.pg.database import Database
        from restore_assets.settings import load_settings

        self.settings = load_settings()
        self.db = Database(self.settings.legacy, self.settings.pg)
        self.db.endpoint()  # starts the server; held until this process exits
        self.cli = [sys.executable, "-m", "restore_assets.cli"]  # what `restore-assets` runs

    def seed(self, size_mb: float) -> Path:
        """Demo Secrets with a Legacy seed of about `size_mb`, built once and kept."""
        from restore_assets.demo.build import build_demo_secrets

        patients = max(1, round(size_mb * 1e6 / BYTES_PER_PATIENT))
        secrets = self.root / "seeds" / str(patients) / "Secrets"
        if not (secrets / ".complete").exists():
            shutil.rmtree(secrets.parent, ignore_errors=True)
            print(f"building a {size_mb:g} MB seed ({patients} patients)…", flush=True)
            build_demo_secrets(self.settings, secrets, patients)
            (secrets / ".complete").touch()
        return secrets

    def env_for(self, secrets: Path) -> dict[str, str]:
        return {**self.env, "SECRETS_DIR": str(secrets)}

    def forget_hashes(self) -> None:
        (self.root / "state" / "sha256-cache.json").unlink(missing_ok=True)

    def raw_psql(self, secrets: Path) -> Sample:
        """A: psql alone, the physical limit, into a database of its own on the same server."""
        from restore_assets.demo.build import ScratchDatabase
        from restore_assets.pg.clients import client_binary
        from restore_assets.settings import LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE

        psql = client_binary("psql", self.settings.tools.psql)
        cmd = [psql, "-X", "-1", "-v", "ON_ERROR_STOP=1"]
        cmd += ["-f", str(secrets / LEGACY_SCHEMA_FILE), "-f", str(secrets / LEGACY_SEED_FILE)]
        with ScratchDatabase(self.db, RAW_DB):  # created empty, dropped after
            sample, _ = measure(cmd, self.db.client_env(dbname=RAW_DB), self.logs / "psql.log")
        return sample

    def project(self, secrets: Path, *args: str, cold: bool = True) -> Sample:
        """B: `restore-assets ARGS` as a whole process; phases from its evidence and events."""
        if cold:
            self.forget_hashes()
        log = self.logs / "project.log"
        offset = log.stat().st_size if log.exists() else 0
        sample, launched = measure([*self.cli, *args], self.env_for(secrets), log)
        output = log.read_bytes()[offset:].decode("utf-8", "replace")
        if sample.code != 0:
            print(f"  exit {sample.code}: see {log}", flush=True)
        sample.phases = self.phases(output, launched, launched + sample.wall)
        shutil.rmtree(secrets / "backups", ignore_errors=True)  # the bench keeps no backups
        return sample

    def phases(self, output: str, launched: float, ended: float) -> dict[str, float]:
        """The restore step's own phases (evidence) and Dagster's start-up and steps (events)."""
        phases: dict[str, float] = {}
        folder = next(
            (
                line.split(": ", 1)[1]
                for line in output.splitlines()
                if line.startswith("evidence:")
            ),
            None,
        )
        if folder is None:
            return phases  # not a Dagster run (flyway), or it failed before its evidence
        if (Path(folder) / ".steps.json").exists():
            steps = json.loads((Path(folder) / ".steps.json").read_text())
            for step in ("legacy/restore", "modernized/restore"):
                text = steps.get(step, {}).get("phases (s)", "")
                for part in filter(None, text.split(", ")):
                    name, _, value = part.partition("=")
                    phases[f"{step.split('/')[0]} {name}"] = float(value)
        from dagster import DagsterEventType, DagsterInstance

        with DagsterInstance.get() as instance:
            runs = instance.get_runs(limit=1)
            if not runs:
                return phases
            entries = [e for e in instance.all_logs(runs[0].run_id) if e.dagster_event]
        starts = [
            e.timestamp
            for e in entries
            if e.dagster_event.event_type == DagsterEventType.STEP_START
        ]
        ends = [
            e.timestamp
            for e in entries
            if e.dagster_event.event_type
            in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE)
        ]
        if starts:
            phases["start-up (process start to first step)"] = round(min(starts) - launched, 3)
        if ends:
            phases["shut-down (run end to process exit)"] = round(ended - max(ends), 3)
        for e in entries:
            if e.dagster_event.event_type == DagsterEventType.STEP_SUCCESS:
                data = e.dagster_event.event_specific_data
                phases[f"step {e.step_key}"] = round(data.duration_ms / 1000, 3)
        return phases

    def sensor_ticks(self, secrets: Path, cached_ticks: int = 5) -> dict[str, object]:
        """The Secrets sensor, ticked like the daemon does: cold (nothing hashed yet), then with
        the cache. In this process; the files are in the page cache either way."""
        from dagster import DagsterInstance, build_sensor_context

        from restore_assets.sensors import secrets_sensor

        os.environ["SECRETS_DIR"] = str(secrets)
        instance = DagsterInstance.ephemeral()
        cursor = None

        def tick() -> float:
            nonlocal cursor
            started = time.perf_counter()
            with build_sensor_context(instance=instance, cursor=cursor) as context:
                cursor = secrets_sensor(context).cursor
            return time.perf_counter() - started

        tick()  # first sight: the files are noted, not yet settled
        self.forget_hashes()
        cold = tick()
        cached = [tick() for _ in range(cached_ticks)]
        os.environ["SECRETS_DIR"] = self.env["SECRETS_DIR"]
        return {"cold_s": round(cold, 3), "cached_ms": stats([c * 1000 for c in cached])}


def seed_mb(secrets: Path) -> float:
    from restore_assets.settings import LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE

    return round(
        sum((secrets / f).stat().st_size for f in (LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE)) / 1e6, 1
    )


def restore_pairs(bench: Bench, secrets: Path, pairs: int) -> dict[str, object]:
    legacy = ("run", "--only", "legacy", "--allow-reset")
    bench.project(secrets, *legacy)  # unmeasured: the target then holds this seed already
    raw, cold = [], []
    for index in range(pairs):
        raw.append(bench.raw_psql(secrets))
        cold.append(bench.project(secrets, *legacy))
        print(
            f"  pair {index + 1}: psql {raw[-1].wall:.2f}s, project {cold[-1].wall:.2f}s",
            flush=True,
        )
    warm = bench.project(secrets, *legacy, cold=False)
    print(f"  project, sha256 cache warm: {warm.wall:.2f}s", flush=True)
    return {
        "seed_mb": seed_mb(secrets),
        "raw": [asdict(s) for s in raw],
        "project": [asdict(s) for s in cold],
        "warm": asdict(warm),
    }


def whole_processes(bench: Bench, secrets: Path, repeats: int) -> dict[str, object]:
    """Both sides in one run against each side alone; Flyway's info and migrate."""
    out: dict[str, object] = {"seed_mb": seed_mb(secrets)}
    commands = {
        "both sides (run)": ("run", "--allow-reset"),
        "legacy alone (run --only legacy)": ("run", "--only", "legacy", "--allow-reset"),
        "modernized alone (run --only modernized)": (
            "run",
            "--only",
            "modernized",
            "--allow-reset",
        ),
    }
    for name, args in commands.items():
        samples = [bench.project(secrets, *args, cold=False) for _ in range(repeats)]
        out[name] = [asdict(s) for s in samples]
        print(f"  {name}: {[s.wall for s in samples]}", flush=True)
    for action in ("info", "migrate"):
        samples = [bench.project(secrets, "flyway", action, cold=False) for _ in range(5)]
        out[f"flyway {action}"] = [asdict(s) for s in samples]
        print(f"  flyway {action}: {[s.wall for s in samples]}", flush=True)
    return out


STARTUP_STEPS = {  # whole processes, each adding one layer of the CLI's fixed cost
    "python alone": "pass",
    "+ import dagster": "import dagster",
    "+ import the code location": "import restore_assets.definitions",
    "+ the Dagster instance (sqlite storage)": (
        "import restore_assets.definitions; from dagster import DagsterInstance; "
        "DagsterInstance.get()"
    ),
}


def startup_anatomy(bench: Bench, repeats: int = 3) -> dict[str, list[float]]:
    """Where the fixed cost before the first step goes, layer by layer (medians in the report)."""
    out = {}
    for name, code in STARTUP_STEPS.items():
        walls = []
        for _ in range(repeats):
            sample, _ = measure([sys.executable, "-c", code], bench.env, bench.logs / "start.log")
            walls.append(sample.wall)
        out[name] = walls
        print(f"  {name}: {walls}", flush=True)
    return out


def profile_restore(bench: Bench, secrets: Path, out: Path) -> Path:
    """One `run --only legacy` under pyinstrument: the profile the report's gaps point to."""
    path = (out / "benchmarks-profile.txt").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    cli = ["-m", "restore_assets.cli", "run", "--only", "legacy", "--allow-reset"]
    cmd = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(path), *cli]
    measure(cmd, bench.env_for(secrets), bench.logs / "profile.log")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"seeds of {QUICK_SIZES_MB} MB")
    parser.add_argument("--with-2gb", action="store_true", help=f"add a {BIG_MB} MB seed")
    parser.add_argument("--sizes", type=float, nargs="+", help="seed sizes in MB (overrides)")
    parser.add_argument("--pairs", type=int, default=3, help="A B pairs per size (default 3)")
    parser.add_argument("--out", default="docs", help="where benchmarks.md/.png go")
    parser.add_argument("--root", default=".restore_state/bench", help="seeds, state, logs")
    args = parser.parse_args(argv)
    sizes = list(args.sizes or (QUICK_SIZES_MB if args.quick else SIZES_MB))
    sizes = sorted(set(sizes + ([BIG_MB] if args.with_2gb else [])))
    root = Path(args.root).resolve()
    bench = Bench(root)
    started = time.monotonic()
    results: dict[str, object] = {"quick": args.quick, "sizes": {}, "machine": machine()}
    seeds = {size: bench.seed(size) for size in sizes}
    for size, secrets in seeds.items():
        print(f"{size:g} MB: raw psql vs project, {args.pairs} pairs", flush=True)
        results["sizes"][str(size)] = restore_pairs(bench, secrets, args.pairs)
    print("sensor tick over the biggest seed", flush=True)
    results["sensor"] = {
        "seed_mb": seed_mb(seeds[sizes[-1]]),
        **bench.sensor_ticks(seeds[sizes[-1]]),
    }
    print(f"whole processes on the {sizes[0]:g} MB seed", flush=True)
    results["processes"] = whole_processes(bench, seeds[sizes[0]], repeats=2)
    print("the whole chain launched as the UI launches it", flush=True)
    from bench.ui import ui_chain

    results["ui"] = ui_chain(bench.env_for(seeds[sizes[0]]), bench.logs / "ui.log")
    print("start-up, layer by layer", flush=True)
    results["startup"] = startup_anatomy(bench)
    print("one restore under pyinstrument", flush=True)
    results["profile"] = str(profile_restore(bench, seeds[sizes[0]], Path(args.out)).name)
    print("the demo chain from the CLI (restore-assets demo)", flush=True)
    results["demo"] = [asdict(bench.project(seeds[sizes[0]], "demo", cold=False)) for _ in range(3)]
    results["seconds"] = round(time.monotonic() - started, 1)
    (root / "results.json").write_text(json.dumps(results, indent=1))

    from bench.report import write_report

    written = write_report(results, Path(args.out))
    print(f"wrote {written} ({results['seconds']:.0f}s; raw results in {root / 'results.json'})")
    return 0


def machine() -> dict[str, object]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "load_before": [round(x, 2) for x in load],
        "python": sys.version.split()[0],
    }
