"""`restore-assets`: the command line. Thin by design — it launches the same Dagster jobs the UI
does, records them in a Dagster instance under RESTORE_STATE_DIR, and turns the outcome into the
exit codes of DESIGN.md (0 ok · 1 failed · 2 Secrets blocked · 3 configuration/refused reset).

Dagster is imported lazily so `status`, `ops-request` and `--help` stay fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from restore_assets.errors import EXIT_BLOCKED, EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from restore_assets.resources.evidence import EVIDENCE_SUBDIR, RUN_MARKER
from restore_assets.settings import ConfigError, Settings, load_settings

SIDES = ("legacy", "modernized")


@dataclass
class RunOutcome:
    exit_code: int
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    evidence: Path | None = None


def prepare_instance(settings: Settings):
    """The Dagster instance the CLI records runs in (DAGSTER_HOME, else RESTORE_STATE_DIR)."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str(settings.state_dir / "dagster_home")
        os.environ["DAGSTER_HOME"] = home
    Path(home).mkdir(parents=True, exist_ok=True)
    config = Path(home) / "dagster.yaml"
    if not config.exists():
        # Pools serialise the steps that touch one target (restore_legacy, restore_modernized).
        config.write_text(
            "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
        )
    from dagster import DagsterInstance

    return DagsterInstance.get()


def find_evidence(settings: Settings, run_id: str) -> Path | None:
    base = settings.artifacts_dir / EVIDENCE_SUBDIR
    for marker in sorted(base.glob(f"*/{RUN_MARKER}"), reverse=True):
        if marker.read_text().strip() == run_id:
            return marker.parent
    return None


def run_chain(settings: Settings, sides: tuple[str, ...], allow_reset: bool) -> RunOutcome:
    """Execute the side's job (or the whole chain) in-process on the CLI's Dagster instance;
    collect observations, materialisations, checks and failures into a table and an exit code."""
    from dagster import DagsterEventType

    from restore_assets.definitions import defs
    from restore_assets.jobs import ALL_JOB, JOBS_BY_SIDE
    from restore_assets.resources.environment import EVIDENCE_TAG, SIDES_TAG

    instance = prepare_instance(settings)
    overrides = {
        "secrets_dir": str(settings.secrets_dir),
        "artifacts_dir": str(settings.artifacts_dir),
        "state_dir": str(settings.state_dir),
        "allow_reset": allow_reset or settings.allow_reset,
    }
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    outcome = RunOutcome(EXIT_OK)
    job_name = JOBS_BY_SIDE[sides[0]] if len(sides) == 1 else ALL_JOB
    job = defs.resolve_job_def(job_name)
    result = job.execute_in_process(
        instance=instance,
        tags={EVIDENCE_TAG: started.isoformat(), SIDES_TAG: ",".join(sides)},
        run_config={
            "resources": {"restore": {"config": overrides}},
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
        },
        raise_on_error=False,
    )
    outcome.evidence = find_evidence(settings, result.run_id) or outcome.evidence
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            key = event.asset_key.to_user_string()
            outcome.rows.append((key, "materialized", ""))
        elif event.event_type == DagsterEventType.ASSET_OBSERVATION:
            observation = event.event_specific_data.asset_observation
            version = observation.tags.get("dagster/data_version", "")
            outcome.rows.append((observation.asset_key.to_user_string(), "observed", version))
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.event_specific_data
            name = f"{data.asset_key.to_user_string()}:{data.check_name}"
            status = "passed" if data.passed else "FAILED"
            outcome.rows.append((name, status, data.description or ""))
            if not data.passed:
                outcome.exit_code = _worse(outcome.exit_code, EXIT_FAILED)
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            code, message = _failure(event)
            outcome.rows.append((event.step_key or "", "FAILED", message))
            outcome.exit_code = _worse(outcome.exit_code, code)
    if not result.success:
        outcome.exit_code = _worse(outcome.exit_code, EXIT_FAILED)
    return outcome


