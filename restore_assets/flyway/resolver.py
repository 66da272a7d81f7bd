"""Finding migrations: `V<version>__<description>.sql`, `B<version>__<description>.sql` (Flyway
10's baseline migrations) and `R__<description>.sql` files in `filesystem:` locations, found as
Flyway's FileSystemScanner finds them (subfolders, links followed, hidden folders skipped),
ordered by numeric version, duplicates an error.

The location is outside input (a Secrets or ConfigMap folder), so a file is read only when it is
a regular file inside the location: links are followed as Flyway follows them (a ConfigMap's
files are links into its `..data` folder), but a link leading out of the location, or back into
a folder above it (a loop), is refused, and each file is opened from the location's descriptor
one folder at a time without following a link, by the path its links resolved to."""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from restore_assets.flyway.checksum import checksum_text, decode
from restore_assets.flyway.conf import FlywayConfig
from restore_assets.flyway.errors import FlywayError
from restore_assets.flyway.history_row import abbreviate_description
from restore_assets.flyway.version import Version

SUFFIX = ".sql"
_BOM_AND_NEXT = re.compile("\ufeff.?", re.DOTALL)
SEPARATOR = "__"
# Flyway 10's migration types, by file prefix (ResourceNameParser's prefixes).
VERSIONED, BASELINE_MIGRATION, REPEATABLE = "V", "B", "R"
TYPES = {VERSIONED: "SQL", BASELINE_MIGRATION: "SQL_BASELINE", REPEATABLE: "SQL"}
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class ResolvedMigration:
    version: Version | None  # None for repeatable migrations
    description: str
    script: str  # relative to the location root, with `/`
    path: Path
    checksum: int
    type: str = "SQL"
    # A repeatable's checksum without placeholder replacement, which Flyway also accepts
    # (ResolvedMigrationImpl.checksumMatches); None for versioned migrations.
    equivalent_checksum: int | None = None
    # The location's folder and the file's own path below it, its links resolved: what is read.
    location: Path | None = None
    inside: str = ""

    def checksum_matches(self, applied: int | None) -> bool:
        return applied == self.checksum or (
            self.equivalent_checksum is not None and applied == self.equivalent_checksum
        )

    @property
    def stored_description(self) -> str:
        """The description as the history stores it (abbreviated past 200 characters)."""
        return abbreviate_description(self.description)

    @property
    def repeatable(self) -> bool:
        return self.version is None

    @property
    def baseline_migration(self) -> bool:
        """A `B<version>__` file: applied instead of the versions up to it on a fresh database."""
        return self.type == TYPES[BASELINE_MIGRATION]

    @property
    def version_text(self) -> str | None:
        return self.version.text if self.version else None

    def read_bytes(self) -> bytes:
        if self.location is None:
            return self.path.read_bytes()
        return read_inside(self.location, self.inside, self.path)

    def raw_text(self, encoding: str) -> str:
        """The file decoded strictly (what the checksum is taken over)."""
        return decode(self.read_bytes(), encoding, self.script)

    def read_text(self, encoding: str) -> str:
        """The SQL to execute: decoded strictly, U+FEFF removed as Flyway's parser does."""
        return strip_boms(self.raw_text(encoding))


# Flyway's callback events (api/callback/Event.java): `<event>.sql` or `<event>__<text>.sql`
# in a location is a SQL callback Flyway runs around its commands.
CALLBACK_EVENTS = frozenset(
    "beforeClean afterClean afterCleanError beforeMigrate beforeEachMigrate "
    "beforeEachMigrateStatement afterEachMigrateStatement afterEachMigrateStatementError "
    "afterEachMigrate afterEachMigrateError beforeRepeatables afterVersioned afterMigrateApplied "
    "afterMigrate afterMigrateError beforeUndo beforeEachUndo beforeEachUndoStatement "
    "afterEachUndoStatement afterEachUndoStatementError afterEachUndo afterEachUndoError "
    "afterUndo afterUndoError beforeValidate afterValidate afterValidateError beforeBaseline "
    "afterBaseline afterBaselineError beforeRepair afterRepair afterRepairError beforeInfo "
    "afterInfo afterInfoError afterInfoOperationFinish createSchema beforeConnect".split()
)


