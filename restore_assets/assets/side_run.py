"""The restore step both sides share, in Dagster's terms: which sides the run vets, the core's
side run (plan, intake, restore, record), the run tagged with the content it vetted, and the
asset metadata of the result."""

from __future__ import annotations

from restore_assets.runbook.side_run import restore_and_record, vet_run
from restore_assets.runbook.watch import content_key
from restore_assets.settings import SIDES

from .shell import RESTORE_KEYS, SIDES_TAG, evidence_metadata, restore_tags, table
from .stops import recorded


def sides_of_run(context, own: str) -> list[str]:
    """All sides of this run are vetted before either touches anything (runbook §0), and one
    Ops request names every missing file of every side: the sides the run's tag names (the
    CLI, the jobs), else those whose restore the run selected ("Materialize all" in the UI)."""
    tagged = context.run.tags.get(SIDES_TAG)
    if tagged:
        sides = tagged.split(",")
    else:
        selected = context.run.asset_selection or context.job_def.asset_layer.selected_asset_keys
        sides = [side for side in SIDES if RESTORE_KEYS[side] in selected]
    return sides if own in sides else [*sides, own]


def restore_step(context, step: str, restore, resource, evidence_store):
    """The core's side run (plan, intake of every side, the restore, recorded), the run tagged
    with the content it vetted (before the restore: a run that dies mid-restore still says
    what it was restoring); returns the core result, the evidence store and the metadata."""
    db = resource.database
    evidence = evidence_store.for_run(context)
    settings = restore.settings()
    with recorded(context, evidence, step):
        files, intake_seconds = vet_run(
            settings, sides_of_run(context, db.side), db, evidence, context.log.info
        )
        tags = restore_tags(db.side, settings.target_name, content_key(f.sha256 for f in files))
        context.instance.add_run_tags(context.run.run_id, tags)
        result = restore_and_record(
            step, settings, db, files, evidence, context.log.info, intake_seconds
        )
    metadata = {
        "target": result.target,
        "server_version": result.server_version,
        "connection": result.transport,
        "inputs": table([f.as_evidence() for f in result.files]),
        "schemas_reset": ", ".join(result.reset_schemas),
        "objects_before": table(
            [{"schema": s, "objects": n} for s, n in result.content_before.items()]
        ),
        "backup": result.backup_summary,
        "role_is_superuser": result.superuser,
        "load": result.load.describe() if result.load else "not run",
        "psql_output_lines": result.psql_output_lines,
        "duration_s": result.seconds,
        **evidence_metadata(evidence, result.psql_log.name),
    }
    return result, evidence, metadata
