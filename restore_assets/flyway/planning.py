"""What Flyway would do, decided from the config, the resolved files and the history rows alone:
pending migrations, validation errors, the info table, placeholders, transactional or not.

Pure on purpose — no database driver, no Dagster — so every rule here is testable with values
and the database side (`commands/`) only executes what this module decided."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.errors import FlywayError
from restore_assets.flyway.history_row import HistoryRow, baseline_row
from restore_assets.flyway.resolver import ResolvedMigration
from restore_assets.flyway.version import Version

if TYPE_CHECKING:
    from restore_assets.flyway.statements import Statement


@dataclass(frozen=True)
class InfoRow:
    """One line of `flyway info`, in Flyway's own words for category and state."""

    category: str
    version: str | None
    description: str
    type: str
    installed_on: dt.datetime | None
    state: str
    script: str = ""
    checksum: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "category": self.category,
            "version": self.version or "",
            "description": self.description,
            "type": self.type,
            "installed_on": self.installed_on.isoformat(sep=" ", timespec="seconds")
            if self.installed_on
            else "",
            "state": self.state,
        }


@dataclass
class MigrateResult:
    """What one migrate did, for the caller's log and metadata."""

    schemas_created: list[str] = field(default_factory=list)
    baselined: bool = False
    applied: list[HistoryRow] = field(default_factory=list)
    seconds: float = 0.0


def is_transactional(
    migration: ResolvedMigration, statements: list[Statement], mixed: bool
) -> bool:
    """Whether the script runs in one transaction; mixing both kinds is refused unless `mixed`,
    as Flyway refuses it."""
    kinds = {s.transactional for s in statements}
    if len(kinds) == 2 and not mixed:
        offending = next(s for s in statements if not s.transactional)
        raise FlywayError(
            f"Detected both transactional and non-transactional statements within the same "
            f"migration (even though mixed is false). Offending statement in {migration.script} "
            f"at line {offending.line}: {offending.code.splitlines()[0]}"
        )
    return False not in kinds  # mixed=true with both kinds runs the whole script in autocommit


def replace_placeholders(text: str, values: dict[str, str]) -> str:
    """Flyway 10.17.3's PlaceholderReplacingReader.read(): every `${` starts a placeholder that
    runs to the next `}` (any characters), looked up case-insensitively; an unknown one fails
    rather than run as is. Ported step by step, quirks included: after a `$` that does not start
    `${`, the next character is passed on unchecked (so `$${x}` stays as it is)."""
    prefix, suffix = "${", "}"
    known = {k.lower(): v for k, v in values.items()}
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        buffer = text[i]  # read ahead while what was read could still begin the prefix
        i += 1
        while len(buffer) < len(prefix) and prefix.startswith(buffer) and i < n:
            buffer += text[i]
            i += 1
        if buffer != prefix:
            out.append(buffer)
            continue
        end = text.find(suffix, i)
        name = text[i:end] if end >= 0 else text[i : -len(suffix)]
        i = end + len(suffix) if end >= 0 else n
        if name.lower() not in known:
            if "flyway:" in name:
                raise FlywayError(f"Failed to populate value for default placeholder: ${{{name}}}")
            raise FlywayError(
                f"No value provided for placeholder: ${{{name}}}. "
                f"Set flyway.placeholders.{name} or remove it from the migration"
            )
        out.append(known[name.lower()])
    return "".join(out)


def failed_migration_message(row: HistoryRow) -> str:
    """Shared by validate and migrate, which both stop on a failed row."""
    return (
        f"Detected failed migration to version {row.version} ({row.description}). "
        "Please remove any half-completed changes then run repair to fix the schema history "
        "(`restore-assets flyway repair`), then migrate again."
    )


def _baseline_version(rows: list[HistoryRow]) -> Version | None:
    for row in rows:
        if row.type == "BASELINE" and row.version:
            return Version.parse(row.version)
    return None


# Types Flyway calls synthetic (CoreMigrationType): markers, not migrations.
SYNTHETIC = ("SCHEMA", "BASELINE", "DELETE")