def is_callback(name: str) -> bool:
    """A SQL callback file, as ResourceNameParser reads one (event prefix, nothing before `__`)."""
    if not name.upper().endswith(SUFFIX.upper()):
        return False
    stem = name[: -len(SUFFIX)]
    return any(stem == event or stem.startswith(event + SEPARATOR) for event in CALLBACK_EVENTS)


def strip_boms(text: str) -> str:
    """Flyway 10.17.3's BomStrippingReader.read(): a U+FEFF is dropped and the character after
    it is returned unchecked, so of two in a row the second stays."""
    return _BOM_AND_NEXT.sub(lambda m: m.group()[1:], text)


def parse_name(name: str) -> tuple[str, str | None, str] | None:
    """(prefix `V`/`B`/`R`, version text with `_`→`.`, description with `_`→space); None if the
    name is not a migration (Flyway skips those). Follows Flyway 10.17.3's Scanner.getResources
    (StringUtils.startsAndEndsWith: prefix case-sensitive, suffix case-insensitive, something
    between them) and ResourceNameParser.parse (split at the first `__`; a versioned or baseline
    name needs a valid version before it, a repeatable one nothing)."""
    if not name.upper().endswith(SUFFIX.upper()) or len(name) <= 1 + len(SUFFIX):
        return None
    prefix, rest = name[0], name[: -len(SUFFIX)][1:]
    if prefix not in TYPES:
        return None
    version_text, _, description = rest.partition(SEPARATOR)
    description = description.replace("_", " ")
    if prefix == REPEATABLE:
        return (prefix, None, description) if version_text == "" else None
    version_text = version_text.replace("_", ".")
    try:
        Version.parse(version_text)
    except ValueError:
        return None
    return prefix, version_text, description


def scan(root: Path) -> list[Path]:
    """The files below `root`, as FileSystemScanner.findResourceNamesFromFileSystem lists them:
    links followed, hidden folders skipped (#1807, the `..data` and timestamped folders of a
    Kubernetes ConfigMap volume), an entry it cannot read (a dangling link) passed over. A folder
    reached through a link that leaves `root` or loops back above itself is refused."""
    top = root.resolve()
    found: list[Path] = []

    def visit(folder: Path, real: Path, above: tuple[Path, ...]) -> None:
        with os.scandir(folder) as entries:
            listing = sorted(entries, key=lambda e: e.name)
        for entry in listing:
            path = Path(entry.path)
            if not os.access(path, os.R_OK):  # File.canRead: a dangling link, no permission
                continue
            try:
                is_dir = entry.is_dir()  # follows a link, as Java's File.isDirectory
            except OSError:
                continue
            if not is_dir:
                found.append(path)
                continue
            if entry.name.startswith("."):  # File.isHidden on Unix
                continue
            target = real / entry.name
            if entry.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(top):
                    raise FlywayError(
                        f"{path}: a link to a folder outside the location {root} ({target}); "
                        "the engine reads only what is inside a location. Copy the files in, "
                        "or list that folder in flyway.locations"
                    )
                if target in above or target == real:
                    raise FlywayError(
                        f"{path}: a link back to a folder above it ({target}), which would be "
                        "scanned without end; remove the link"
                    )
            visit(path, target, (*above, real))

    visit(root, top, ())
    return found