def _failure(event) -> tuple[int, str]:
    data = event.step_failure_data
    user = data.user_failure_data if data else None
    if user is not None:
        code = user.metadata.get("exit_code")
        code = int(code.value) if code is not None else EXIT_FAILED
        return code, user.description or ""
    message = data.error.message.strip() if data and data.error else "step failed"
    return EXIT_FAILED, message.splitlines()[0] if message else "step failed"


def _worse(current: int, new: int) -> int:
    """Blocked (2) and refused (3) say more than a plain failure (1)."""
    rank = {EXIT_OK: 0, EXIT_FAILED: 1, EXIT_CONFIG: 2, EXIT_BLOCKED: 3}
    return new if rank.get(new, 1) > rank.get(current, 0) else current


def print_outcome(outcome: RunOutcome) -> None:
    width = max((len(r[0]) for r in outcome.rows), default=10)
    print(f"{'step / check':<{width}}  {'result':<12}  detail")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 40}")
    for name, status, detail in outcome.rows:
        print(f"{name:<{width}}  {status:<12}  {detail}")
    verdict = {
        EXIT_OK: "all steps and checks passed",
        EXIT_FAILED: "a step or check failed",
        EXIT_BLOCKED: "blocked: Secrets missing or unusable (see baseline_search.log)",
        EXIT_CONFIG: "refused: configuration error or reset without consent",
    }[outcome.exit_code]
    gates = _gate_rows(outcome.evidence)
    if gates:
        print("\ngate            result   detail")
        print("--------------  -------  ----------------------------------------")
        for gate_id, result, detail in gates:
            print(f"{gate_id:<14}  {result:<7}  {detail}")
    print(f"\nresult: {verdict} (exit {outcome.exit_code})")
    if outcome.evidence:
        print(f"evidence: {outcome.evidence}")


def _gate_rows(evidence: Path | None) -> list[tuple[str, str, str]]:
    """The three gates from the run's gate_report.json, when the run got that far."""
    import json

    if evidence is None or not (evidence / "gate_report.json").is_file():
        return []
    report = json.loads((evidence / "gate_report.json").read_text(encoding="utf-8"))
    rows = []
    for gate in report.get("gates", []):
        failed = [f"{c['id']}: {c['detail']}" for c in gate["checks"] if c["passed"] is False]
        rows.append((gate["id"], "passed" if gate["passed"] else "FAILED", "; ".join(failed)))
    return rows


def cmd_export_baseline(settings: Settings, args) -> int:
    from restore_assets.errors import RestoreError
    from restore_assets.resources.postgres import PostgresTarget
    from restore_assets.resources.secrets_store import SIDE_FILES
    from restore_assets.restore import export_baseline

    target = PostgresTarget(getattr(settings, args.side), settings)
    output = Path(args.output) if args.output else None
    try:
        written = export_baseline(target, settings, SIDE_FILES[args.side][0], output)
    except RestoreError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{written['sha256']}  {written['path']}  ({written['size']} bytes, mode 0600)")
    return EXIT_OK


def cmd_run(settings: Settings, args) -> int:
    sides = (args.only,) if args.only else SIDES
    outcome = run_chain(settings, sides, args.allow_reset)
    print_outcome(outcome)
    return outcome.exit_code


def cmd_demo(settings: Settings, args) -> int:
    """Build demo Secrets under the state dir and run the chain on the embedded server."""
    for name in ("POSTGRES_HOST", "MODERNIZED_POSTGRES_HOST"):
        os.environ.pop(name, None)  # the demo always runs on the embedded server
    demo_secrets = settings.state_dir / "demo" / "Secrets"
    os.environ["SECRETS_DIR"] = str(demo_secrets)
    settings = load_settings()
    from restore_assets.demo.build import build_demo_secrets

    build = build_demo_secrets(settings, demo_secrets, patients=args.patients)
    print(f"demo Secrets: {build.secrets_dir} ({build.patients} patients, {build.seconds:.1f}s)")
    outcome = run_chain(settings, SIDES, allow_reset=True)
    print_outcome(outcome)
    return outcome.exit_code