def deleted_ranks(rows: list[HistoryRow]) -> set[int]:
    """Rows a later DELETE row (written by repair) marks as deleted: the latest earlier
    migration row of its version, or of its description for a repeatable
    (MigrationInfoServiceImpl.markAsDeleted / markRepeatableAsDeleted)."""
    deleted: set[int] = set()
    for index, row in enumerate(rows):
        if row.type != "DELETE" or not row.success:
            continue
        for earlier in reversed(rows[:index]):
            if earlier.type in SYNTHETIC or not _same_migration(earlier, row):
                continue
            if earlier.installed_rank in deleted and row.version is not None:
                raise FlywayError(
                    f"Corrupted schema history: multiple delete entries for version {row.version}"
                )
            deleted.add(earlier.installed_rank)
            break
    return deleted


def _same_migration(a: HistoryRow, b: HistoryRow) -> bool:
    if a.version is None or b.version is None:
        return a.version is None and b.version is None and a.description == b.description
    return Version.parse(a.version) == Version.parse(b.version)


def _applied_versions(rows: list[HistoryRow]) -> dict[Version, HistoryRow]:
    """Applied versioned migrations that count: not markers, not deleted by repair."""
    deleted = deleted_ranks(rows)
    return {
        Version.parse(r.version): r
        for r in rows
        if r.version is not None and r.type not in SYNTHETIC and r.installed_rank not in deleted
    }


def _latest_runs(rows: list[HistoryRow]) -> dict[str, HistoryRow]:
    """The latest row per repeatable description, DELETE rows included
    (MigrationInfoServiceImpl.getLatestRepeatableRuns)."""
    return {r.description: r for r in rows if r.version is None and r.type != "SCHEMA"}


def _is_missing(version: Version, files: dict) -> bool:
    """An applied version with no file is Missing below the highest file, else Future
    (BaseAppliedMigration.getMissingState; with no file at all, Future)."""
    return bool(files) and version < max(files)


def gone_applied(
    config: FlywayConfig, resolved: list[ResolvedMigration], rows: list[HistoryRow]
) -> list[HistoryRow]:
    """Applied migrations whose file is gone, in rank order, unless flyway.ignoreMigrationPatterns
    matches their state (Missing, or Future above the highest file): what validate reports and
    repair marks deleted (MigrationInfoImpl.validate, DbRepair.deleteMissingMigrations)."""
    files = {m.version: m for m in resolved if m.version is not None}
    repeatables = {m.stored_description for m in resolved if m.version is None}
    deleted = deleted_ranks(rows)
    live = set(map(id, _applied_versions(rows).values()))
    latest = _latest_runs(rows)
    gone = []
    for r in rows:
        if r.version is not None:
            version = Version.parse(r.version)
            if id(r) in live and version not in files:
                state = "missing" if _is_missing(version, files) else "future"
                if not ignored_by_pattern(config, True, state):
                    gone.append(r)
        elif (
            r.type not in SYNTHETIC
            and r.installed_rank not in deleted
            and latest[r.description] is r
            and r.description not in repeatables
            and not ignored_by_pattern(config, False, "missing")
        ):
            gone.append(r)
    return gone


def ignored_by_pattern(config: FlywayConfig, versioned: bool, state: str) -> bool:
    """ValidatePattern.matchesMigration for flyway.ignoreMigrationPatterns."""
    return any(
        s in ("*", state) and t in ("*", "versioned" if versioned else "repeatable")
        for t, s in config.ignore_migration_patterns
    )


def _above_target(config: FlywayConfig, version: Version) -> bool:
    return config.target is not None and version > Version.parse(config.target)


def check_target(
    config: FlywayConfig, resolved: list[ResolvedMigration], rows: list[HistoryRow]
) -> None:
    """failOnMissingTarget (MigrationInfoServiceImpl.validateTarget): the target version must
    be a file's or an applied row's."""
    if config.target is None:
        return
    target = Version.parse(config.target)
    versions = [m.version for m in resolved] + [Version.parse(r.version) for r in rows if r.version]
    if target not in versions:
        raise FlywayError(
            f"No migration with a target version {config.target} could be found. Ensure "
            "target is specified correctly and the migration exists."
        )


