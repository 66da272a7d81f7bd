"""`restore-assets`: the command line. Thin by design — it parses arguments and either calls the
runbook core (plan, status, ops-request, intake-zip, export-baseline, flyway) or launches the same
Dagster jobs the UI does, recorded in a Dagster instance under RESTORE_STATE_DIR. The gate table
and the evidence folder come from the run's own events; exit codes follow DESIGN.md (0 ok ·
1 failed · 2 Secrets blocked · 3 configuration error or refused reset), carried by the error
hierarchy.

Dagster is imported lazily so `plan`, `status`, `ops-request`, `flyway` and `--help` stay fast
(and `plan` never loads it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import signal
import sys
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from restore_assets import i18n
from restore_assets.errors import (
    EXIT_BLOCKED,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNRECORDED,
    ConfigError,
    RestoreError,
    UnexpectedError,
    worse_exit,
)
from restore_assets.i18n import N_, _
from restore_assets.named_targets import labelled
from restore_assets.redaction import Redactor
from restore_assets.runbook import flyway_command as flyway_cli
from restore_assets.settings import SIDES, Settings, load_settings, process_language

VERDICTS = {  # translated where printed
    EXIT_OK: N_("all steps and checks passed"),
    EXIT_FAILED: N_("a step or check failed"),
    EXIT_BLOCKED: N_("blocked: Secrets missing or unusable (see baseline_search.log)"),
    EXIT_CONFIG: N_("refused: configuration error or reset without consent"),
    EXIT_UNRECORDED: N_("a target WAS restored, but writing its evidence failed"),
    128 + signal.SIGINT: N_("interrupted (SIGINT): stopped cleanly, see the evidence"),
    128 + signal.SIGTERM: N_("interrupted (SIGTERM): stopped cleanly, see the evidence"),
}


@dataclass
class RunOutcome:
    exit_code: int
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    gates: list[tuple[str, str, str]] = field(default_factory=list)
    evidence: Path | None = None


def run_chain(
    settings: Settings,
    sides: tuple[str, ...],
    allow_reset: bool,
    verbose: bool = False,
) -> RunOutcome:
    """Execute the side's job (or the whole chain) for the settings' target (its partition),
    in-process on the CLI's Dagster instance, and read the outcome from the run's own events.
    Runs whose process died are cleaned up first; SIGINT/SIGTERM stop the run cleanly (exit
    130/143, evidence status `interrupted`)."""
    from dagster import DagsterExecutionInterruptedError

    from restore_assets.assets.partitions import register_targets
    from restore_assets.assets.shell import SIDES_TAG
    from restore_assets.definitions import defs
    from restore_assets.jobs import ALL_JOB, JOBS_BY_SIDE, prepare_instance
    from restore_assets.recovery import (
        process_tag,
        signals_received,
        stamped,
        wait_for_target,
    )
    from restore_assets.resources.evidence import EVIDENCE_FOLDER_TAG, EVIDENCE_TAG
    from restore_assets.started_by import cli_tag

    target = settings.target_name
    instance = prepare_instance(settings.paths)
    register_targets(instance, [target])
    overrides = {
        "secrets_dir": str(settings.paths.secrets_dir),
        "artifacts_dir": str(settings.paths.artifacts_dir),
        "state_dir": str(settings.paths.state_dir),
        "allow_reset": allow_reset or settings.allow_reset,
        "terminate_sessions": settings.terminate_sessions,
    }
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    run_id = str(uuid.uuid4())  # known before the run exists: its process tag names it
    tags = {
        EVIDENCE_TAG: stamped(run_id, started.isoformat()),
        SIDES_TAG: ",".join(sides),
        **process_tag(run_id),
        **cli_tag(),
    }
    job = defs.resolve_job_def(JOBS_BY_SIDE[sides[0]] if len(sides) == 1 else ALL_JOB)
    result = None
    with signals_received() as signals:
        try:
            wait_for_target(
                instance, target, wait_seconds=settings.wait_seconds, log=_progress(settings)
            )
            result = job.execute_in_process(
                instance=instance,
                run_id=run_id,
                tags=tags,
                partition_key=target,
                run_config={
                    "resources": {"restore": {"config": overrides}},
                    "loggers": {"console": {"config": {"log_level": "INFO", "verbose": verbose}}},
                },
                raise_on_error=False,
            )
        except (KeyboardInterrupt, DagsterExecutionInterruptedError):
            pass  # `signals` says which signal; the run's own events say how far it got
    run = instance.get_run_by_id(run_id)  # also when interrupted before it returned
    folder = run.tags.get(EVIDENCE_FOLDER_TAG) if run else None
    if signals and run is not None:
        from restore_assets.assets.stops import record_interrupt

        record_interrupt(settings, instance, run, folder, signals[-1])
    # The run's own event log, as the UI shows it: stops recorded outside a step are in it too.
    events = [e.dagster_event for e in instance.all_logs(run.run_id)] if run else []
    outcome = outcome_of([e for e in events if e is not None])
    outcome.evidence = Path(folder) if folder else None
    if signals:
        from restore_assets.assets.stops import interrupt_reason

        _add_failure(outcome, "run", interrupt_reason(signals[-1]))
        outcome.exit_code = 128 + signals[-1]
        return outcome
    if result is None or not result.success:
        outcome.exit_code = worse_exit(outcome.exit_code, EXIT_FAILED)
    return outcome


def _progress(settings: Settings):
    """Where the CLI says what it waits for: stderr, through the settings' redactor."""
    return lambda message: print(settings.redactor(message), file=sys.stderr, flush=True)


