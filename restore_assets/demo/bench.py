"""`make bench`: the whole chain on a demo of a given size, timed step by step, with peak memory.

Measures; asserts nothing. Runs in a throw-away state dir on the embedded server.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="restore-assets-bench")
    parser.add_argument("--patients", type=int, nargs="+", default=[300, 20000])
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="restore-bench-"))
    for name in ("POSTGRES_HOST", "MODERNIZED_POSTGRES_HOST"):
        os.environ.pop(name, None)
    os.environ.update(
        RESTORE_STATE_DIR=str(root / "state"),
        RESTORE_ARTIFACTS_DIR=str(root / "artifacts"),
        SECRETS_DIR=str(root / "Secrets"),
        DAGSTER_HOME=str(root / "dagster_home"),
    )
    from dagster import DagsterEventType

    from restore_assets.definitions import defs
    from restore_assets.demo.build import build_demo_secrets
    from restore_assets.jobs import prepare_instance
    from restore_assets.settings import LEGACY_SEED_FILE, load_settings

    settings = load_settings()
    prepare_instance(settings)
    rows = []
    for patients in args.patients:
        started = time.monotonic()
        build_demo_secrets(settings, settings.secrets_dir, patients)
        built = time.monotonic() - started
        seed_mb = (settings.secrets_dir / LEGACY_SEED_FILE).stat().st_size / 1e6
        started = time.monotonic()
        result = defs.resolve_job_def("restore_all").execute_in_process(
            run_config={
                "resources": {"restore": {"config": {"allow_reset": True}}},
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            },
            raise_on_error=False,
        )
        chain = time.monotonic() - started
        steps = {
            e.step_key: e.event_specific_data.duration_ms / 1000
            for e in result.all_events
            if e.event_type == DagsterEventType.STEP_SUCCESS
        }
        rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        rows.append(
            (patients, seed_mb, built, chain, result.success, steps, rss_self, rss_children)
        )
    for patients, seed_mb, built, chain, ok, steps, rss_self, rss_children in rows:
        print(
            f"\npatients={patients} seed={seed_mb:.1f} MB build={built:.1f}s chain={chain:.1f}s "
            f"success={ok} peak RSS: python {rss_self:.0f} MB, psql/pg_dump {rss_children:.0f} MB"
        )
        for step, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
            print(f"  {step:<32} {seconds:7.2f}s")
    print(f"\n(state and evidence in {root})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
