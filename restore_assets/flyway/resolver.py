"""Finding migrations: `V<version>__<description>.sql` and `R__<description>.sql` files in
`filesystem:` locations (subfolders too), ordered by numeric version, duplicates an error."""

from __future__ import annotations

import re
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
    def version_text(self) -> str | None:
        return self.version.text if self.version else None

    def read_text(self, encoding: str) -> str:
        """The SQL to execute: decoded strictly, U+FEFF removed as Flyway's parser does."""
        return strip_boms(decode(self.path.read_bytes(), encoding, self.script))


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


def parse_name(name: str) -> tuple[str | None, str] | None:
    """(version text with `_`→`.`, description with `_`→space); None if the name is not a
    migration (Flyway skips those). Follows Flyway 10.17.3's Scanner.getResources
    (StringUtils.startsAndEndsWith: prefix case-sensitive, suffix case-insensitive, something
    between them) and ResourceNameParser.parse (split at the first `__`; a versioned name needs a
    valid version before it, a repeatable one nothing)."""
    if not name.upper().endswith(SUFFIX.upper()) or len(name) <= 1 + len(SUFFIX):
        return None
    prefix, rest = name[0], name[: -len(SUFFIX)][1:]
    if prefix not in "VR":
        return None
    version_text, _, description = rest.partition(SEPARATOR)
    description = description.replace("_", " ")
    if prefix == "R":
        return (None, description) if version_text == "" else None
    version_text = version_text.replace("_", ".")
    try:
        Version.parse(version_text)
    except ValueError:
        return None
    return version_text, description


def resolve(config: FlywayConfig) -> list[ResolvedMigration]:
    """Every migration in the configured locations: versioned ones by version, then repeatables
    by description."""
    versioned: dict[Version, ResolvedMigration] = {}
    repeatable: list[ResolvedMigration] = []
    for root in config.location_dirs():
        if not root.is_dir():
            raise FlywayError(
                f"migration location {root} does not exist or is not a folder (a relative "
                f"location starts at the working directory {config.base_dir}, as in the Flyway "
                "CLI: set FLYWAY_WORKING_DIRECTORY, or give an absolute location)"
            )
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
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
            version_text, description = parsed
            script = path.relative_to(root).as_posix()
            text = decode(path.read_bytes(), config.encoding, script)
            migration = ResolvedMigration(
                version=Version.parse(version_text) if version_text else None,
                description=description,
                script=script,
                path=path,
                checksum=checksum_text(text),
                equivalent_checksum=None if version_text else checksum_text(text),
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
                    raise FlywayError(
                        "Found more than one repeatable migration with description "
                        f"{description!r}: {twin.path} and {path}; rename one of them"
                    )
                repeatable.append(migration)
                continue
            if migration.version in versioned:
                other = versioned[migration.version]
                raise FlywayError(
                    f"Found more than one migration with version {migration.version}: "
                    f"{other.path} and {path}; rename one of them"
                )
            versioned[migration.version] = migration
    # Repeatables by description as Java's String.compareTo orders them (UTF-16 code units).
    return sorted(versioned.values(), key=lambda m: m.version) + sorted(
        repeatable, key=lambda m: m.description.encode("utf-16-be")
    )