def pending_migrations(
    config: FlywayConfig, resolved: list[ResolvedMigration], rows: list[HistoryRow]
) -> list[ResolvedMigration]:
    """What migrate would apply, in order: new versions (out-of-order ones if allowed, none
    above flyway.target), then new or changed repeatables."""
    check_target(config, resolved, rows)
    baseline = _baseline_version(rows)
    applied = _applied_versions(rows)
    highest = max([*applied, *([baseline] if baseline else [])], default=None)
    latest, deleted = _latest_runs(rows), deleted_ranks(rows)
    pending = []
    for m in resolved:
        if m.version is None:
            # Done only if its latest run is a live run of the same text
            # (MigrationInfoServiceImpl.getPendingResolvedRepeatableMigrations).
            run = latest.get(m.stored_description)
            if (
                run is None
                or run.type == "DELETE"
                or run.installed_rank in deleted
                or not m.checksum_matches(run.checksum)
            ):
                pending.append(m)
            continue
        if m.version in applied or (baseline is not None and m.version <= baseline):
            continue
        if _above_target(config, m.version):
            continue
        if highest is not None and m.version < highest and not config.out_of_order:
            continue
        pending.append(m)
    versioned = sorted((m for m in pending if m.version is not None), key=lambda m: m.version)
    return versioned + [m for m in pending if m.version is None]


def pending_after_baseline(
    config: FlywayConfig, resolved: list[ResolvedMigration]
) -> list[ResolvedMigration]:
    """What migrate would apply to a freshly restored baseline: the history holds only the
    baseline row `flyway baseline` writes at flyway.baselineVersion."""
    row = baseline_row(config.baseline_version, config.baseline_description)
    return pending_migrations(config, resolved, [row])


def validation_errors(
    config: FlywayConfig,
    resolved: list[ResolvedMigration],
    rows: list[HistoryRow],
    pending_is_error: bool,
) -> list[str]:
    """Flyway's validate messages; pending files only count when `pending_is_error` (the validate
    command), not for validateOnMigrate; files above flyway.target do not count."""
    check_target(config, resolved, rows)
    errors = []
    baseline = _baseline_version(rows)
    applied = _applied_versions(rows)
    files = {m.version: m for m in resolved if m.version is not None}
    highest_applied = max(applied, default=None)
    for row in rows:
        if not row.success:
            errors.append(failed_migration_message(row))
    for row in gone_applied(config, resolved, rows):
        if row.version is None or baseline is None or Version.parse(row.version) > baseline:
            errors.append(
                "Detected applied migration not resolved locally: "
                f"{row.version or row.description}. If you removed it on purpose, run repair "
                "to mark it as deleted."
            )
    for version, row in sorted(applied.items()):
        if baseline is not None and version <= baseline:
            continue
        file = files.get(version)
        if file is None:
            continue  # missing (above) or future: applied by a newer release, ignored
        if not row.success:
            continue
        if row.type != file.type:
            errors.append(
                f"Migration type mismatch for migration version {row.version}\n"
                f"-> Applied to database : {row.type}\n-> Resolved locally    : {file.type}"
            )
        if row.checksum is not None and file.checksum is not None and row.checksum != file.checksum:
            errors.append(
                f"Migration checksum mismatch for migration version {row.version}\n"
                f"-> Applied to database : {row.checksum}\n"
                f"-> Resolved locally    : {file.checksum}\n"
                "Either revert the changes to the migration, or run repair to update the schema "
                "history."
            )
        if row.description != file.stored_description:
            errors.append(
                f"Migration description mismatch for migration version {row.version}\n"
                f"-> Applied to database : {row.description}\n"
                f"-> Resolved locally    : {file.description}"
            )
    for version, file in sorted(files.items()):
        if version in applied or (baseline is not None and version <= baseline):
            continue
        if _above_target(config, version):
            continue
        out_of_order = highest_applied is not None and version < highest_applied
        if out_of_order and not config.out_of_order:
            if ignored_by_pattern(config, True, "ignored"):
                continue
            errors.append(
                f"Detected resolved migration not applied to database: {file.version_text} "
                f"({file.script}) is below the highest applied version {highest_applied}; "
                "set flyway.outOfOrder=true to apply it, or renumber it."
            )
        elif pending_is_error and not ignored_by_pattern(config, True, "pending"):
            errors.append(
                f"Detected resolved migration not applied to database: {file.version_text}."
            )
    if pending_is_error:
        for m in pending_migrations(config, resolved, rows):
            if m.version is None and not ignored_by_pattern(config, False, "pending"):
                errors.append(
                    f"Detected resolved repeatable migration not applied to database: "
                    f"{m.description}."
                )
    return errors


def _from_history(row: HistoryRow, state: str, category: str = "Versioned") -> InfoRow:
    return InfoRow(
        category,
        row.version,
        row.description,
        row.type,
        row.installed_on,
        state,
        row.script,
        row.checksum,
    )