def outcome_of(events) -> RunOutcome:
    """The table rows, the gate rows, the evidence folder and the exit code of a run."""
    from dagster import DagsterEventType

    outcome = RunOutcome(EXIT_OK)
    gates: dict[str, tuple[str, str, str]] = {}
    for event in events:
        kind = event.event_type
        if kind == DagsterEventType.ASSET_MATERIALIZATION:
            if "stopped_by" in event.step_materialization_data.materialization.metadata:
                continue  # a stop recorded on gates/report: the gate table says it
            outcome.rows.append((event.asset_key.to_user_string(), "materialized", ""))
        elif kind == DagsterEventType.ASSET_OBSERVATION:
            observation = event.event_specific_data.asset_observation
            version = observation.tags.get("dagster/data_version", "")
            outcome.rows.append((observation.asset_key.to_user_string(), "observed", version))
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.event_specific_data
            name = f"{data.asset_key.to_user_string()}:{data.check_name}"
            status = "passed" if data.passed else "FAILED"
            if "checks" in data.metadata:  # a gate: its sub-checks are in its own result
                gates[data.check_name] = (data.check_name, status, _failed_subchecks(data.metadata))
            if not _reached(data.metadata):
                continue  # a stop, recorded on the gates: the gate table says it once
            outcome.rows = [r for r in outcome.rows if r[0] != name]  # its last word counts
            outcome.rows.append((name, status, data.description or ""))
            if not data.passed:
                outcome.exit_code = worse_exit(outcome.exit_code, EXIT_FAILED)
        elif kind == DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            if error is not None and error.cls_name == "DagsterAssetCheckFailedError":
                continue  # a blocking check: its own row above says which and why
            code, message = _failure(event)
            _add_failure(outcome, event.step_key or "", message)
            outcome.exit_code = worse_exit(outcome.exit_code, code)
    outcome.gates = list(gates.values())  # each gate's last word: a later stop names them all
    return outcome


def _add_failure(outcome: RunOutcome, step: str, message: str) -> None:
    """One line per reason: steps stopped by the same cause (e.g. both sides blocked by the
    same missing file) share it."""
    for index, (name, status, detail) in enumerate(outcome.rows):
        if status == "FAILED" and detail == message:
            outcome.rows[index] = (f"{name}, {step}", status, detail)
            return
    outcome.rows.append((step, "FAILED", message))


def _reached(metadata) -> bool:
    from restore_assets.runbook.gate_report import NOT_REACHED

    records = metadata["checks"].value.records if "checks" in metadata else []
    return not any(r.data["id"] == NOT_REACHED for r in records)


def _failed_subchecks(metadata) -> str:
    from restore_assets.runbook.gate_report import NOT_REACHED

    records = metadata["checks"].value.records
    return "; ".join(
        r.data["detail"] if r.data["id"] == NOT_REACHED else f"{r.data['id']}: {r.data['detail']}"
        for r in records
        if r.data["passed"] is False
    )


def one_line(text: str | None) -> str:
    """A multi-line message (diagnosis, error, hint) as one table cell."""
    return " — ".join(line.strip() for line in (text or "").splitlines() if line.strip())


