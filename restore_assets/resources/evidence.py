"""The evidence store as a resource: every step of a run writes into the same folder, named
after the run's start (tag set by the CLI, else the run record); the folder is recorded as a tag
of the run."""

import datetime as dt

from dagster import ConfigurableResource, ResourceDependency

from restore_assets.recovery import own_tag, tag_run_process
from restore_assets.resources.config import RestoreConfig
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.started_by import started_by, tag_of

EVIDENCE_TAG = "restore_assets/started"
EVIDENCE_FOLDER_TAG = "restore_assets/evidence"


class EvidenceResource(ConfigurableResource):
    config: ResourceDependency[RestoreConfig]

    def for_run(self, context) -> EvidenceStore:
        """Every step starts here: it also records on the run its process (see `recovery`) and
        who started it, the latter in the evidence, and keeps the Dagster home private (a run
        worker of `dagster dev` has its umask)."""
        from restore_assets.jobs import keep_instance_private  # jobs imports the assets

        keep_instance_private(context.instance)
        tag_run_process(context)
        who = tag_of(context.run.tags)
        if who:
            context.instance.add_run_tags(context.run.run_id, who)
        store = self.for_dagster_run(context.run, context.instance)
        store.record_start(context.run.run_id)
        return store

    def for_dagster_run(self, run, instance) -> EvidenceStore:
        """The run's evidence folder, from its tags (also where a hook finds it)."""
        settings = self.config.settings()
        tagged = own_tag(run, EVIDENCE_TAG)  # a re-execution's own start, not its parent's
        if tagged:
            started = dt.datetime.fromisoformat(tagged)
        else:
            record = instance.get_run_record_by_id(run.run_id)
            started = record.create_timestamp if record else dt.datetime.now(dt.UTC)
        store = EvidenceStore.for_run(
            settings, run.run_id, started, settings.redactor, started_by(run.tags)
        )
        if run.tags.get(EVIDENCE_FOLDER_TAG) != str(store.folder):
            # On the run itself, so the CLI and the UI find the folder without searching.
            instance.add_run_tags(run.run_id, {EVIDENCE_FOLDER_TAG: str(store.folder)})
        return store
