"""Runbook §6/§7: the gate report — `gate_report.json` in DESIGN.md's shape, its markdown twin,
the Gate-table row and the progress snippet. Pure rendering: no database, no Dagster."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from restore_assets.runbook.checks import Check
from restore_assets.runbook.evidence import EvidenceStore

GATE_IDS = ("db_restore", "audit_capture", "jms_claim")
NOT_REACHED = "not_reached"  # the one sub-check of a gate that a stopped run never judged
GATE_TITLES = {
    "db_restore": "DB restore complete (§6.1)",
    "audit_capture": "Audit capture ready (§6.2)",
    "jms_claim": "JMS/CLAIM verification may resume (§6.3)",
}
# The paste-ready files speak the runbook's own words first (§6, §0.3), then English.
RUNBOOK_GATE_NAMES = {
    "db_restore": "DB 復旧完了",
    "audit_capture": "監査ログ採取準備",
    "jms_claim": "JMS/CLAIM",
}
RESTORED = ("DB ベースライン復旧済み", "DB baseline restored")  # the Gate-table row of §6.3
NOT_RESTORED = ("DB ベースライン復旧", "DB baseline restore")
STATUS_WORDS = {
    "passed": "完了",
    "failed": "失敗",
    "blocked": "Secrets 未取得",
    "interrupted": "中断",
}


@dataclass
class Gate:
    id: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed is not False for c in self.checks)

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    @property
    def skipped_checks(self) -> list[Check]:
        return [c for c in self.checks if c.skipped]

    @property
    def reached(self) -> bool:
        """False when a step stopped the run before this gate could be judged."""
        return not any(c.id == NOT_REACHED for c in self.checks)

    def summary(self) -> str:
        if not self.reached:
            return "; ".join(c.detail for c in self.checks)
        if self.passed:
            skipped = [c.id for c in self.skipped_checks]
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
    evidence: str  # the folder as the runbook writes it: artifacts/parity-manual/db-restore/<UTC>
    status_override: str | None = None  # "blocked" when Secrets stopped the run
    secrets_note: str | None = None  # blocked: runbook §0.3, when Ops was asked and their ID
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
            "evidence": self.evidence,
        }

    @property
    def open_items(self) -> list[str]:
        """Failed gates and skipped sub-checks: what a person still has to look at."""
        unreached = [g for g in self.gates if not g.reached]  # one reason, said once
        items = (
            [f"{', '.join(g.id for g in unreached)}: {unreached[0].summary()}"] if unreached else []
        )
        items += [f"{g.id}: {g.summary()}" for g in self.gates if g.reached and not g.passed]
        items += [
            f"{g.id}/{c.id} skipped — {c.detail}" for g in self.gates for c in g.skipped_checks
        ]
        return items

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
            result = _verdict(gate, "✅ passed", "❌ failed")
            lines.append(
                f"| {GATE_TITLES.get(gate.id, gate.id)} | {result} | {_cell(gate.summary())} |"
            )
        for gate in self.gates:
            lines += ["", f"## {gate.id}", "", "| check | result | detail |", "| --- | --- | --- |"]
            for check in gate.checks:
                mark = {True: "passed", False: "FAILED", None: "skipped"}[check.passed]
                lines.append(f"| {check.id} | {mark} | {_cell(check.detail)} |")
        return "\n".join(lines) + "\n"


def _verdict(gate: Gate, passed: str, failed: str) -> str:
    """A gate's verdict in a table; a gate never judged is not called failed."""
    if not gate.reached:
        return "未到達 / not reached"
    return passed if gate.passed else failed


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


REPORT_FILES = ("gate_report.json", "gate_report.md", "gate_table_row.md", "progress_snippet.md")


def write_report(evidence: EvidenceStore, report: GateReport) -> tuple[str, ...]:
    """gate_report.json, gate_report.md, gate_table_row.md and progress_snippet.md."""
    shown = report.as_json()
    if evidence.started_by:
        shown["started_by"] = evidence.started_by
    evidence.write("gate_report.json", json.dumps(shown, indent=2, ensure_ascii=False) + "\n")
    evidence.write("gate_report.md", report.markdown())
    evidence.write("gate_table_row.md", gate_table_row(report))
    evidence.write("progress_snippet.md", progress_snippet(report))
    return REPORT_FILES


