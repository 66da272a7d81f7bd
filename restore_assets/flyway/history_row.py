"""One row of `flyway_schema_history` (Flyway's AppliedMigration) as a plain value, apart from
the table access in `history`, so the planning code can read rows without a database driver."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


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
