"""Runbook §6/§7: the gate report — `gate_report.json` in DESIGN.md's shape, its markdown twin,
the Gate-table row and the progress snippet. Pure rendering: no database, no Dagster."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

GATE_IDS = ("db_restore", "audit_capture", "jms_claim")
GATE_TITLES = {
    "db_restore": "DB restore complete (§6.1)",
    "audit_capture": "Audit capture ready (§6.2)",
    "jms_claim": "JMS/CLAIM verification may resume (§6.3)",
}


@dataclass
class SubCheck:
    id: str
    passed: bool | None  # None: skipped (never counted as passed)
    detail: str

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"id": self.id, "passed": self.passed, "detail": self.detail}
        if self.passed is None:
            out["skipped"] = True
        return out


@dataclass
class Gate:
    id: str
    checks: list[SubCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed is not False for c in self.checks)

    @property
    def failed_checks(self) -> list[SubCheck]:
        return [c for c in self.checks if c.passed is False]

    def summary(self) -> str:
        if self.passed:
            skipped = [c.id for c in self.checks if c.passed is None]
            return "passed" + (f" (skipped: {', '.join(skipped)})" if skipped else "")
        return "failed: " + "; ".join(f"{c.id} — {c.detail}" for c in self.failed_checks)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": GATE_TITLES.get(self.id, self.id),
            "passed": self.passed,
            "checks": [c.as_dict() for c in self.checks],
        }


@dataclass
class GateReport:
    gates: list[Gate]
    inputs: list[dict[str, object]]
    flyway: list[dict[str, object]]
    targets: list[str]
    evidence: Path
    status_override: str | None = None  # "blocked" when Secrets stopped the run
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def status(self) -> str:
        if self.status_override:
            return self.status_override
        return "passed" if all(g.passed for g in self.gates) else "failed"

    def as_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "gates": [g.as_dict() for g in self.gates],
            "inputs": self.inputs,
            "flyway": self.flyway,
            "targets": self.targets,
            "generated_at": self.generated_at.isoformat(timespec="seconds"),
            "evidence": str(self.evidence),
        }

    def markdown(self) -> str:
        lines = [
            f"# Gate report — {self.status.upper()}",
            "",
            f"Generated {self.generated_at:%Y-%m-%d %H:%M:%S} UTC · evidence `{self.evidence}`",
            "",
            "| gate | result | detail |",
            "| --- | --- | --- |",
        ]
        for gate in self.gates:
            result = "✅ passed" if gate.passed else "❌ failed"
            lines.append(
                f"| {GATE_TITLES.get(gate.id, gate.id)} | {result} | {_cell(gate.summary())} |"
            )
        for gate in self.gates:
            lines += ["", f"## {gate.id}", "", "| check | result | detail |", "| --- | --- | --- |"]
            for check in gate.checks:
                mark = {True: "passed", False: "FAILED", None: "skipped"}[check.passed]
                lines.append(f"| {check.id} | {mark} | {_cell(check.detail)} |")
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def write_report(evidence, report: GateReport) -> list[str]:
    """gate_report.json, gate_report.md, gate_table_row.md and progress_snippet.md."""
    evidence.write(
        "gate_report.json", json.dumps(report.as_json(), indent=2, ensure_ascii=False) + "\n"
    )
    evidence.write("gate_report.md", report.markdown())
    evidence.write("gate_table_row.md", gate_table_row(report))
    evidence.write("progress_snippet.md", progress_snippet(report))
    return ["gate_report.json", "gate_report.md", "gate_table_row.md", "progress_snippet.md"]


def gate_table_row(report: GateReport) -> str:
    """The row for the Gate table of LEGACY_MODERNIZED_CAPTURE_RUNBOOK.md (§6.3)."""
    date = f"{report.generated_at:%Y-%m-%d}"
    state = "✅ Done" if report.status == "passed" else f"❌ {report.status}"
    gates = ", ".join(f"{g.id} {'✅' if g.passed else '❌'}" for g in report.gates)
    return (
        "| Gate | Status | Date | Evidence | Notes |\n"
        "| --- | --- | --- | --- | --- |\n"
        f"| DB baseline restored | {state} | {date} | `{report.evidence}` | {gates} |\n"
    )


def progress_snippet(report: GateReport) -> str:
    """Lines to paste into PHASE2_PROGRESS.md / SERVER_MODERNIZED_DEBUG_CHECKLIST.md (§7)."""
    date = f"{report.generated_at:%Y-%m-%d}"
    mark = "x" if report.status == "passed" else " "
    versions = ", ".join(str(f["version"]) for f in report.flyway if f.get("success"))
    failed = "; ".join(g.summary() for g in report.gates if not g.passed) or "none"
    return "\n".join(
        [
            "## PHASE2_PROGRESS.md",
            "",
            f"- {date} DB ベースライン復元 (Legacy/Modernized): {report.status} — "
            f"証跡 `{report.evidence}`",
            f"- {date} DB baseline restore (Legacy/Modernized): {report.status} — "
            f"evidence `{report.evidence}`",
            "",
            "## SERVER_MODERNIZED_DEBUG_CHECKLIST.md",
            "",
            f"- [{mark}] Gate #40 DB 復元 / DB restore: "
            + ", ".join(f"{g.id} {'OK' if g.passed else 'NG'}" for g in report.gates),
            f"- [{mark}] Flyway 履歴 / history: {versions or '(none)'}",
            f"- 未達項目 / open items: {failed}",
            f"- 証跡 / evidence: `{report.evidence}`",
            "",
        ]
    )


def unreached_report(evidence_dir: Path, status: str, reason: str) -> GateReport:
    """When a step failed before the gates could run: every gate failed, saying why."""
    gates = [Gate(g, [SubCheck("not_reached", False, reason)]) for g in GATE_IDS]
    return GateReport(gates, [], [], [], evidence_dir, status_override=status)