def _failure(event) -> tuple[int, str]:
    data = event.step_failure_data
    user = data.user_failure_data if data else None
    if user is not None:
        code = user.metadata.get("exit_code")
        return (int(code.value) if code is not None else EXIT_FAILED), one_line(user.description)
    error = data.error if data else None
    while error is not None and error.cause is not None:  # the user's error, not Dagster's wrapper
        error = error.cause
    message = error.message.strip() if error else ""
    return EXIT_FAILED, (message.splitlines()[0] if message else "step failed")


def print_outcome(outcome: RunOutcome, redact: Redactor) -> None:
    """The run's table, as the CLI's boundary: read from the run's events (redacted when they
    were stored), redacted once more on the way out."""
    width = max((len(r[0]) for r in outcome.rows), default=10)
    lines = [f"{'step / check':<{width}}  {'result':<12}  detail"]
    lines.append(f"{'-' * width}  {'-' * 12}  {'-' * 40}")
    for name, status, detail in outcome.rows:
        lines.append(f"{name:<{width}}  {status:<12}  {detail}")
    if outcome.gates:
        lines.append("\ngate            result   detail")
        lines.append("--------------  -------  ----------------------------------------")
        for gate_id, result, detail in outcome.gates:
            lines.append(f"{gate_id:<14}  {result:<7}  {detail}")
    verdict = _(VERDICTS[outcome.exit_code])
    result = _("result: {verdict} (exit {code})")
    lines += ["", result.format(verdict=verdict, code=outcome.exit_code)]
    if outcome.evidence:
        lines.append(f"evidence: {outcome.evidence}")
    print(redact("\n".join(lines)))


def cmd_run(settings: Settings, args) -> int:
    from restore_assets.named_targets import chosen_targets

    sides = (args.only,) if args.only else SIDES
    chosen = chosen_targets(settings, args.target, args.all)
    code, summary = EXIT_OK, []
    for name, target_settings in chosen.items():
        if labelled(target_settings):
            print(f"== target {name} ==", flush=True)
        if args.terminate_sessions:
            target_settings = target_settings.with_overrides(terminate_sessions=True)
        outcome = run_chain(target_settings, sides, args.allow_reset, args.verbose)
        print_outcome(outcome, target_settings.redactor)
        if labelled(target_settings):
            print()
        code = worse_exit(code, outcome.exit_code)
        summary.append((name, outcome))
        if outcome.exit_code >= 128:
            break  # interrupted: the other targets are not started
    if len(summary) > 1 or args.all:
        width = max(len(name) for name, _outcome in summary)
        print(f"{'target':<{width}}  exit  result")
        for name, outcome in summary:
            print(f"{name:<{width}}  {outcome.exit_code:>4}  {_(VERDICTS[outcome.exit_code])}")
    return code


# Set empty (= unset, and the process environment wins over .env): the demo's targets are the
# embedded server's, never a real server named in .env or the environment.
_NOT_FOR_THE_DEMO = ("POSTGRES_HOST", "MODERNIZED_POSTGRES_HOST", "RESTORE_TARGETS")


def use_demo(settings: Settings) -> Settings:
    """The demo's Secrets (under the state dir) and the embedded targets, for this process and
    every process it starts."""
    for name in _NOT_FOR_THE_DEMO:
        os.environ[name] = ""
    os.environ["SECRETS_DIR"] = str(settings.paths.state_dir / "demo" / "Secrets")
    return load_settings()


def cmd_demo(settings: Settings, args) -> int:
    """Build demo Secrets under the state dir and run the chain on the embedded server."""
    settings = use_demo(settings)
    demo_secrets = settings.paths.secrets_dir
    from restore_assets.demo.build import build_demo_secrets

    build = build_demo_secrets(settings, demo_secrets, patients=args.patients)
    print(f"demo Secrets: {build.secrets_dir} ({build.patients} patients, {build.seconds:.1f}s)")
    outcome = run_chain(settings, SIDES, allow_reset=True, verbose=args.verbose)
    print_outcome(outcome, settings.redactor)
    return outcome.exit_code