def _from_file(m: ResolvedMigration, state: str, installed_on=None) -> InfoRow:
    category = "Repeatable" if m.repeatable else "Versioned"
    return InfoRow(
        category, m.version_text, m.description, m.type, installed_on, state, m.script, m.checksum
    )


def build_info(
    config: FlywayConfig, resolved: list[ResolvedMigration], rows: list[HistoryRow]
) -> list[InfoRow]:
    """Flyway's `info` table: schema marker, baseline, versions in order, then repeatables."""
    baseline = _baseline_version(rows)
    applied = _applied_versions(rows)
    files = {m.version: m for m in resolved if m.version is not None}
    highest_applied = max(applied, default=None)
    pending = {m.script for m in pending_migrations(config, resolved, rows)}
    # SCHEMA and BASELINE rows are "synthetic" to Flyway: its info shows no category for them.
    # Sort keys follow MigrationInfoImpl.compareTo: below-baseline files first, then whatever has
    # an installed rank in rank order, then the rest by version, repeatables last.
    deleted = deleted_ranks(rows)
    out_of_order = _out_of_order(rows, deleted)
    keyed: list[tuple[tuple, InfoRow]] = []
    for r in rows:
        if r.type in ("SCHEMA", "BASELINE"):
            state = "Success" if r.type == "SCHEMA" else "Baseline"
            keyed.append(((1, r.installed_rank), _from_history(r, state, "")))
    # Versioned rows: a DELETE row is not shown, the row it deleted is (BaseAppliedMigration
    # .getState and MigrationInfoImpl.getState, in their order of checks).
    for row in rows:
        if row.version is None or row.type in SYNTHETIC:
            continue
        version = Version.parse(row.version)
        if row.installed_rank in deleted:
            state = "Deleted"
        elif version not in files:
            state = "Missing" if _is_missing(version, files) else "Future"
        elif not row.success:
            state = "Failed"
        elif row.installed_rank in out_of_order:
            state = "Out of Order"
        else:
            state = "Success"
        keyed.append(((1, row.installed_rank), _from_history(row, state)))
    for version, m in files.items():
        if version in applied:
            continue
        if baseline is not None and version <= baseline:
            state = "Ignored (Baseline)" if version == baseline else "Below Baseline"
            keyed.append(((0, version), _from_file(m, state)))
            continue
        if _above_target(config, version):
            state = "Above Target"
        elif m.script in pending or highest_applied is None:
            state = "Pending"
        else:
            state = "Ignored"
        keyed.append(((2, 0, version), _from_file(m, state)))
    # Repeatables: every run is a row of its own (the latest Success, Outdated or Missing, older
    # ones Superseded); a repair's DELETE row shows as a synthetic Success; a new or changed file
    # adds a Pending row at the end.
    repeatables = {m.stored_description: m for m in resolved if m.version is None}
    latest = _latest_runs(rows)
    for r in rows:
        if r.version is not None or r.type == "SCHEMA":
            continue
        m = repeatables.get(r.description)
        is_latest = latest[r.description] is r
        category = "" if r.type == "DELETE" else "Repeatable"
        if r.installed_rank in deleted:
            state = "Deleted"
        elif r.type == "DELETE":
            state = "Success"
        elif m is None and is_latest:
            state = "Missing"
        elif not r.success:
            state = "Failed"
        elif not is_latest:
            state = "Superseded"
        else:
            state = "Success" if m.checksum_matches(r.checksum) else "Outdated"
        keyed.append(((1, r.installed_rank), _from_history(r, state, category)))
    for m in repeatables.values():
        if m.script in pending:
            keyed.append(((2, 1, m.description.encode("utf-16-be")), _from_file(m, "Pending")))
    keyed.sort(key=lambda item: item[0])
    return [row for _, row in keyed]


def _out_of_order(rows: list[HistoryRow], deleted: set[int]) -> set[int]:
    """Ranks of versions applied after a higher one (MigrationInfoServiceImpl
    .updateContextFromAppliedVersionedMigrations: walked in rank order; deleted rows do not
    raise the mark)."""
    last, late = None, set()
    for row in rows:
        if row.version is None or row.type in ("SCHEMA", "DELETE"):
            continue
        version = Version.parse(row.version)
        if last is None or version > last:
            if row.installed_rank not in deleted:
                last = version
        else:
            late.add(row.installed_rank)
    return late
