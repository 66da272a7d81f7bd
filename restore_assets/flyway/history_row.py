"""One row of `flyway_schema_history` (Flyway's AppliedMigration) as a plain value, apart from
the table access in `history`, so `migration_info` can read rows without a database driver."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


def _java_prefix(text: str, start: int, end: int) -> str:
    """`text.substring(start, end)` in Java's UTF-16 units (a split pair becomes `?`, as the
    JDBC driver would send it)."""
    units = text.encode("utf-16-le", "surrogatepass")[2 * start : 2 * end]
    return units.decode("utf-16-le", "surrogatepass").encode("utf-8", "replace").decode()


def _java_length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def abbreviate_description(description: str) -> str:
    """AbbreviationUtils.abbreviateDescription: over 200 (UTF-16) characters, the first 197 and
    `...` are stored; validate compares the file's description abbreviated the same way."""
    if _java_length(description) <= 200:
        return description
    return _java_prefix(description, 0, 197) + "..."


def abbreviate_script(script: str) -> str:
    """AbbreviationUtils.abbreviateScript: over 1000 characters, `...` + characters 3 to 999."""
    if _java_length(script) <= 1000:
        return script
    return "..." + _java_prefix(script, 3, 1000)


@dataclass(frozen=True)
class HistoryRow:
    installed_rank: int
    version: str | None
    description: str
    type: str
    script: str
    checksum: int | None
    installed_by: str
    installed_on: dt.datetime | None
    execution_time: int
    success: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "installed_rank": self.installed_rank,
            "version": self.version,
            "description": self.description,
            "type": self.type,
            "script": self.script,
            "checksum": self.checksum,
            "installed_by": self.installed_by,
            "installed_on": self.installed_on.isoformat(sep=" ") if self.installed_on else None,
            "execution_time": self.execution_time,
            "success": self.success,
        }


def baseline_row(version: str, description: str, installed_by: str = "") -> HistoryRow:
    """The row `flyway baseline` writes (JdbcTableSchemaHistory.create with a baseline): rank 1,
    type BASELINE, the description as its script too, no checksum."""
    return HistoryRow(
        installed_rank=1,
        version=version,
        description=description,
        type="BASELINE",
        script=description,
        checksum=None,
        installed_by=installed_by,
        installed_on=None,
        execution_time=0,
        success=True,
    )