def cmd_ui(settings: Settings, args) -> int:
    """`make ui`: `dagster dev` (webserver + daemon, so the sensors tick) on the instance the CLI
    records its runs in; with SECRETS_DIR unset (environment and .env) and `make demo` done, on
    the demo's Secrets and the embedded targets. Ctrl-C or SIGTERM stops all of it within 10 s,
    a run in progress first, rolled back and `interrupted` (see `ui_stop`); exit 128 + signal."""
    from restore_assets.assets.partitions import register_targets
    from restore_assets.jobs import prepare_instance
    from restore_assets.named_targets import load_targets
    from restore_assets.ui_stop import supervise

    demo = settings.paths.state_dir / "demo" / "Secrets"
    if not settings.paths.secrets_dir_given and demo.is_dir():
        settings = use_demo(settings)
        print(
            f"watching the demo Secrets: {settings.paths.secrets_dir}, restoring into "
            f"{settings.legacy.describe()} and {settings.modernized.describe()} "
            "(set SECRETS_DIR to change)",
            flush=True,
        )
    else:
        print(f"watching the Secrets store: {settings.paths.secrets_dir}", flush=True)
    instance = prepare_instance(settings.paths)
    try:  # so the UI can launch a target's run before the sensor's first tick
        register_targets(instance, load_targets(settings))
    except ConfigError:
        pass  # a bad targets.yaml: the sensor's every tick says which field
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    dagster = str(Path(sys.executable).with_name("dagster"))
    # `dagster dev` warns that `dg dev` supersedes it; dg is a separate package we do not use.
    os.environ["PYTHONWARNINGS"] = "ignore:Function `dev_command` is superseded"
    command = [dagster, "dev", "-w", str(workspace), *args.dagster_args]
    return supervise(command, instance, settings)  # not exec: it must stop dagster dev itself


def cmd_status(settings: Settings, args) -> int:
    from restore_assets.named_targets import load_targets
    from restore_assets.runbook.status import status_lines, targets_table

    targets = load_targets(settings)
    lines = targets_table(targets) if labelled(settings) else status_lines(settings)
    # The CLI's boundary: any target's password and URL, a server's error quoting a row.
    every = [settings, *targets.values()]
    redact = Redactor(
        [p for s in every for p in s.passwords], urls=[s.checks.facility_api_url for s in every]
    )
    print(redact("\n".join(lines)))
    return EXIT_OK


def cmd_plan(settings: Settings, args) -> int:
    """Read-only: what `run` with the same arguments would do, and the exit code it would stop
    with before any gate (0 proceed · 1 a step would fail · 2 Secrets blocked · 3 refused)."""
    from restore_assets.named_targets import chosen_targets
    from restore_assets.runbook.plan import build_plan

    sides = (args.only,) if args.only else SIDES
    code = EXIT_OK
    for target_settings in chosen_targets(settings, args.target, args.all).values():
        if args.allow_reset:
            target_settings = target_settings.with_overrides(allow_reset=True)
        plan = build_plan(target_settings, sides)
        end = "\n" if labelled(target_settings) else ""
        print(target_settings.redactor(plan.markdown()), end=end)
        code = worse_exit(code, plan.exit_code)
    return code


def cmd_ops_request(settings: Settings, args) -> int:
    """Print the request to Ops; with --tracking-id, record when it went and Ops' ID (§0.3):
    every blocked run's progress_snippet.md then says so."""
    from restore_assets.runbook.intake import SecretsStore
    from restore_assets.runbook.ops_request import ops_request, record_request

    files = SecretsStore(settings.paths).inspect_all()
    if all(f.usable for f in files):
        print("All baseline files are present and usable; nothing to request.")
        return EXIT_OK
    print(settings.redactor(ops_request(settings, SIDES, files, None)), end="")
    if args.tracking_id is not None:
        try:
            request = record_request(settings, args.tracking_id)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        recorded = _("Recorded: {request} (blocked runs' progress_snippet.md will say so)")
        print(recorded.format(request=request.line()))
    return EXIT_OK


def cmd_export_baseline(settings: Settings, args) -> int:
    from restore_assets.pg.database import Database
    from restore_assets.runbook.export import export_baseline

    db = Database(getattr(settings, args.side), settings.pg)
    written = export_baseline(db, settings, Path(args.output) if args.output else None)
    print(f"{written.sha256}  {written.path}  ({written.size} bytes, mode 0600)")
    print(f"dumped: {written.target}")
    return EXIT_OK