def gate_table_row(report: GateReport) -> str:
    """The row for the Gate table of LEGACY_MODERNIZED_CAPTURE_RUNBOOK.md (§6.3): 「DB ベース
    ライン復旧済み」 when the gates passed, the runbook's words first."""
    date = f"{report.generated_at:%Y-%m-%d}"
    skipped = sum(len(g.skipped_checks) for g in report.gates)
    name = " / ".join(RESTORED if report.status == "passed" else NOT_RESTORED)
    if report.status != "passed":
        state = f"❌ {STATUS_WORDS.get(report.status, report.status)} / {report.status}"
    elif skipped:
        state = f"✅ 完了（{skipped} 件スキップ、備考参照）/ Done ({skipped} skipped, see Notes)"
    else:
        state = "✅ 完了 / Done"
    gates = ", ".join(f"{_gate_name(g)} {_verdict(g, '✅', '❌')}" for g in report.gates)
    notes = _cell("; ".join([gates, *report.open_items]))  # the cause, not only the verdicts
    return (
        "| Gate | 状態 / Status | 日付 / Date | 証跡 / Evidence | 備考 / Notes |\n"
        "| --- | --- | --- | --- | --- |\n"
        f"| {name} | {state} | {date} | `{report.evidence}` | {notes} |\n"
    )


def _gate_name(gate: Gate) -> str:
    """The runbook's name of a gate, then its id: `DB 復旧完了 / db_restore`."""
    return f"{RUNBOOK_GATE_NAMES.get(gate.id, gate.id)} / {gate.id}"


def progress_snippet(report: GateReport) -> str:
    """Lines to paste into PHASE2_PROGRESS.md / SERVER_MODERNIZED_DEBUG_CHECKLIST.md (§7), the
    runbook's words first: 「DB ベースライン復旧済み」, or 「Secrets 未取得」 with the request's
    date and Ops' tracking ID (§0.3)."""
    date = f"{report.generated_at:%Y-%m-%d}"
    passed = report.status == "passed"
    mark = "x" if passed else " "
    versions = ", ".join(str(f["version"]) for f in report.flyway if f.get("success"))
    if not any(g.reached for g in report.gates):  # the history was never read: say so
        versions = "未確認 / not read (the gates were not reached)"
    failed = "; ".join(report.open_items) or "なし / none"
    japanese, english = RESTORED if passed else NOT_RESTORED
    if passed:
        status_ja, status_en = "", ""
    else:
        status_ja = f": {STATUS_WORDS.get(report.status, report.status)}"
        status_en = f": {report.status}"
    return "\n".join(
        [
            "## PHASE2_PROGRESS.md",
            "",
            f"- {date} {japanese} (Legacy/Modernized){status_ja} — 証跡 `{report.evidence}`",
            f"- {date} {english} (Legacy/Modernized){status_en} — evidence `{report.evidence}`",
            *([f"- {date} {report.secrets_note}"] if report.secrets_note else []),
            "",
            "## SERVER_MODERNIZED_DEBUG_CHECKLIST.md",
            "",
            f"- [{mark}] Gate #40 DB 復旧 / DB restore: "
            + ", ".join(f"{_gate_name(g)} {_verdict(g, 'OK', 'NG')}" for g in report.gates),
            f"- [{mark}] Flyway 履歴 / history: {versions or 'なし / none'}",
            f"- 未達項目 / open items: {failed}",
            f"- 証跡 / evidence: `{report.evidence}`",
            "",
        ]
    )


def unreached_report(
    evidence_label: str, stops: Mapping[str, tuple[str, str]], secrets_note: str | None = None
) -> GateReport:
    """When steps stopped the run before the gates could run (`stops`: step -> (status,
    error), in the order they stopped): every gate not reached, naming each step and its own
    reason — steps stopped by the same cause share one line. A blocked run's report carries
    `secrets_note` (`ops_request.not_received_line`)."""
    by_error: dict[str, list[str]] = {}
    for step, (_, error) in stops.items():
        by_error.setdefault(error, []).append(step)
    reason = "; ".join(
        f"not reached: {', '.join(steps)} stopped the run: {error}"
        for error, steps in by_error.items()
    )
    statuses = {status for status, _ in stops.values()}
    status = next((s for s in STOP_STATUSES if s in statuses), "failed")
    gates = [Gate(g, [Check(NOT_REACHED, False, reason)]) for g in GATE_IDS]
    note = secrets_note if status == "blocked" else None
    return GateReport(gates, [], [], [], evidence_label, status_override=status, secrets_note=note)


# What a stopped run is called, the strongest first: an interrupt says more than a failure,
# a failure more than "blocked" (which only says Secrets were missing).
STOP_STATUSES = ("interrupted", "failed", "blocked")


def record_stop(
    evidence: EvidenceStore,
    steps: dict[str, dict[str, str]],
    step: str,
    status: str,
    error: str,
    secrets_note: str | None = None,
) -> GateReport:
    """`step` stopped the run (blocked, failed, interrupted): record it in `steps` (held locked,
    `EvidenceStore.steps_locked`), and write the gate report naming every step of this run that
    stopped so far, each with its own reason (both sides blocked, or one side failed and the
    other blocked, are all said). Raises OSError when the evidence cannot be written."""
    steps[step] = {"status": status, "error": error}
    stops = {
        name: (summary["status"], summary["error"])
        for name, summary in steps.items()
        if summary.get("status") in STOP_STATUSES and "error" in summary
    }
    report = unreached_report(evidence.label, stops, secrets_note)
    write_report(evidence, report)
    return report
