"""Issue 18: every place a run can stop or fail, and what each reader is told.

For each case the whole chain runs as an operator runs it (`restore-assets run`), and every
account of the outcome must agree and name the real cause, and only it: the exit code, the
CLI's gate table, `gate_report.json`/`.md`, `progress_snippet.md`, `gate_table_row.md`, and
what `gates/report`'s three checks record in the Dagster instance (what the UI shows). A gate
the run never reached says "not reached" and names the step that stopped it and why; no Dagster
exception class and no traceback reach evidence meant for people.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import AssetCheckKey, DagsterInstance

from restore_assets.assets.shell import GATES_REPORT
from restore_assets.runbook.gate_report import GATE_IDS, NOT_REACHED, STATUS_WORDS
from restore_assets.settings import (
    DEFAULT_TARGET,
    DEMO_FLYWAY_CONF,
    LEGACY_SCHEMA_FILE,
    LEGACY_SEED_FILE,
    MODERN_SCHEMA_FILE,
)
from restore_assets_tests.conftest import run_cli
from restore_assets_tests.helpers import evidence_folders, target_instance

pytestmark = pytest.mark.slow  # each case runs the whole chain

PEOPLE_FILES = ("gate_report.md", "progress_snippet.md", "gate_table_row.md", "README.md")
DAGSTER_WORDS = re.compile(r"Dagster\w*(Error|Exception)|Traceback|Stack Trace")
# A database error's DETAIL/CONTEXT lines quote rows (`Failing row contains (…)`: a user's name,
# e-mail and password hash from the sync): never in a message, the evidence or the instance.
ROW_WORDS = re.compile(r"DETAIL:|CONTEXT:|row contains")


def before_footer(path: Path, statement: str) -> int:
    """Put a statement on its own line before pg_dump's footer; returns its line number."""
    lines = path.read_text(encoding="utf-8").splitlines()
    at = lines.index("-- PostgreSQL database dump complete")
    lines.insert(at, statement)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return at + 1


def a_site_without(seed: Path, table: str) -> None:
    """A site whose database lacks `table`: its rows taken out of the seed (else the seed's
    rows went missing, which `rows_match_dump` rightly reports) and the table dropped at the end
    (the shared schema dump creates it)."""
    lines = seed.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"COPY {table} "))
    end = lines.index("\\.", start)
    seed.write_text("\n".join(lines[:start] + lines[end + 1 :]) + "\n", encoding="utf-8")
    before_footer(seed, f"DROP TABLE {table} CASCADE;")