def cmd_intake_zip(settings: Settings, args) -> int:
    """Runbook §0 by hand: unpack the encrypted ZIPs in `<Secrets>/inbox/` now."""
    from restore_assets.runbook.inbox import INBOX, unpack_inbox

    if settings.intake.zip_password is None:
        raise ConfigError("SECRETS_ZIP_PASSWORD is not set: it is the encrypted ZIPs' password")
    results = unpack_inbox(settings)
    if not results:
        print(f"no ZIP in {settings.paths.secrets_dir / INBOX}")
    for result in results:
        print(settings.redactor(result.line()))
    if any(r.status == "refused" for r in results):
        return EXIT_BLOCKED
    return EXIT_OK if all(r.status == "unpacked" for r in results) else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="restore-assets",
        description=_(
            "Restore OpenDolphin's databases from baseline dumps, with gates and evidence."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help=_("build demo Secrets and run the chain on embedded PostgreSQL")
    )
    demo.add_argument("--patients", type=int, default=300, help=_("demo size (default 300)"))
    demo.set_defaults(func=cmd_demo)
    run = sub.add_parser("run", help=_("materialise the chain (or one side)"))
    run.set_defaults(func=cmd_run)
    for command in (demo, run):
        command.add_argument(
            "--verbose", action="store_true", help=_("Dagster's full log, stack traces included")
        )
    ui = sub.add_parser("ui", help=_("the Dagster UI with its daemon (sensors on), as `make ui`"))
    ui.add_argument("dagster_args", nargs="*", help=_("after `--`: passed to `dagster dev`"))
    ui.set_defaults(func=cmd_ui)
    plan = sub.add_parser(
        "plan", help=_("read-only dry run: what `run` would check, drop, back up and migrate")
    )
    for command in (run, plan):
        command.add_argument("--only", choices=SIDES, help=_("restore one side only"))
        command.add_argument(
            "--allow-reset",
            action="store_true",
            help=_("consent to drop a non-empty external target (it is backed up first)"),
        )
        chosen = command.add_mutually_exclusive_group()
        chosen.add_argument("--target", help=_("a named target of RESTORE_TARGETS (targets.yaml)"))
        chosen.add_argument(
            "--all",
            action="store_true",
            help=_("every target of RESTORE_TARGETS, one after another"),
        )
    run.add_argument(
        "--terminate-sessions",
        action="store_true",
        help=_(
            "end the other sessions on each target just before its reset (an application "
            "still connected); the evidence names them (RESTORE_TERMINATE_SESSIONS)"
        ),
    )
    plan.set_defaults(func=cmd_plan)
    status = sub.add_parser("status", help=_("read-only: Secrets files, targets, last run"))
    status.set_defaults(func=cmd_status)
    ops = sub.add_parser("ops-request", help=_("print the request to Ops/DBA for missing files"))
    ops.add_argument(
        "--tracking-id",
        metavar="ID",
        help=_("record now as the request time and ID as Ops' ticket or thread (runbook §0.3)"),
    )
    ops.set_defaults(func=cmd_ops_request)
    intake_zip = sub.add_parser(
        "intake-zip", help=_("unpack the encrypted ZIPs in <Secrets>/inbox/ into place (§0)")
    )
    intake_zip.set_defaults(func=cmd_intake_zip)
    export = sub.add_parser(
        "export-baseline", help=_("pg_dump --schema-only --no-owner into the Secrets store (§5)")
    )
    export.add_argument("--side", choices=SIDES, required=True)
    export.add_argument(
        "--output", help=_("file inside the Secrets root (default: exports/<UTC>/)")
    )
    export.set_defaults(func=cmd_export_baseline)
    flyway_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    redact = Redactor()  # settings unreadable: their own error lines hide the passwords
    # What this process and those it starts (`dagster dev`, its daemon and run workers) create
    # — Dagster's SQLite files, the state — is this user's only.
    umask = os.umask(0o077)
    try:
        # --help and a bad setting's lines too are in the operators' language.
        i18n.use(process_language())
        args = build_parser().parse_args(argv)
        settings = load_settings()
        i18n.use(settings.lang)
        redact = settings.redactor
        return args.func(settings, args)
    except RestoreError as exc:  # the CLI's last line: redacted, as everything it prints
        label = _("configuration error") if exc.exit_code == EXIT_CONFIG else _("ERROR")
        print(redact(f"{label}: {exc}"), file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - a bug: its traceback, but never raw (no password)
        print(redact(traceback.format_exc()), file=sys.stderr, end="")
        print(redact(f"ERROR: {UnexpectedError(exc)}"), file=sys.stderr)
        return EXIT_FAILED
    finally:
        os.umask(umask)  # for callers in the same process (tests)


def console() -> None:
    """The `restore-assets` script: `main`, then exit without the collector walking every
    object Dagster created once more at interpreter teardown (about 0.5 s of each run; exit
    handlers still run)."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console()
