"""One shape for every verification the runbook makes: an id, a verdict, a reason.

The same `Check` is an asset check in Dagster, a sub-check of a gate in `gate_report.json`, and a
line in the CLI's table, so a verdict is decided once and only translated afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Check:
    id: str
    passed: bool | None  # None: skipped (an optional probe not configured; never "passed")
    detail: str
    data: Mapping[str, object] = field(default_factory=dict)  # shown in the UI, not in JSON

    @property
    def skipped(self) -> bool:
        return self.passed is None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"id": self.id, "passed": self.passed, "detail": self.detail}
        if self.passed is None:
            out["skipped"] = True
        return out