def cmd_status(settings: Settings, args) -> int:
    from restore_assets.resources.postgres import PostgresTarget
    from restore_assets.resources.secrets_store import SIDE_FILES, SecretsStore

    store = SecretsStore(settings)
    print(f"Secrets root: {settings.secrets_dir}")
    for side, relpaths in SIDE_FILES.items():
        for relpath in relpaths:
            info = store.inspect(relpath)
            state = "ok" if info.usable else "; ".join(info.problems)
            sha = info.sha256[:16] + "…" if info.sha256 else "-"
            print(f"  [{side}] {relpath}: {state}  mode={info.mode or '-'}  sha256={sha}")
    print("Targets:")
    reachable = {}
    for side in ("legacy", "modernized"):
        target = PostgresTarget(getattr(settings, side), settings)
        reachable[side], text = _reachability(target)
        print(f"  {target.describe()}: {text}")
    print(f"Flyway: {_flyway_summary(settings, reachable['modernized'])}")
    last = _last_evidence(settings)
    print(f"Last run: {last or 'none'}")
    if last and (last / "gate_report.json").is_file():
        import json

        report = json.loads((last / "gate_report.json").read_text(encoding="utf-8"))
        gates = ", ".join(
            f"{g['id']} {'passed' if g['passed'] else 'FAILED'}" for g in report["gates"]
        )
        print(f"Last gate result: {report['status']} ({gates})")
    return EXIT_OK


def _flyway_summary(settings: Settings, reachable: bool) -> str:
    """Flyway info in one line, without starting anything."""
    if not reachable:
        return "not read (Modernized target not reachable without starting it)"
    from collections import Counter

    from restore_assets.resources.flyway_runner import load_flyway_config, native_engine
    from restore_assets.resources.postgres import PostgresTarget

    target = PostgresTarget(settings.modernized, settings)
    try:
        rows = native_engine(load_flyway_config(settings, target), target, print).info()
    except Exception as exc:  # noqa: BLE001 - status reports, never raises
        return f"unavailable ({target.redact(str(exc)).splitlines()[0]})"
    states = Counter(r.state for r in rows)
    latest = [r.version for r in rows if r.version and r.state in ("Success", "Baseline")]
    return f"latest {latest[-1] if latest else '-'}; " + ", ".join(
        f"{n} {state.lower()}" for state, n in states.items()
    )


def _reachability(target) -> tuple[bool, str]:
    if target.embedded:
        pid_file = target.settings.state_dir / "pgdata" / "postmaster.pid"
        # Read-only: report the embedded server without starting it.
        if pid_file.exists():
            return True, "embedded, running"
        return False, "embedded, starts on demand"
    try:
        version = target.server_version_num()
    except Exception as exc:  # noqa: BLE001 - status reports, never raises
        return False, f"unreachable ({str(exc).splitlines()[0]})"
    return True, f"reachable, PostgreSQL {version // 10000}.{version % 10000}"


def _last_evidence(settings: Settings) -> Path | None:
    folders = sorted((settings.artifacts_dir / EVIDENCE_SUBDIR).glob("*/.run_id"))
    return folders[-1].parent if folders else None


def cmd_ops_request(settings: Settings, args) -> int:
    from restore_assets.resources.secrets_store import SIDE_FILES, SecretsStore, ops_request

    store = SecretsStore(settings)
    sides = list(SIDE_FILES)
    files = [store.inspect(rel) for side in sides for rel in SIDE_FILES[side]]
    if all(f.usable for f in files):
        print("All baseline files are present and usable; nothing to request.")
        return EXIT_OK
    print(ops_request(settings, sides, files, None), end="")
    return EXIT_OK


FLYWAY_COMMANDS = ("info", "validate", "baseline", "migrate", "repair")
INFO_COLUMNS = ("Category", "Version", "Description", "Type", "Installed On", "State")


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Flyway's own `info` layout: a boxed text table."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([rule, line(header), rule, *(line(r) for r in rows), rule])


