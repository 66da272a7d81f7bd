"""Flyway's migration state, computed once per command, as Flyway 10.17.3 computes it
(MigrationInfoServiceImpl.refresh, MigrationInfoImpl.getState): every history row and every
resolved file that no row accounts for becomes one `MigrationInfo` with its state. What `info`
shows, what `migrate` applies (`pending`), what `validate` reports and what `repair` deletes and
realigns are views of that one list.

Pure on purpose — no database driver, no Dagster — so every rule here is testable with values
and the database side (`commands/`) only executes what this module decided."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.errors import FlywayError
from restore_assets.flyway.history_row import HistoryRow, baseline_row
from restore_assets.flyway.resolver import ResolvedMigration
from restore_assets.flyway.version import Version


class MigrationState(enum.Enum):
    """Flyway's MigrationState, by its display name (what `info` shows and what
    flyway.ignoreMigrationPatterns matches, case-insensitively)."""

    PENDING = "Pending"
    ABOVE_TARGET = "Above Target"
    BELOW_BASELINE = "Below Baseline"
    BASELINE_IGNORED = "Ignored (Baseline)"
    BASELINE = "Baseline"
    IGNORED = "Ignored"
    # Flyway names a failed row whose file is gone "Failed (Missing)"/"Failed (Future)"; this
    # engine shows "Missing"/"Future" for it, and validate reports it both failed and missing.
    MISSING = "Missing"
    FUTURE = "Future"
    SUCCESS = "Success"
    FAILED = "Failed"
    OUT_OF_ORDER = "Out of Order"
    OUTDATED = "Outdated"
    SUPERSEDED = "Superseded"
    DELETED = "Deleted"


# Types Flyway calls synthetic (CoreMigrationType): markers, not migrations.
SYNTHETIC = ("SCHEMA", "BASELINE", "DELETE")
# Types whose rows set the applied baseline (MigrationType.isBaseline): the `baseline` command's
# marker and an applied `B<version>__` file.
BASELINES = ("BASELINE", "SQL_BASELINE")


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


INFO_COLUMNS = ("Category", "Version", "Description", "Type", "Installed On", "State")


def info_table(rows: Sequence[InfoRow]) -> str:
    """Flyway's own `info` layout: a boxed text table (CLI output and flyway_migrate.log)."""
    cells = [tuple(str(v) for v in r.as_dict().values()) for r in rows]
    widths = [max(len(c) for c in column) for column in zip(INFO_COLUMNS, *cells, strict=True)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    return "\n".join([rule, line(INFO_COLUMNS), rule, *(line(c) for c in cells), rule])


@dataclass(frozen=True)
class MigrationInfo:
    """A history row (`applied`) with the file it names (`resolved`), or a file no row
    accounts for; `latest`: the row counts for its version or description (the last live row
    of a version, the latest run of a repeatable), which validate and repair judge."""

    resolved: ResolvedMigration | None
    applied: HistoryRow | None
    state: MigrationState
    latest: bool = False

    @property
    def versioned(self) -> bool:
        if self.applied is not None:
            return self.applied.version is not None
        return self.resolved is not None and self.resolved.version is not None

    def ignored_by(self, config: FlywayConfig) -> bool:
        """ValidatePattern.matchesMigration for flyway.ignoreMigrationPatterns."""
        kind, state = "versioned" if self.versioned else "repeatable", self.state.value.lower()
        return any(
            s in ("*", state) and t in ("*", kind) for t, s in config.ignore_migration_patterns
        )

    def sort_key(self) -> tuple:
        """MigrationInfoImpl.compareTo: files at or below the baseline first, then whatever has
        an installed rank in rank order, then the rest by version, repeatables last (by
        description as Java's String.compareTo orders it)."""
        if self.applied is not None:
            return (1, self.applied.installed_rank)
        m = self.resolved
        if m.version is None:
            return (2, 1, m.description.encode("utf-16-be"))
        if self.state in (MigrationState.BELOW_BASELINE, MigrationState.BASELINE_IGNORED):
            return (0, m.version)
        return (2, 0, m.version)

    def info_row(self) -> InfoRow:
        """SCHEMA, BASELINE and DELETE rows are synthetic: Flyway's info shows no category."""
        if self.applied is None:
            m = self.resolved
            category = "Repeatable" if m.repeatable else "Versioned"
            return InfoRow(
                category,
                m.version_text,
                m.description,
                m.type,
                None,
                self.state.value,
                m.script,
                m.checksum,
            )
        row = self.applied
        category = "" if row.type in SYNTHETIC else "Versioned" if row.version else "Repeatable"
        return InfoRow(
            category,
            row.version,
            row.description,
            row.type,
            row.installed_on,
            self.state.value,
            row.script,
            row.checksum,
        )


def failed_migration_message(row: HistoryRow) -> str:
    """Shared by validate and migrate, which both stop on a failed row; Flyway's words
    (MigrationInfoImpl.validate), then how."""
    if row.version is None:
        head = f"Detected failed repeatable migration: {row.description}."
    else:
        head = f"Detected failed migration to version {row.version} ({row.description})."
    return (
        f"{head}\nPlease remove any half-completed changes then run repair to fix the schema "
        "history (`restore-assets flyway repair`), then migrate again."
    )


# The rest of MigrationInfoImpl.validate's messages, word for word: a DBA searches for them.
_NOT_RESOLVED = (
    "Detected applied migration not resolved locally: {}.\nIf you removed this migration "
    "intentionally, run repair to mark the migration as deleted."
)
_IGNORED = (
    "Detected resolved migration not applied to database: {}.\nTo ignore this migration, set "
    "-ignoreMigrationPatterns='*:ignored'. To allow executing this migration, set "
    "-outOfOrder=true."
)
_PENDING = (
    "Detected resolved {}migration not applied to database: {}.\nTo fix this error, either run "
    "migrate, or set -ignoreMigrationPatterns='*:pending'."
)
_MISMATCH = (
    "Migration {} mismatch for migration version {}\n-> Applied to database : {}\n"
    "-> Resolved locally    : {}\nEither revert the changes to the migration, or run repair to "
    "update the schema history."
)


class MigrationInfoService:
    """MigrationInfoServiceImpl: the state of every migration, computed once from the config,
    the resolved files and the history rows; the methods below are views of `infos`."""

    def __init__(
        self, config: FlywayConfig, resolved: list[ResolvedMigration], rows: list[HistoryRow]
    ):
        self.config = config
        self.resolved = resolved
        self.rows = rows
        # appliedBaseline: the highest baseline row's version.
        self.baseline = max(
            (Version.parse(r.version) for r in rows if r.type in BASELINES and r.version),
            default=None,
        )
        # Files and rows pair by version and type (getResolvedVersionedMigrations): `V1` and
        # `B1` are two migrations.
        versioned = {(m.version, m.type): m for m in resolved if m.version is not None}
        repeatable = {m.stored_description: m for m in resolved if m.version is None}
        # lastResolved: an applied version below it is Missing, at or above it Future.
        self.last_resolved = max((v for v, _ in versioned), default=None)
        deleted = _deleted_ranks(rows)
        # The applied versioned migrations that count (not markers, not deleted by repair): the
        # last row of each version and type.
        self.applied = {
            (Version.parse(r.version), r.type): r
            for r in rows
            if r.version is not None and r.type not in SYNTHETIC and r.installed_rank not in deleted
        }
        # pendingBaseline: the highest baseline migration no live row accounts for.
        self.pending_baseline = max(
            (
                v
                for (v, t), m in versioned.items()
                if m.baseline_migration and (v, t) not in self.applied
            ),
            default=None,
        )
        self.last_applied, out_of_order = _applied_order(rows, deleted)
        # MigrationInfoServiceImpl.getLatestRepeatableRuns (DELETE rows included).
        latest_runs = {r.description: r for r in rows if r.version is None and r.type != "SCHEMA"}

        infos = []
        for row in rows:
            if row.version is not None and row.type == "DELETE":
                continue  # a versioned DELETE row only marks the row it deletes
            if row.version is not None:
                key = (Version.parse(row.version), row.type)
                file, latest = versioned.get(key), self.applied.get(key) is row
            else:
                file, latest = repeatable.get(row.description), latest_runs.get(row.description)
                latest = latest is row
            if row.installed_rank in deleted:
                state = MigrationState.DELETED
            else:
                state = self._applied_state(row, file, latest, row.installed_rank in out_of_order)
            infos.append(MigrationInfo(file, row, state, latest))
        for key, m in versioned.items():
            if key not in self.applied:
                infos.append(MigrationInfo(m, None, self._resolved_state(m)))
        for m in repeatable.values():
            # Done only if its latest run is a live run of the same text
            # (getPendingResolvedRepeatableMigrations).
            run = latest_runs.get(m.stored_description)
            if (
                run is None
                or run.type == "DELETE"
                or run.installed_rank in deleted
                or not m.checksum_matches(run.checksum)
            ):
                infos.append(MigrationInfo(m, None, MigrationState.PENDING))
        self.infos = sorted(infos, key=MigrationInfo.sort_key)

    def _applied_state(
        self, row: HistoryRow, file: ResolvedMigration | None, latest: bool, out_of_order: bool
    ) -> MigrationState:
        """BaseAppliedMigration.getState, in its order of checks."""
        if row.type == "DELETE":
            return MigrationState.SUCCESS
        if row.type == "BASELINE":
            return MigrationState.BASELINE
        if row.type == "SCHEMA":
            return MigrationState.SUCCESS
        missing = self._missing_state(row) if file is None and (row.version or latest) else None
        if row.type in BASELINES:  # an applied `B` file: BaselineAppliedMigration.getState
            return MigrationState.FAILED if not row.success else missing or MigrationState.BASELINE
        if missing is not None:
            return missing
        if not row.success:
            return MigrationState.FAILED
        if row.version is None:  # getRepeatableState
            if not latest:
                return MigrationState.SUPERSEDED
            if file.checksum_matches(row.checksum):
                return MigrationState.SUCCESS
            return MigrationState.OUTDATED
        if out_of_order:
            return MigrationState.OUT_OF_ORDER
        return MigrationState.SUCCESS

    def _missing_state(self, row: HistoryRow) -> MigrationState:
        """getMissingState: a row whose file is gone is Missing below the highest file, else
        Future."""
        if row.version is None or (
            self.last_resolved is not None and Version.parse(row.version) < self.last_resolved
        ):
            return MigrationState.MISSING
        return MigrationState.FUTURE

    def _resolved_state(self, m: ResolvedMigration) -> MigrationState:
        """ResolvedMigration.getState for a file no live row accounts for, and
        BaselineResolvedMigration.getState's turn for a `B` file: on a database where nothing
        is applied yet the highest one is Pending and the versions up to it are baselined by
        it; once anything is applied, every `B` file is Ignored (and no validate error)."""
        state = self._versioned_state(m.version)
        if not m.baseline_migration:
            return state
        anything_applied = self.baseline is not None or self.last_applied is not None
        if state is MigrationState.PENDING and anything_applied:
            return MigrationState.IGNORED
        if state is MigrationState.BASELINE_IGNORED and m.version == self.pending_baseline:
            return MigrationState.BASELINE_IGNORED if anything_applied else MigrationState.PENDING
        return state

    def _versioned_state(self, version: Version) -> MigrationState:
        # Below or at the applied baseline, or with nothing applied, the pending B file's.
        baseline = self.baseline if self.last_applied is not None else self.pending_baseline
        if baseline is not None and version < baseline:
            return MigrationState.BELOW_BASELINE
        if baseline is not None and version == baseline:
            return MigrationState.BASELINE_IGNORED
        if self.config.target is not None and version > Version.parse(self.config.target):
            return MigrationState.ABOVE_TARGET
        if (
            self.last_applied is not None
            and version < self.last_applied
            and not self.config.out_of_order
        ):
            return MigrationState.IGNORED
        return MigrationState.PENDING

    def check_target(self) -> None:
        """failOnMissingTarget (MigrationInfoServiceImpl.validateTarget): the target version
        must be a file's or an applied row's. Not for repair, which Flyway runs at target
        LATEST."""
        if self.config.target is None:
            return
        target = Version.parse(self.config.target)
        versions = [m.version for m in self.resolved]
        versions += [Version.parse(r.version) for r in self.rows if r.version]
        if target not in versions:
            raise FlywayError(
                f"No migration with a target version {self.config.target} could be found. "
                "Ensure target is specified correctly and the migration exists."
            )

    # -- views ------------------------------------------------------------------------------

    def info(self) -> list[InfoRow]:
        """Flyway's `info` table: schema marker, baseline, versions in order, then repeatables."""
        self.check_target()
        return [i.info_row() for i in self.infos]

    def pending(self) -> list[ResolvedMigration]:
        """What migrate would apply, in order: new versions (out-of-order ones if allowed, none
        above flyway.target), then new or changed repeatables."""
        self.check_target()
        return [i.resolved for i in self.infos if i.state is MigrationState.PENDING]

    def failed(self) -> list[HistoryRow]:
        """Rows of failed migrations, in rank order: validate and migrate stop on them."""
        return [r for r in self.rows if not r.success]

    def gone(self) -> list[HistoryRow]:
        """Applied migrations whose file is gone, in rank order, unless
        flyway.ignoreMigrationPatterns matches their state (Missing, or Future above the highest
        file): what validate reports and repair marks deleted (MigrationInfoImpl.validate,
        DbRepair.deleteMissingMigrations)."""
        gone = (MigrationState.MISSING, MigrationState.FUTURE)
        return [
            i.applied
            for i in self.infos
            if i.state in gone and i.latest and not i.ignored_by(self.config)
        ]

    def realignable(self) -> list[tuple[HistoryRow, ResolvedMigration]]:
        """Live applied migrations with their file, in rank order, for repair to realign
        (DbRepair.alignAppliedMigrationsWithResolvedMigrations)."""
        return [
            (i.applied, i.resolved)
            for i in self.infos
            if i.applied is not None
            and i.resolved is not None
            and i.applied.type not in SYNTHETIC
            and i.state is not MigrationState.DELETED
        ]

    def validate(self, pending_is_error: bool) -> list[str]:
        """Flyway's validate messages; pending files only count when `pending_is_error` (the
        validate command), not for validateOnMigrate; files above flyway.target do not count."""
        self.check_target()
        errors = [failed_migration_message(row) for row in self.failed()]
        for row in self.gone():
            if (
                row.version is None
                or self.baseline is None
                or (Version.parse(row.version) > self.baseline)
            ):
                errors.append(_NOT_RESOLVED.format(row.version or row.description))
        live = [i for i in self.infos if i.applied is not None and i.versioned and i.latest]
        for i in sorted(live, key=lambda i: Version.parse(i.applied.version)):
            above_baseline = self.baseline is None or (
                Version.parse(i.applied.version) > self.baseline
            )
            if above_baseline and i.resolved is not None and i.applied.success:
                errors += _mismatches(i.applied, i.resolved)
        for i in self.infos:
            if i.applied is not None or i.ignored_by(self.config):
                continue
            if i.state is MigrationState.IGNORED and not i.resolved.baseline_migration:
                errors.append(
                    _IGNORED.format(i.resolved.version_text)
                    + f"\n({i.resolved.script} is below the highest applied version "
                    f"{self.last_applied}: set flyway.outOfOrder=true to apply it, or renumber it)"
                )
            elif i.state is MigrationState.PENDING and pending_is_error:
                kind = "" if i.versioned else "repeatable "
                name = i.resolved.version_text if i.versioned else i.resolved.description
                errors.append(_PENDING.format(kind, name))
        return errors


def _mismatches(row: HistoryRow, file: ResolvedMigration) -> list[str]:
    """Type, checksum (NULL on either side matches) and description of an applied versioned
    migration against its file."""
    errors = []
    if row.type != file.type:
        errors.append(_MISMATCH.format("type", row.version, row.type, file.type))
    if row.checksum is not None and file.checksum is not None and row.checksum != file.checksum:
        errors.append(_MISMATCH.format("checksum", row.version, row.checksum, file.checksum))
    if row.description != file.stored_description:
        errors.append(
            _MISMATCH.format("description", row.version, row.description, file.description)
        )
    return errors


def _deleted_ranks(rows: list[HistoryRow]) -> set[int]:
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


def _applied_order(rows: list[HistoryRow], deleted: set[int]) -> tuple[Version | None, set[int]]:
    """lastApplied, and the ranks of versions applied after a higher one
    (MigrationInfoServiceImpl.updateContextFromAppliedVersionedMigrations: walked in rank
    order; deleted rows do not raise the mark)."""
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
    return last, late


def pending_after_baseline(
    config: FlywayConfig, resolved: list[ResolvedMigration]
) -> list[ResolvedMigration]:
    """What migrate would apply to a freshly restored baseline: the history holds only the
    baseline row `flyway baseline` writes at flyway.baselineVersion."""
    config.baseline()  # refused in Flyway's words before it is compared with anything
    row = baseline_row(config.baseline_version, config.baseline_description)
    return MigrationInfoService(config, resolved, [row]).pending()
