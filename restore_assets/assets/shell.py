"""Translating runbook results into Dagster's terms, shared by the assets: a core `Check`
becomes an `AssetCheckResult`, rows become `MetadataValue.table`, evidence files become paths;
the tags a run carries (its sides, its target, the content each restore vetted); and the
boundary every step's words cross on their way into Dagster (`redacted_step`).
"""

from __future__ import annotations

import functools
import inspect
import traceback
from collections.abc import Iterable, Mapping, Sequence

from dagster import (
    AssetCheckResult,
    AssetKey,
    Failure,
    JsonMetadataValue,
    MarkdownMetadataValue,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableMetadataValue,
    TableRecord,
    TableSchema,
    TextMetadataValue,
)

from restore_assets.errors import UnexpectedError
from restore_assets.recovery import PARTITION_TAG  # noqa: F401 - the run's target, for assets
from restore_assets.redaction import RedactingFilter, Redactor
from restore_assets.resources.config import RestoreConfig
from restore_assets.runbook.checks import Check
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.settings import SIDES

SIDES_TAG = "restore_assets/sides"
GATES_REPORT = AssetKey(["gates", "report"])
RESTORE_KEYS = {side: AssetKey([side, "schema"]) for side in SIDES}  # each side's restore step


INTERRUPTED_TAG = "restore_assets/interrupted"  # a person stopped the run: not restarted


def restored_tag(side: str) -> str:
    """On every run that restores `side`: the target's name."""
    return f"restore_assets/restored.{side}"


def content_tag(side: str) -> str:
    """On every run that restores `side`: the content key of the files it vetted."""
    return f"restore_assets/content.{side}"


def restore_tags(side: str, target: str, key: str) -> dict[str, str]:
    """What a run restoring `side` says about it, so the sensor can tell from the instance
    which content each target last restored and how that ended, whoever launched the run."""
    return {restored_tag(side): target, content_tag(side): key}


_TABLE_TYPES = {bool: "bool", int: "int", float: "float"}


def table(rows: Sequence[Mapping[str, object]]) -> MetadataValue:
    """Rows as a Dagster table (typed columns; anything not a number or bool shown as text)."""
    columns = list(rows[0]) if rows else []

    def column_type(name: str) -> str:
        kinds = {type(r[name]) for r in rows if r[name] is not None}
        return _TABLE_TYPES.get(kinds.pop(), "string") if len(kinds) == 1 else "string"

    types = {c: column_type(c) for c in columns}

    def cell(value: object, kind: str) -> object:
        return value if value is None or kind != "string" else str(value)

    return MetadataValue.table(
        records=[TableRecord({c: cell(r[c], types[c]) for c in columns}) for r in rows],
        schema=TableSchema(columns=[TableColumn(c, types[c]) for c in columns]),
    )


def check_result(check: Check, asset_key: AssetKey | None = None) -> AssetCheckResult:
    metadata = {
        k: v if isinstance(v, str | int | float | bool) else MetadataValue.json(v)
        for k, v in check.data.items()
        if v is not None
    }
    return AssetCheckResult(
        asset_key=asset_key,
        check_name=check.id,
        passed=check.passed is not False,
        description=check.detail,
        metadata=metadata,
    )


def check_results(checks: Iterable[Check], asset_key: AssetKey | None = None):
    return [check_result(c, asset_key) for c in checks]


def evidence_metadata(evidence: EvidenceStore, *files: str) -> dict[str, MetadataValue]:
    paths = {name: MetadataValue.path(str(evidence.path(name))) for name in files}
    return {"evidence": MetadataValue.path(str(evidence.folder)), **paths}


def redacted_step(compute):
    """The Dagster boundary of a step (put under `@asset`/`@multi_asset`): every line it logs
    (so the console too) and every event it yields or returns reach Dagster through the run's
    redactor, so no message of the core needs a redaction of its own. (Its failures cross
    `stops.fail`.)"""

    @functools.wraps(compute)  # Dagster reads the resources from the wrapped signature
    def step(context, **resources):
        redact = _run_settings(resources).redactor
        log_filter = RedactingFilter(redact)
        context.log.addFilter(log_filter)
        try:
            result = compute(context, **resources)
            for event in result if inspect.isgenerator(result) else [result]:
                yield redacted(event, redact)
        except Failure:
            raise  # made by stops.fail: redacted already
        except Exception as exc:  # noqa: BLE001 - outside stops.recorded (a resource, the
            # evidence folder): Dagster would store its text and its cause as they are.
            raise Failure(
                description=redact(str(UnexpectedError(exc))),
                metadata={"traceback": redact(traceback.format_exc())},
                allow_retries=False,
            ) from None
        finally:
            context.log.removeFilter(log_filter)

    step.redacted = True  # what test_definitions checks every step has
    return step


def _run_settings(resources: Mapping[str, object]):
    """The run's settings: the step's `restore` resource, else the one its other resources
    depend on."""
    for resource in resources.values():
        config = (
            resource if isinstance(resource, RestoreConfig) else getattr(resource, "config", None)
        )
        if isinstance(config, RestoreConfig):
            return config.settings()
    raise TypeError("a redacted step needs a resource that depends on RestoreConfig")


def redacted(event, redact: Redactor):
    """A step's `MaterializeResult` or `AssetCheckResult` with its description and every text
    of its metadata redacted; anything else as it is."""
    if not isinstance(event, MaterializeResult | AssetCheckResult):
        return event
    changes: dict[str, object] = {}
    if getattr(event, "description", None):
        changes["description"] = redact(event.description)
    if getattr(event, "metadata", None):
        changes["metadata"] = redacted_metadata(event.metadata, redact)
    if isinstance(event, MaterializeResult) and event.check_results:
        changes["check_results"] = [redacted(c, redact) for c in event.check_results]
    return event._replace(**changes) if changes else event


def redacted_metadata(metadata: Mapping[str, object], redact: Redactor) -> dict[str, object]:
    return {redact(key): _redacted_value(value, redact) for key, value in metadata.items()}


def _redacted_value(value, redact: Redactor):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, TextMetadataValue):
        return MetadataValue.text(redact(value.text))
    if isinstance(value, MarkdownMetadataValue):
        return MetadataValue.md(redact(value.md_str))
    if isinstance(value, JsonMetadataValue):
        return MetadataValue.json(_redacted_value(value.data, redact))
    if isinstance(value, TableMetadataValue):
        records = [TableRecord(_redacted_value(r.data, redact)) for r in value.records]
        return MetadataValue.table(records=records, schema=value.schema)
    if isinstance(value, MetadataValue):  # paths, numbers, asset keys: nothing to hide
        return value
    if isinstance(value, Mapping):
        return redacted_metadata(value, redact)
    if isinstance(value, list):
        return [_redacted_value(v, redact) for v in value]
    return value