def cmd_flyway(settings: Settings, args) -> int:
    """The Flyway-compatible engine alone, on the Modernized target (no Dagster import)."""
    from restore_assets.errors import RestoreError
    from restore_assets.flyway import FlywayError
    from restore_assets.resources.flyway_runner import (
        cli_command,
        diagnose,
        load_flyway_config,
        native_engine,
        run_cli,
    )
    from restore_assets.resources.postgres import PostgresTarget

    target = PostgresTarget(settings.modernized, settings)
    conf = Path(args.conf).expanduser() if args.conf else None
    try:
        config = load_flyway_config(settings, target, conf, args.locations)
        engine = native_engine(config, target, log=print)
        if settings.flyway_runner == "docker":
            raise FlywayError(
                "FLYWAY_RUNNER=docker runs inside Dagster (restore-assets run); "
                "use FLYWAY_RUNNER=native or cli for these commands"
            )
        if settings.flyway_runner == "cli":
            print(run_cli(cli_command(settings, config, target, args.action), target.redact))
        elif args.action == "info":
            pass
        elif args.action == "validate":
            errors = engine.validate()
            for error in errors:
                print(f"ERROR: {error}")
            if errors:
                print(f"Validate failed: {len(errors)} difference(s)")
                return EXIT_FAILED
            print(f"Successfully validated {len(engine.resolved())} migration(s)")
        elif args.action == "baseline":
            done = engine.baseline()
            print("baseline written" if done else "baseline already present: nothing to do")
        elif args.action == "migrate":
            result = engine.migrate()
            print(
                f"Successfully applied {len(result.applied)} migration(s) in {result.seconds}s"
                if result.applied
                else "Schema is up to date. No migration necessary."
            )
        elif args.action == "repair":
            repaired = engine.repair()
            print(
                f"Repair: removed {len(repaired['removed'])} failed row(s) "
                f"{repaired['removed'] or ''}, realigned {len(repaired['realigned'])} "
                f"{repaired['realigned'] or ''}".rstrip()
            )
        if args.action == "info" or settings.flyway_runner == "native":
            rows = [tuple(r.as_dict().values()) for r in engine.info()]
            print(format_table(INFO_COLUMNS, rows))
    except RestoreError as exc:
        history = []
        try:
            history = engine.history_rows()
        except Exception:  # noqa: BLE001 - the diagnosis is a bonus, the error is what matters
            pass
        hint = diagnose(exc, history, settings.secrets_dir)
        if hint:
            print(f"DIAGNOSIS: {hint}")
        print(f"ERROR: {target.redact(str(exc))}")
        return EXIT_FAILED
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="restore-assets",
        description="Restore OpenDolphin's databases from baseline dumps, with gates and evidence.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="build demo Secrets and run the chain on embedded PostgreSQL"
    )
    demo.add_argument("--patients", type=int, default=300, help="demo size (default 300)")
    demo.set_defaults(func=cmd_demo)
    run = sub.add_parser("run", help="materialise the chain (or one side)")
    run.add_argument("--only", choices=SIDES, help="restore one side only")
    run.add_argument(
        "--allow-reset",
        action="store_true",
        help="consent to drop a non-empty external target (it is backed up first)",
    )
    run.set_defaults(func=cmd_run)
    status = sub.add_parser("status", help="read-only: Secrets files, targets, last run")
    status.set_defaults(func=cmd_status)
    ops = sub.add_parser("ops-request", help="print the request to Ops/DBA for missing files")
    ops.set_defaults(func=cmd_ops_request)
    export = sub.add_parser(
        "export-baseline", help="pg_dump --schema-only --no-owner into the Secrets store (§5)"
    )
    export.add_argument("--side", choices=SIDES, required=True)
    export.add_argument("--output", help="file inside the Secrets root (default: exports/<UTC>/)")
    export.set_defaults(func=cmd_export_baseline)
    flyway = sub.add_parser("flyway", help="the Flyway-compatible engine on the Modernized target")
    flyway.add_argument("action", choices=FLYWAY_COMMANDS)
    flyway.add_argument("--conf", help="flyway.conf (default: FLYWAY_CONF, else the demo's)")
    flyway.add_argument("--locations", help="e.g. filesystem:/path/to/sql (overrides the conf)")
    flyway.set_defaults(func=cmd_flyway)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        return args.func(settings, args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