def between_copy_blocks(path: Path, statement: str) -> int:
    """A statement halfway through the seed, between two COPY blocks; returns its line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    at = len(lines) // 2
    while lines[at - 1].strip() not in ("", "\\."):
        at += 1
    lines.insert(at, statement)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return at + 1


def migration(tmp_path: Path, monkeypatch, name: str, text: str) -> None:
    """The demo migrations plus one more."""
    folder = tmp_path / "migrations"
    shutil.copytree(DEMO_FLYWAY_CONF.parent / "sql", folder)
    (folder / name).write_text(text, encoding="utf-8")
    monkeypatch.setenv("FLYWAY_LOCATIONS", f"filesystem:{folder}")


@dataclass
class Case:
    """What a case must produce. `failed`: gate -> the sub-checks that fail, and only those
    (the other gates pass); empty when no gate was reached. `cause`: words naming the real
    cause that every account must contain."""

    exit_code: int
    cause: list[str]
    failed: dict[str, set[str]] = field(default_factory=dict)
    status: str = "failed"
    stopped: set[str] = field(default_factory=set)  # the steps a not-reached gate names


def secrets_missing(secrets, tmp_path, monkeypatch):
    (secrets / LEGACY_SEED_FILE).unlink()
    return Case(2, ["legacy/restore, modernized/schema", "opendolphin-legacy-seed.sql (missing)"],
                status="blocked", stopped={"legacy/restore", "modernized/schema"})  # fmt: skip


def refused_at_intake(secrets, tmp_path, monkeypatch):
    (secrets / MODERN_SCHEMA_FILE).chmod(0o644)
    return Case(2, ["modernized/schema", "opendolphin-modern-schema.sql", "mode 0644"],
                status="blocked", stopped={"legacy/restore", "modernized/schema"})  # fmt: skip


def preflight_newer_dump(secrets, tmp_path, monkeypatch):
    schema = secrets / LEGACY_SCHEMA_FILE
    text = schema.read_text(encoding="utf-8")
    schema.write_text(text.replace("pg_dump version 18.6", "pg_dump version 99.1"), "utf-8")
    return Case(1, ["legacy/restore", "pg_dump 99.1"], stopped={"legacy/restore"})


def legacy_bad_row(secrets, tmp_path, monkeypatch):
    line = between_copy_blocks(
        secrets / LEGACY_SEED_FILE, "INSERT INTO public.d_facility (id) VALUES (NULL);"
    )
    return Case(1, ["legacy/restore", f"{LEGACY_SEED_FILE}:{line}"], stopped={"legacy/restore"})


def facility_num_missing(secrets, tmp_path, monkeypatch):
    before_footer(secrets / LEGACY_SEED_FILE, "DROP SEQUENCE public.facility_num CASCADE;")
    return Case(
        1,
        ["facility_num_nextval"],
        {"db_restore": {"facility_num_nextval"}, "jms_claim": {"db_restore_passed"}},
    )


def modernized_schema_fails(secrets, tmp_path, monkeypatch):
    line = before_footer(secrets / MODERN_SCHEMA_FILE, "SELECT 1/0;")
    return Case(
        1, ["modernized/schema", f"{MODERN_SCHEMA_FILE}:{line}"], stopped={"modernized/schema"}
    )


def migration_fails(secrets, tmp_path, monkeypatch):
    migration(tmp_path, monkeypatch, "V0300__broken.sql", "SELECT 1;\nSELECT 1/0;\n")
    return Case(
        1, ["modernized/flyway_history", "V0300__broken.sql"], stopped={"modernized/flyway_history"}
    )


def sync_fails(secrets, tmp_path, monkeypatch):
    refuse = "ALTER TABLE d_users ADD CONSTRAINT no_accounts CHECK (false) NOT VALID;\n"
    migration(tmp_path, monkeypatch, "V0300__no_accounts.sql", refuse)
    return Case(1, ["sync/facility_users", "no_accounts"], stopped={"sync/facility_users"})


def gate_table_missing(secrets, tmp_path, monkeypatch):
    # A site whose required tables leave diagnosis_module out: the gate still wants it.
    monkeypatch.setenv("RESTORE_LEGACY_EXPECTED_TABLES", "d_users,d_audit_event,claim_item")
    a_site_without(secrets / LEGACY_SEED_FILE, "public.diagnosis_module")
    return Case(1, ["legacy_diagnosis_module", "diagnosis_module missing"],
                {"jms_claim": {"legacy_diagnosis_module"}})  # fmt: skip


def required_table_missing(secrets, tmp_path, monkeypatch):
    a_site_without(secrets / LEGACY_SEED_FILE, "public.claim_item")
    return Case(1, ["legacy/schema", "expected_tables", "claim_item"], stopped={"legacy/schema"})


def required_column_missing(secrets, tmp_path, monkeypatch):
    migration(tmp_path, monkeypatch, "V0300__drop_flag.sql",
              "ALTER TABLE d_module DROP COLUMN performflag;\n")  # fmt: skip
    return Case(1, ["modernized/flyway_history", "expected_columns", "d_module.performflag"],
                stopped={"modernized/flyway_history"})  # fmt: skip


def audit_insert_refused(secrets, tmp_path, monkeypatch):
    refuse = "ALTER TABLE d_audit_event ADD CONSTRAINT no_probe CHECK (action <> 'GATE_PROBE');\n"
    migration(tmp_path, monkeypatch, "V0300__no_probe.sql", refuse)
    failed = {"audit_capture": {"insert_returning_id"}, "jms_claim": {"audit_capture_passed"}}
    return Case(1, ["insert_returning_id", "no_probe"], failed)


def unexpected_exception(secrets, tmp_path, monkeypatch):
    # Not a RestoreError: a count over a name the server rejects, on both sides, after commit.
    monkeypatch.setenv("RESTORE_LEGACY_COUNT_TABLES", "d_users,no.such.table.at_all")
    return Case(1, ["legacy/restore", "unexpected error", "no.such.table.at_all"],
                stopped={"legacy/restore", "modernized/flyway_history"})  # fmt: skip


CASES = [
    secrets_missing,
    refused_at_intake,
    preflight_newer_dump,
    legacy_bad_row,
    facility_num_missing,
    modernized_schema_fails,
    migration_fails,
    sync_fails,
    gate_table_missing,
    required_table_missing,
    required_column_missing,
    audit_insert_refused,
    unexpected_exception,
]


def stopped_steps(detail: str) -> set[str]:
    """The steps a "not reached: A, B stopped the run: …" reason names."""
    found = re.findall(r"not reached: (.+?) stopped the run:", detail)
    return {step for steps in found for step in steps.split(", ")}


def cli_gates(stdout: str) -> dict[str, tuple[str, str]]:
    """The CLI's gate table: gate -> (result, detail)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("gate  "))
    table = {}
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        gate, result, *detail = line.split(maxsplit=2)
        table[gate] = (result, detail[0] if detail else "")
    return table