def read_inside(root: Path, inside: str, shown: Path) -> bytes:
    """The regular file `inside` (a path with no link left in it) below `root`: each folder
    opened from its parent's descriptor without following a link, the file without following
    one and without blocking on a FIFO, then checked regular on the descriptor. A link or
    other file swapped in after the scan is refused, never read."""
    parts = inside.split("/")
    fds: list[int] = []
    try:
        fds.append(os.open(root.resolve(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        for part in parts[:-1]:
            fds.append(os.open(part, _OPEN_DIR, dir_fd=fds[-1]))
        fd = os.open(parts[-1], _OPEN_FILE, dir_fd=fds[-1])
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
            raise FlywayError(f"{shown}: changed into a link or special file; refused") from None
        raise FlywayError(f"cannot read {shown}: {exc.strerror}") from None
    finally:
        for folder_fd in fds:
            os.close(folder_fd)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FlywayError(
                f"{shown}: not a regular file (a FIFO, device or folder); refused. "
                "A migration must be a plain file"
            )
        os.set_blocking(fd, True)
        return handle.read()


def _inside(root: Path, path: Path) -> str:
    """`path` below `root` with its links resolved, refused if they lead out of `root`."""
    top, real = root.resolve(), path.resolve()
    if not real.is_relative_to(top) or real == top:
        raise FlywayError(
            f"{path}: a link to a file outside the location {root} ({real}); the engine reads "
            "only what is inside a location. Copy the file in, or list its folder in "
            "flyway.locations"
        )
    return real.relative_to(top).as_posix()


def resolve(config: FlywayConfig) -> list[ResolvedMigration]:
    """Every migration in the configured locations: versioned ones by version, then repeatables
    by description."""
    # Versioned and baseline migrations are checked for duplicates each among their own kind
    # (BaselineResolvedMigration.canCompareWith): `V1` and `B1` may both exist.
    versioned: dict[tuple[str, Version], ResolvedMigration] = {}
    repeatable: list[ResolvedMigration] = []
    for root in config.location_dirs():
        if not root.is_dir():
            raise FlywayError(
                f"migration location {root} does not exist or is not a folder (a relative "
                f"location starts at the working directory {config.base_dir}, as in the Flyway "
                "CLI: set FLYWAY_WORKING_DIRECTORY, or give an absolute location)"
            )
        for path in scan(root):
            if is_callback(path.name) and not config.skip_default_callbacks:
                raise FlywayError(
                    f"{path}: a Flyway SQL callback, which real Flyway would run around its "
                    "commands; the native engine does not run callbacks. Remove it, set "
                    "flyway.skipDefaultCallbacks=true, or run real Flyway (FLYWAY_RUNNER=cli)"
                )
            parsed = parse_name(path.name)
            if parsed is None:
                continue
            if path.with_name(path.name + ".conf").exists():
                raise FlywayError(
                    f"{path}.conf: per-script settings (executeInTransaction, encoding, "
                    "placeholderReplacement) are not supported by the native engine; remove "
                    "it, or run real Flyway (FLYWAY_RUNNER=cli)"
                )
            prefix, version_text, description = parsed
            script = path.relative_to(root).as_posix()
            inside = _inside(root, path)
            text = decode(read_inside(root, inside, path), config.encoding, script)
            migration = ResolvedMigration(
                version=Version.parse(version_text) if version_text else None,
                description=description,
                script=script,
                path=path,
                checksum=checksum_text(text),
                type=TYPES[prefix],
                equivalent_checksum=None if version_text else checksum_text(text),
                location=root,
                inside=inside,
            )
            if migration.version is None:
                if migration.stored_description != description:
                    # Flyway matches repeatable runs by the full description but stores it
                    # abbreviated, so it never finds this one again: validate fails and every
                    # migrate runs it anew (test_long_repeatable_description_is_refused).
                    raise FlywayError(
                        f"{script}: a repeatable migration's description longer than 200 "
                        "characters is stored abbreviated and then never matched again by "
                        "Flyway (validate fails, migrate re-runs it); shorten the file name"
                    )
                twin = next((r for r in repeatable if r.description == description), None)
                if twin is not None:
                    raise _duplicate("repeatable migration with description", twin, migration)
                repeatable.append(migration)
                continue
            key = (prefix, migration.version)
            if key in versioned:
                raise _duplicate("migration with version", versioned[key], migration)
            versioned[key] = migration
    # Repeatables by description as Java's String.compareTo orders them (UTF-16 code units).
    return sorted(versioned.values(), key=lambda m: (m.version, m.type)) + sorted(
        repeatable, key=lambda m: m.description.encode("utf-16-be")
    )


def _duplicate(what: str, first: ResolvedMigration, second: ResolvedMigration) -> FlywayError:
    """CompositeMigrationResolver.checkForIncompatibilities' message (the two in path order, as
    Flyway sorts them), then what to do."""
    one, two = sorted((first, second), key=lambda m: str(m.path))
    name = one.version_text if one.version else one.description
    return FlywayError(
        f"Found more than one {what} {name}\nOffenders:\n-> {one.path} ({one.type})\n"
        f"-> {two.path} ({two.type})\nRename or remove one of them (two locations, or a folder "
        "linked twice, can hold the same file)"
    )
