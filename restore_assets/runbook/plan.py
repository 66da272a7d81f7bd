"""`restore-assets plan`: what a run would do to each side, read without changing anything.

Per side: the baseline files with sha256 and their checks (`SecretsStore.inspect_side`, on the
sha256 cache); then, unless intake would stop the run (no target is asked anything then), the
preflight (`preflight.preflight`), what the reset would drop (the server's own catalogue:
schemas, objects, tables, estimated rows), consent and backup, and on Modernized the Flyway
migrations pending; then the gates. The verdict is the exit code `run` would stop with before
any gate: 0 proceed · 1 a step would fail · 2 Secrets blocked · 3 consent missing or
configuration bad (the codes of `errors.py`, combined as `run` combines them).

Read-only by construction: catalogue queries and `flyway info` only, no lock, no file written but
the sha256 cache. An embedded target's server is started as for any command that reads it; its
databases are only read. Every run builds the same plan first and keeps it as `plan.md`.

One call plans one target pair (a `Settings` and its two `Database`s), so named targets
can plan each pair in turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import psycopg

from restore_assets.errors import (
    EXIT_BLOCKED,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    ResetRefused,
    RestoreError,
    worse_exit,
)
from restore_assets.flyway.migration_info import InfoRow, info_table
from restore_assets.pg.clients import client_binary, require_restricted_mode
from restore_assets.pg.database import Database
from restore_assets.pg.sessions import connected
from restore_assets.redaction import first_line
from restore_assets.runbook.baseline_files import SecretFile
from restore_assets.runbook.flyway_adapter import load_flyway_config, native_engine, runner_target
from restore_assets.runbook.gates import GATE_CHECKS
from restore_assets.runbook.intake import SecretsStore
from restore_assets.runbook.preflight import preflight
from restore_assets.runbook.restore import planned_load, require_consent, reset_set
from restore_assets.settings import SIDES, Settings

PLAN_FILE = "plan.md"
VERDICTS = {
    EXIT_OK: "a run would proceed",
    EXIT_FAILED: "a run would fail",
    EXIT_BLOCKED: "a run would stop: Secrets missing or unusable, nothing touched",
    EXIT_CONFIG: "a run would be refused: consent missing or configuration bad",
}
ROWS_NOTE = (
    "Rows are the catalogue's estimates (`pg_class.reltuples`, or `n_live_tup` for a table never "
    "analysed): no table is scanned. Table data is `pg_table_size` (heap + TOAST)."
)


@dataclass(frozen=True)
class SchemaContent:
    """One schema the reset drops, as it is now."""

    schema: str
    objects: int
    tables: int
    rows: int  # estimated
    bytes: int


@dataclass
class SidePlan:
    side: str
    target: str
    files: list[SecretFile]
    preflight: str = "not run"
    reset_schemas: list[str] = field(default_factory=list)
    content: list[SchemaContent] = field(default_factory=list)
    nothing_to_reset: str = "not read"  # shown when reset_schemas is empty
    consent: str = "not read"
    backup: str = "not read"
    flyway_now: list[InfoRow] | None = None  # `flyway info` on the target as it is
    flyway_after: list[str] | None = None  # scripts migrate applies after the restore
    baseline_version: str = ""
    sessions: list[str] | None = None  # the other sessions connected to the target now
    skipped: str = ""  # why the target was not asked anything
    load: str = ""  # which load would run (`restore.planned_load`)
    stops: list[tuple[int, str]] = field(default_factory=list)  # (exit code, why)

    def stop(self, code: int, why: str) -> None:
        self.stops.append((code, why))

    @property
    def exit_code(self) -> int:
        code = EXIT_OK
        for stop, _ in self.stops:
            code = worse_exit(code, stop)
        return code

    @property
    def objects(self) -> int:
        return sum(c.objects for c in self.content)

    def summary(self) -> str:
        files = "files ok" if all(f.usable for f in self.files) else "files BLOCKED"
        if self.skipped:
            return f"{self.target}: {files}; target {self.skipped}"
        tables = sum(c.tables for c in self.content)
        rows = sum(c.rows for c in self.content)
        parts = [
            files,
            f"preflight {self.preflight.split(':')[0]}",
            f"reset drops {', '.join(self.reset_schemas) or '-'} "
            f"({self.objects} object(s), {tables} table(s), ~{rows} row(s))",
            f"backup {self.backup.split(':')[0]}",
            f"load {self.load.split(':')[0]}",
        ]
        if self.sessions:
            parts.append(f"{len(self.sessions)} other session(s) connected")
        if self.flyway_after is not None:
            parts.append(f"flyway: {len(self.flyway_after)} pending after the restore")
        return f"{self.target}: " + "; ".join(parts)


@dataclass
class Plan:
    name: str  # the target pair (`default`: the environment's, without RESTORE_TARGETS)
    allow_reset: bool
    terminate_sessions: bool
    sides: list[SidePlan]
    gates: Mapping[str, Sequence[str]]  # evaluated only when the run covers both sides

    @property
    def exit_code(self) -> int:
        code = EXIT_OK
        for side in self.sides:
            code = worse_exit(code, side.exit_code)
        return code

    @property
    def verdict(self) -> str:
        return f"{VERDICTS.get(self.exit_code, 'a run would fail')} (exit {self.exit_code})"

    def summary_lines(self) -> list[str]:
        """The plan in a few log lines (the whole of it is `markdown()`)."""
        return [*(f"plan: {s.summary()}" for s in self.sides), f"plan: {self.verdict}"]

    def markdown(self) -> str:
        lines = [
            f"# Restore plan — {self.name}",
            "",
            "Dry run: read only, nothing was changed. "
            f"Sides: {', '.join(s.side for s in self.sides)}; "
            f"consent to reset (--allow-reset): {'given' if self.allow_reset else 'not given'}; "
            "other sessions on a target (--terminate-sessions): "
            f"{'ended before its reset' if self.terminate_sessions else 'not ended'}.",
            "",
            f"**Verdict: {self.verdict}**",
        ]
        for side in self.sides:
            lines += ["", *_side_markdown(side)]
        lines += ["", "## Gates that would be evaluated", ""]
        if self.gates:
            lines += ["| gate | sub-checks |", "| --- | --- |"]
            lines += [f"| {gate} | {', '.join(checks)} |" for gate, checks in self.gates.items()]
        else:
            lines.append(
                "None in this run: a one-side run evaluates no gate (`restore_all` does; in "
                "Dagster the followup sensor runs them after a one-side restore)."
            )
        return "\n".join(lines) + "\n"


def build_plan(
    settings: Settings,
    sides: Sequence[str] = SIDES,
    databases: Mapping[str, Database] | None = None,
) -> Plan:
    """The plan for `sides` of one target pair (`databases` default to the settings' own)."""
    store = SecretsStore(settings.paths)
    files = {side: store.inspect_side(side) for side in sides}
    # Intake vets every side of a run before any side touches its target: one unusable file
    # and no target is asked anything (nor the embedded server started), as in the run.
    blocked = [f for side in sides for f in files[side] if not f.usable]
    sides_plans = []
    for side in sides:
        db = (databases or {}).get(side) or Database(
            getattr(settings, side), settings.pg, create_missing=False
        )
        plan = SidePlan(side, db.describe(), files[side])
        plan.load = planned_load(settings, [f.relpath for f in files[side]])
        if blocked:
            plan.skipped = (
                "not asked: intake stops the run first (Secrets not usable), before any target "
                "is touched"
            )
            mine = [f for f in files[side] if not f.usable]
            if mine:
                names = ", ".join(f"{f.relpath} ({f.status})" for f in mine)
                plan.stop(EXIT_BLOCKED, f"Secrets not usable: {names}")
        else:
            plan_database(plan, settings, db)
        sides_plans.append(plan)
    gates = GATE_CHECKS if set(sides) == set(SIDES) else {}
    return Plan(
        settings.target_name, settings.allow_reset, settings.terminate_sessions, sides_plans, gates
    )


def plan_database(plan: SidePlan, settings: Settings, db: Database) -> None:
    """The target's questions, in the order a run meets them (psql, preflight, consent,
    backup, Flyway); each is answered even when an earlier one would stop the run."""
    try:
        require_restricted_mode(client_binary("psql", settings.tools.psql))
    except RestoreError as exc:
        plan.stop(exc.exit_code, str(exc))
    if not db.database_exists():
        _not_created_yet(plan, settings, db)
        return
    try:
        version_num = db.server_version_num()
    except RestoreError as exc:  # unreachable: nothing more can be read
        plan.preflight = f"FAILED: {exc}"
        plan.stop(EXIT_FAILED, plan.preflight)
        return
    _preflight(plan, db, version_num)
    try:
        with db.connect(autocommit=True) as conn:
            plan.sessions = [s.describe() for s in connected(conn)]
        _reset(plan, settings, db)
        if db.side == "modernized":
            _flyway(plan, settings, db)
    except psycopg.Error as exc:  # e.g. no privilege on a catalogue view
        plan.stop(EXIT_FAILED, f"could not read the {db.describe()}: {first_line(exc)}")


def _not_created_yet(plan: SidePlan, settings: Settings, db: Database) -> None:
    """An embedded database before its first run (a new named target): the run creates it
    empty, so nothing is dropped or backed up; the plan creates nothing."""
    server = db.server()
    _preflight(plan, server, server.server_version_num())
    plan.nothing_to_reset = "nothing to drop: the database does not exist yet"
    plan.consent = "not needed: the database does not exist yet (the run creates it, empty)"
    plan.backup = "none: the database does not exist yet"
    if db.side == "modernized":
        _flyway(plan, settings, db, now=False)


def _preflight(plan: SidePlan, db: Database, version_num: int) -> None:
    extensions = sorted({e for f in plan.files if f.scan for e in f.scan.extensions})
    try:
        preflight(db, plan.files, extensions)
    except RestoreError as exc:
        plan.preflight = f"FAILED: {exc}"
        plan.stop(exc.exit_code, plan.preflight)
        return
    dumped_by = sorted({f.dumped_by for f in plan.files if f.dumped_by})
    plan.preflight = (
        f"ok: PostgreSQL {version_num // 10000}.{version_num % 10000}, dumps by pg_dump "
        f"{', '.join(dumped_by) or '-'}; extensions the dumps create: "
        f"{', '.join(extensions) or 'none'}"
    )


def _reset(plan: SidePlan, settings: Settings, db: Database) -> None:
    plan.reset_schemas = reset_set(db)
    objects = db.user_schemas_content()
    estimates = db.table_estimates()
    plan.content = [
        SchemaContent(schema, objects.get(schema, 0), *estimates.get(schema, (0, 0, 0)))
        for schema in plan.reset_schemas
    ]
    if not objects:
        plan.consent = "not needed: the target is empty"
        plan.backup = "none: the target is empty"
        return
    consented = True
    try:
        require_consent(db, settings, objects)
        plan.consent = (
            "not needed: the embedded server is the project's own"
            if db.embedded
            else "given (--allow-reset or RESTORE_ALLOW_RESET)"
        )
    except ResetRefused as exc:
        consented = False
        plan.consent = f"MISSING: {exc}"
        plan.stop(exc.exit_code, plan.consent)
    size = sum(c.bytes for c in plan.content)
    where = f"<Secrets>/backups/<UTC>/{db.side}-{db.settings.dbname}.dump"
    plan.backup = (
        f"yes{'' if consented else ' (once consent is given)'}: "
        f"pg_dump --format=custom into {where}; about {_size(size)} of table data to copy "
        "(the dump is compressed, usually smaller)"
    )
    try:
        client_binary("pg_dump", settings.tools.pg_dump)
    except RestoreError as exc:
        plan.stop(exc.exit_code, str(exc))


def _flyway(plan: SidePlan, settings: Settings, db: Database, now: bool = True) -> None:
    """`info` on the target now (`now`: it exists), and what migrate applies after the restore:
    every user schema is reset, so the history starts from the baseline row, not from today's."""
    try:
        config = load_flyway_config(settings.flyway, db)
        if settings.flyway.runner != "native":
            runner_target(settings.flyway, config, db)  # refuses before the restore resets
        engine = native_engine(config, db, lambda _: None)
        plan.flyway_now = engine.info() if now else []
        plan.flyway_after = [m.script for m in engine.pending_after_baseline()]
        plan.baseline_version = config.baseline_version
    except RestoreError as exc:  # FlywayFailed: a bad conf or location stops the run at §4.2
        plan.stop(exc.exit_code, f"flyway: {exc}")


def _side_markdown(side: SidePlan) -> list[str]:
    lines = [f"## {side.side} — {side.target}", "", f"Verdict: {VERDICTS[side.exit_code]}."]
    lines += [f"- stops: {why}" for _, why in side.stops]
    lines += ["", "### Files", "", "| file | sha256 | size | mode | pg_dump | check |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for f in side.files:
        lines.append(
            f"| {f.relpath} | {f.sha256 or '-'} | {f.size} | {f.mode or '-'} | "
            f"{f.dumped_by or '-'} | {_cell(f.status)} |"
        )
    if side.skipped:
        return [*lines, "", f"Target: {side.skipped}."]
    lines += ["", "### Preflight", "", _cell(side.preflight), "", "### Reset", ""]
    if side.reset_schemas:
        lines += [
            f"Drops schema(s) {', '.join(side.reset_schemas)} (every user schema; public is "
            "recreated), in the restore's one transaction:",
            "",
            "| schema | objects | tables | rows (estimate) | table data |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {c.schema} | {c.objects} | {c.tables} | {c.rows} | {_size(c.bytes)} |"
            for c in side.content
        ]
        lines += ["", ROWS_NOTE]
    else:
        lines.append(side.nothing_to_reset)
    lines += ["", f"Consent: {_cell(side.consent)}", "", f"Backup: {side.backup}"]
    if side.sessions is not None:
        lines += ["", "### Sessions connected now", ""]
        lines += [f"- {s}" for s in side.sessions] or [
            "None but this one: no application is connected."
        ]
        if side.sessions:
            lines += [
                "",
                "Their locks hold the reset at most RESTORE_WAIT_SECONDS, then the run stops "
                "naming them; --terminate-sessions ends them just before the reset.",
            ]
    lines += ["", f"Load: {side.load}"]
    if side.flyway_now is not None and side.flyway_after is not None:
        lines += [
            "",
            "### Flyway",
            "",
            f"After the restore: {len(side.flyway_after)} pending from baseline "
            f"{side.baseline_version}: {', '.join(side.flyway_after) or 'none'}.",
            "",
            "`flyway info` on the target as it is now (replaced by the restore):",
            "",
            "```",
            info_table(side.flyway_now),
            "```",
        ]
    return lines


def _cell(text: str) -> str:
    return " — ".join(line.strip() for line in text.splitlines() if line.strip()).replace("|", "/")


def _size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"
