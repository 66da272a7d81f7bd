"""`restore-assets flyway info|validate|baseline|migrate|repair`: the engine alone on the
Modernized target, as a DBA would run Flyway by hand. No Dagster import: these start in half a
second."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from restore_assets.errors import EXIT_FAILED, EXIT_OK, RestoreError
from restore_assets.redaction import describe

if TYPE_CHECKING:
    from restore_assets.settings import Settings

COMMANDS = ("info", "validate", "baseline", "migrate", "repair")


def add_parser(sub) -> None:
    flyway = sub.add_parser("flyway", help="the Flyway-compatible engine on the Modernized target")
    flyway.add_argument("action", choices=COMMANDS)
    flyway.add_argument("--conf", help="flyway.conf (default: FLYWAY_CONF, else the demo's)")
    flyway.add_argument("--locations", help="e.g. filesystem:/path/to/sql (overrides the conf)")
    flyway.add_argument(
        "--working-directory",
        help="where relative locations start, as Flyway's -workingDirectory "
        "(default: FLYWAY_WORKING_DIRECTORY, else the current directory)",
    )
    flyway.set_defaults(func=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    # Imported here: `restore-assets --help` builds this parser and should not load psycopg.
    import psycopg

    from restore_assets.flyway.migration_info import info_table
    from restore_assets.pg.database import Database
    from restore_assets.runbook.flyway_adapter import (
        DOCKER_NEEDS_DAGSTER,
        FlywayFailed,
        cli_command,
        diagnose,
        load_flyway_config,
        native_engine,
        run_cli,
    )

    db = Database(settings.modernized, settings.pg)
    # This command prints its own lines: each passes the CLI's boundary, the settings' redactor.
    redact = settings.redactor
    if args.conf:  # in the settings: the cli runner hands Flyway the conf the engine read
        settings = settings.with_overrides(flyway={"conf": Path(args.conf).expanduser()})
    if args.working_directory:
        folder = Path(args.working_directory).expanduser().resolve()
        settings = settings.with_overrides(flyway={"working_directory": folder})
    engine = None
    try:
        config = load_flyway_config(settings.flyway, db, locations=args.locations)
        engine = native_engine(config, db, log=print)
        if settings.flyway.runner == "docker":
            raise FlywayFailed(DOCKER_NEEDS_DAGSTER)
        if settings.flyway.runner == "cli":
            print(redact(run_cli(cli_command(settings.flyway, config, db, args.action))))
            if args.action == "info":
                print(info_table(engine.info()))
            return EXIT_OK
        code = _native(engine, args.action)
        print(info_table(engine.info()))
        return code
    except (RestoreError, psycopg.Error) as exc:  # psycopg: e.g. no privilege on the history
        history = []
        try:
            history = engine.history_rows() if engine else []
        except (RestoreError, psycopg.Error):
            pass  # the diagnosis is a bonus; the error is what matters
        hint = diagnose(exc, history, settings.paths.secrets_dir)
        if hint:
            print(f"DIAGNOSIS: {hint}")
        print(redact(f"ERROR: {describe(exc)}"))
        return EXIT_FAILED


def _native(engine, action: str) -> int:
    if action == "validate":
        errors = engine.validate()
        for error in errors:
            print(f"ERROR: {error}")
        if errors:
            print(f"Validate failed: {len(errors)} difference(s)")
            return EXIT_FAILED
        print(f"Successfully validated {len(engine.resolved())} migration(s)")
    elif action == "baseline":
        done = engine.baseline()
        print("baseline written" if done else "baseline already present: nothing to do")
    elif action == "migrate":
        result = engine.migrate()
        print(
            f"Successfully applied {len(result.applied)} migration(s) in {result.seconds}s"
            if result.applied
            else "Schema is up to date. No migration necessary."
        )
    elif action == "repair":
        repaired = engine.repair()
        print(
            f"Repair: removed {len(repaired['removed'])} failed row(s) "
            f"{repaired['removed'] or ''}, marked {len(repaired['deleted'])} missing as deleted "
            f"{repaired['deleted'] or ''}, realigned {len(repaired['realigned'])} "
            f"{repaired['realigned'] or ''}".rstrip()
        )
    return EXIT_OK