def instance_gates(run_id: str) -> dict[str, tuple[str, str]]:
    """What the UI shows for gates/report's checks: each check's latest execution record."""
    instance = DagsterInstance.get()
    out = {}
    for gate in GATE_IDS:
        (record,) = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(GATES_REPORT, gate), limit=1
        )
        assert record.run_id == run_id, f"{gate}: the latest record is another run's"
        evaluation = record.event.dagster_event.asset_check_evaluation_data
        out[gate] = (record.status.value, evaluation.description or "")
    return out


@pytest.mark.parametrize("make_case", CASES, ids=[c.__name__ for c in CASES])
def test_every_account_of_a_stop_names_the_real_cause_and_only_it(
    make_case, secrets_dir, artifacts_dir, tmp_path, monkeypatch
):
    case = make_case(secrets_dir, tmp_path, monkeypatch)
    done = run_cli("run")
    said = done.stdout + done.stderr
    assert done.returncode == case.exit_code, said
    (folder,) = evidence_folders(artifacts_dir)
    report = json.loads((folder / "gate_report.json").read_text())
    gates = {g["id"]: g for g in report["gates"]}
    reached = bool(case.failed)
    assert report["status"] == case.status

    # gate_report.json: each gate's own verdict; the failed sub-checks are exactly the cause.
    for gate_id, gate in gates.items():
        failed = {c["id"] for c in gate["checks"] if c["passed"] is False}
        if reached:
            assert failed == case.failed.get(gate_id, set()), (gate_id, gate)
            assert gate["passed"] is (gate_id not in case.failed)
        else:
            assert failed == {NOT_REACHED} and not gate["passed"], gate
            (check,) = gate["checks"]
            assert check["detail"].startswith("not reached: "), check
            assert stopped_steps(check["detail"]) == case.stopped, check  # those, and only those
        details = " ".join(f"{c['id']}: {c['detail']}" for c in gate["checks"] if not c["passed"])
        if gate_id in case.failed or not reached:
            for words in case.cause:
                assert words in details, (gate_id, words, details)

    # The CLI's gate table and the instance (the UI's checks) say the same, gate by gate.
    table = cli_gates(done.stdout)
    run = DagsterInstance.get().get_runs(limit=1)[0]
    recorded = instance_gates(run.run_id)
    for gate_id in GATE_IDS:
        result, detail = table[gate_id]
        status, description = recorded[gate_id]
        if reached and gate_id not in case.failed:
            assert (result, status) == ("passed", "SUCCEEDED"), (gate_id, result, status)
            continue
        assert (result, status) == ("FAILED", "FAILED"), (gate_id, result, status)
        for words in case.cause:
            assert words in detail and words in description, (gate_id, words, detail, description)
        assert ("not reached" in detail) is (not reached)
        if not reached:
            assert stopped_steps(description) == stopped_steps(detail) == case.stopped
        assert not DAGSTER_WORDS.search(description), description

    # The files people paste: the cause, the verdicts, never Dagster's internals.
    markdown = (folder / "gate_report.md").read_text()
    snippet = (folder / "progress_snippet.md").read_text()
    row = (folder / "gate_table_row.md").read_text()
    for words in case.cause:
        assert words in markdown and words in snippet and words in row, words
    for gate_id in GATE_IDS:
        verdict = "not reached" if not reached else "NG" if gate_id in case.failed else "OK"
        assert f"{gate_id} {verdict}" in snippet.replace("未到達 / ", ""), snippet
    assert f"❌ {STATUS_WORDS[case.status]} / {case.status}" in row  # the runbook's word first
    assert "DB ベースライン復旧済み" not in row + snippet  # said only of a restore that passed
    if not reached:
        assert "Flyway 履歴 / history: なし / none" not in snippet  # never read, so never "none"
    for name in (*PEOPLE_FILES, "gate_report.json"):
        text = (folder / name).read_text()
        assert not DAGSTER_WORDS.search(text), (name, text)
    assert not DAGSTER_WORDS.search(done.stdout), done.stdout
    for path in folder.iterdir():
        assert not ROW_WORDS.search(path.read_text(errors="replace")), path.name
    assert not ROW_WORDS.search(said), said
    assert not any(ROW_WORDS.search(d) for _, d in recorded.values()), recorded
    if os.environ.get("FAILURE_MATRIX"):  # `make failure-matrix`: this run's row, as observed
        gates = "; ".join(f"{g} {r}: {d}" if d else f"{g} {r}" for g, (r, d) in table.items())
        recorded_as = ", ".join(f"{g} {status}" for g, (status, _) in recorded.items())
        row = [make_case.__name__, str(done.returncode), report["status"], gates, recorded_as]
        with open(os.environ["FAILURE_MATRIX"], "a", encoding="utf-8") as out:
            out.write("| " + " | ".join(c.replace("|", "/") for c in row) + " |\n")


