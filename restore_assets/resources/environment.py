"""The one Dagster resource: settings from the environment contract, overridable per run.

Assets get targets, the Secrets store and the run's evidence folder from here, so the CLI, the UI
and the tests all go through the same wiring.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
from pathlib import Path

from dagster import ConfigurableResource, Failure, MetadataValue

from restore_assets.errors import EXIT_BLOCKED, RestoreError
from restore_assets.gate_report import unreached_report, write_report
from restore_assets.resources.evidence import EvidenceStore
from restore_assets.resources.postgres import PostgresTarget, redact
from restore_assets.settings import Settings, load_settings

EVIDENCE_TAG = "restore_assets/started"
SIDES_TAG = "restore_assets/sides"
STEPS_FILE = ".steps.json"


class RestoreEnvironment(ConfigurableResource):
    """Overrides for the environment contract (unset: the environment variable applies)."""

    secrets_dir: str | None = None
    artifacts_dir: str | None = None
    state_dir: str | None = None
    allow_reset: bool | None = None

    def settings(self) -> Settings:
        settings = load_settings()
        changes: dict[str, object] = {}
        for name in ("secrets_dir", "artifacts_dir", "state_dir"):
            value = getattr(self, name)
            if value:
                changes[name] = Path(value).expanduser().resolve()
        if self.allow_reset is not None:
            changes["allow_reset"] = self.allow_reset
        return settings.with_overrides(**changes) if changes else settings

    def target(self, side: str) -> PostgresTarget:
        settings = self.settings()
        return PostgresTarget(getattr(settings, side), settings)

    def evidence(self, context) -> EvidenceStore:
        """This run's folder: named after the run's start (tag set by the CLI/sensor, else the
        run record), shared by every asset of the run."""
        settings = self.settings()
        tagged = context.run.tags.get(EVIDENCE_TAG)
        if tagged:
            started = dt.datetime.fromisoformat(tagged)
        else:
            record = context.instance.get_run_record_by_id(context.run.run_id)
            started = record.create_timestamp if record else dt.datetime.now(dt.UTC)
        return EvidenceStore.for_run(
            settings.artifacts_dir,
            context.run.run_id,
            started,
            lambda text: redact(text, settings.passwords),
        )


def sides_of_run(context, own: str) -> list[str]:
    """All sides of this run are vetted before either touches anything (runbook §0)."""
    tagged = context.run.tags.get(SIDES_TAG)
    sides = tagged.split(",") if tagged else [own]
    return sides if own in sides else [*sides, own]


def record_step(evidence: EvidenceStore, step: str, summary: dict[str, object]) -> None:
    """Add one step's summary to the run's folder and re-render its README.md."""
    steps_path = evidence.path(STEPS_FILE)
    with steps_path.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # sides may run in parallel processes
        handle.seek(0)
        text = handle.read()
        steps = json.loads(text) if text.strip() else {}
        steps[step] = summary
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(steps, indent=2, ensure_ascii=False, default=str))
        evidence.write("README.md", render_readme(evidence.folder, steps))


def render_readme(folder: Path, steps: dict[str, dict[str, object]]) -> str:
    lines = [
        f"# DB restore evidence — {folder.name}",
        "",
        "Written by restore_assets (runbook: OpenDolphin DB baseline restore). No passwords and no",
        "seed rows are recorded here: only file hashes, counts, versions and psql/flyway output.",
        "",
        "| step | status | summary |",
        "| --- | --- | --- |",
    ]
    for step, summary in steps.items():
        status = summary.get("status", "")
        detail = "; ".join(f"{k}: {v}" for k, v in summary.items() if k != "status")
        lines.append(f"| {step} | {status} | {detail.replace('|', '/')} |")
    files = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    lines += ["", "## Files", ""] + [f"- [{name}]({name})" for name in files]
    return "\n".join(lines) + "\n"


def fail(exc: Exception, evidence: EvidenceStore, step: str = "", **metadata) -> Failure:
    """A Dagster Failure carrying the CLI exit code and where the evidence is. The gate report
    is written too — every gate failed (or blocked), naming the step that stopped the run."""
    code = exc.exit_code if isinstance(exc, RestoreError) else 1
    status = "blocked" if code == EXIT_BLOCKED else "failed"
    reason = f"not reached: {step + ' ' if step else ''}stopped the run: {exc}"
    write_report(evidence, unreached_report(evidence.folder, status, reason))
    return Failure(
        description=str(exc),
        metadata={
            "exit_code": code,
            "error": str(exc),
            "evidence": MetadataValue.path(str(evidence.folder)),
            **metadata,
        },
    )
