"""Translating runbook results into Dagster's terms, shared by the assets: a core `Check`
becomes an `AssetCheckResult`, rows become `MetadataValue.table`, evidence files become paths;
and the tags a run carries (its sides, its target, the content each restore vetted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from dagster import (
    AssetCheckResult,
    AssetKey,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
)

from restore_assets.runbook.checks import Check
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.settings import SIDES

SIDES_TAG = "restore_assets/sides"
GATES_REPORT = AssetKey(["gates", "report"])
PARTITION_TAG = "dagster/partition"  # every run's target (named_targets; `default`)
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