def test_materialize_all_with_empty_secrets_asks_ops_for_every_file(
    tmp_path, artifacts_dir, monkeypatch
):
    """The UI's "Materialize all" (Dagster's implicit job: no tags, no hook of ours): one request
    lists the three missing files of both sides, and gates/report names both stopped steps."""
    from restore_assets.definitions import defs

    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "empty"))
    instance = target_instance()
    job = defs.resolve_implicit_global_asset_job_def()
    everything = set(job.asset_layer.executable_asset_keys)
    result = job.execute_in_process(
        instance=instance,
        partition_key=DEFAULT_TARGET,
        asset_selection=list(everything),
        raise_on_error=False,
    )
    assert not result.success
    (folder,) = evidence_folders(artifacts_dir)
    request = (folder / "baseline_search.log").read_text()
    assert "# sides: legacy, modernized" in request
    for relpath in (LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE, MODERN_SCHEMA_FILE):
        assert f"{relpath}  [" in request and "(missing)" in request, request
    for gate in GATE_IDS:
        (record,) = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(GATES_REPORT, gate), limit=1
        )
        description = record.event.dagster_event.asset_check_evaluation_data.description
        assert record.status.value == "FAILED" and record.run_id == result.run_id
        assert "legacy/restore, modernized/schema stopped the run" in description, description


def test_materialize_all_records_an_unexpected_error_too(secrets_dir, artifacts_dir, monkeypatch):
    """The implicit job has no hook of ours: an error that is not a RestoreError must still
    leave a gate report naming it, a README saying the step failed, and failed gate checks in
    the run, never an older 'passed'."""
    from restore_assets.definitions import defs

    instance = target_instance()
    job = defs.resolve_implicit_global_asset_job_def()
    everything = list(job.asset_layer.executable_asset_keys)
    config = {"resources": {"restore": {"config": {"allow_reset": True}}}}
    assert job.execute_in_process(
        instance=instance,
        partition_key=DEFAULT_TARGET,
        asset_selection=everything,
        run_config=config,
    ).success
    monkeypatch.setenv("RESTORE_LEGACY_COUNT_TABLES", "d_users,no.such.table.at_all")
    result = job.execute_in_process(
        instance=instance,
        partition_key=DEFAULT_TARGET,
        asset_selection=everything,
        run_config=config,
        raise_on_error=False,
    )
    assert not result.success
    folder = evidence_folders(artifacts_dir)[-1]
    report = json.loads((folder / "gate_report.json").read_text())
    assert report["status"] == "failed"
    for gate in report["gates"]:
        (check,) = gate["checks"]
        assert check["id"] == NOT_REACHED and "unexpected error (SyntaxError)" in check["detail"]
        assert stopped_steps(check["detail"]) == {"legacy/restore", "modernized/flyway_history"}
    readme = (folder / "README.md").read_text()
    assert re.search(r"\| legacy/restore \| failed \| error: unexpected error", readme), readme
    for gate in GATE_IDS:
        (record,) = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(GATES_REPORT, gate), limit=1
        )
        assert record.run_id == result.run_id and record.status.value == "FAILED"
