"""Runbook §3 against real PostgreSQL servers: the embedded default and an external one over TCP
with a password. Every test materialises the real Dagster assets."""

from __future__ import annotations

import stat
import subprocess

import psycopg
import pytest

from restore_assets.assets.legacy import FACILITY_NUM
from restore_assets.pg.clients import bundled_bin_dir
from restore_assets.settings import LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE
from restore_assets_tests.conftest import DEMO_PATIENTS
from restore_assets_tests.helpers import (
    check_results,
    database_fingerprint,
    evidence_folders,
    execute,
    failure_messages,
    legacy_target,
    materialize_legacy,
    query,
)

LEGACY_EVIDENCE = [
    "README.md",
    "plan.md",
    "investigation.log",
    "baseline_search.log",
    "legacy_psql.log",
    "psql_dt_legacy.log",
    "rows_vs_dump_legacy.md",
    "psql_count_d_users_legacy.log",
    "psql_count_d_audit_event_legacy.log",
    "psql_count_d_factor2_credential_legacy.log",
    "psql_nextval_facility_num_legacy.log",
    "psql_setval_facility_num_legacy.log",
]


@pytest.fixture(params=["embedded", "external"])
def side(request, secrets_dir, artifacts_dir):
    """Run the test once on the embedded server and once on the external TCP/password one."""
    if request.param == "external":
        request.getfixturevalue("external_legacy")
    return request.param


def restored(**config):
    result = materialize_legacy(allow_reset=True, **config)
    assert result.success, failure_messages(result)
    return result


def insert_line(path, before_line: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(before_line - 1, text + "\n")
    path.write_text("".join(lines), encoding="utf-8")


@pytest.mark.slow
def test_demo_secrets_restore_and_verify(side, secrets_dir, artifacts_dir):
    result = restored()
    assert check_results(result) == {
        "expected_tables": True,
        "patient_count": True,
        "row_counts": True,
        "rows_match_dump": True,
        "nextval_works": True,
    }
    # The demo puts two patients in three in facility .103.
    expected_103 = sum(1 for n in range(1, DEMO_PATIENTS + 1) if n % 3)
    assert query(
        "SELECT count(*) FROM d_patient WHERE facilityid = %s", ("1.3.6.1.4.1.9414.72.103",)
    ) == [(expected_103,)]
    assert query("SELECT count(*) FROM d_users") == [(12,)]
    assert query("SELECT opendolphin.normalize_kana('ヤマダ　 タロウ')") == [("ヤマダ タロウ",)]
    (folder,) = evidence_folders(artifacts_dir)
    for name in LEGACY_EVIDENCE:
        assert (folder / name).is_file(), name
    assert "12" in (folder / "psql_count_d_users_legacy.log").read_text()
    lines = (folder / "investigation.log").read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == [LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE]
    # Seed rows (medical data) never reach evidence: no patient name, no password hash.
    evidence_text = "".join(p.read_text() for p in folder.iterdir() if p.is_file())
    names = [r[0] for r in query("SELECT fullname FROM d_patient LIMIT 20")]
    hashes = [r[0] for r in query("SELECT password FROM d_users")]
    for secret in names + hashes:
        assert secret not in evidence_text


@pytest.mark.slow
def test_second_restore_backs_up_the_non_empty_target_first(side, secrets_dir, artifacts_dir):
    restored()
    execute("CREATE TABLE public.local_notes (note text)")
    execute("INSERT INTO public.local_notes VALUES ('written after the restore')")
    restored()
    assert query("SELECT to_regclass('public.local_notes')") == [(None,)]
    backups = sorted(
        (secrets_dir / "backups").glob("*/legacy-*.dump"), key=lambda p: p.stat().st_mtime
    )
    backup = backups[-1]
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    # The backup holds what was there just before the drop, the table added by hand included.
    listing = subprocess.run(
        [str(bundled_bin_dir() / "pg_restore"), "--list", str(backup)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TABLE public local_notes" in listing
    readme = evidence_folders(artifacts_dir)[-1] / "README.md"
    assert str(backup.relative_to(secrets_dir)) in readme.read_text()


BY_HAND = "someone's psql"


def someone_connected() -> psycopg.Connection:
    """A session of another application on the Legacy target (closed by `with`)."""
    info = {**legacy_target().conninfo(), "application_name": BY_HAND}
    return psycopg.connect(autocommit=True, **info)


def backups_of(secrets_dir) -> int:
    return len(list((secrets_dir / "backups").glob("*/legacy-*.dump")))


@pytest.mark.slow
def test_backup_is_skipped_only_for_an_embedded_target_unchanged_since_the_same_files(
    side, secrets_dir, artifacts_dir
):
    restored()
    taken = backups_of(secrets_dir)
    restored()  # the same files again, nothing written in between
    readme = (evidence_folders(artifacts_dir)[-1] / "README.md").read_text()
    if side == "external":  # an external server is always backed up: safety first
        assert backups_of(secrets_dir) == taken + 1
        return
    assert backups_of(secrets_dir) == taken
    assert "skipped: this embedded target was last restored from these very files" in readme
    # Someone else connected (their latest writes may not be counted yet): a backup first.
    with someone_connected():
        restored()
    assert backups_of(secrets_dir) == taken + 1
    restored()
    assert backups_of(secrets_dir) == taken + 1
    # Rows written since (no object added), by a session now gone: a backup first.
    with someone_connected() as conn:
        conn.execute("UPDATE d_users SET email = email WHERE id = (SELECT min(id) FROM d_users)")
    assert legacy_target().wait_until_gone(BY_HAND)  # its counts have reached the server
    restored()
    assert backups_of(secrets_dir) == taken + 2
    # Other files: a backup first. A failed restore leaves no record that vouches for the target.
    seed = secrets_dir / LEGACY_SEED_FILE
    original = seed.read_bytes()
    footer = (
        seed.read_text(encoding="utf-8").splitlines().index("-- PostgreSQL database dump complete")
    )
    insert_line(seed, footer, "SELECT 1/0;")
    assert not materialize_legacy(allow_reset=True).success
    assert backups_of(secrets_dir) == taken + 3
    seed.write_bytes(original)
    restored()
    assert backups_of(secrets_dir) == taken + 4


@pytest.mark.slow
def test_planted_shell_escape_is_refused_and_never_run(side, secrets_dir, tmp_path):
    restored()
    before = database_fingerprint()
    marker = tmp_path / "pwned"
    schema = secrets_dir / LEGACY_SCHEMA_FILE
    insert_line(schema, 5, f"\\! touch {marker}")  # above the `\restrict` line
    result = materialize_legacy(allow_reset=True)
    assert not result.success
    (message,) = failure_messages(result)
    assert f"{LEGACY_SCHEMA_FILE}:5" in message and "\\! touch" in message
    assert not marker.exists()
    assert database_fingerprint() == before


@pytest.mark.slow
def test_seed_failing_half_way_leaves_the_target_exactly_as_it_was(side, secrets_dir):
    restored()
    execute("CREATE TABLE public.canary (id int)")
    before = database_fingerprint()
    seed = secrets_dir / LEGACY_SEED_FILE
    total = len(seed.read_text(encoding="utf-8").splitlines())
    bad_line = total // 2
    while seed.read_text(encoding="utf-8").splitlines()[bad_line - 2].strip() not in ("", "\\."):
        bad_line += 1  # put the bad statement between two COPY blocks, not inside data
    insert_line(seed, bad_line, "INSERT INTO public.d_facility (id) VALUES (NULL);")
    result = materialize_legacy(allow_reset=True)
    assert not result.success
    (message,) = failure_messages(result)
    assert f"{LEGACY_SEED_FILE}:{bad_line}: ERROR" in message
    assert "rolled back" in message
    assert database_fingerprint() == before


@pytest.mark.slow
def test_dump_from_newer_pg_dump_stops_before_anything_is_dropped(side, secrets_dir):
    restored()
    execute("CREATE TABLE public.canary (id int)")
    before = database_fingerprint()
    schema = secrets_dir / LEGACY_SCHEMA_FILE
    text = schema.read_text(encoding="utf-8")
    schema.write_text(
        text.replace("-- Dumped by pg_dump version 18.6", "-- Dumped by pg_dump version 99.1"),
        encoding="utf-8",
    )
    result = materialize_legacy(allow_reset=True)
    (message,) = failure_messages(result)
    assert "pg_dump 99.1" in message and "PostgreSQL 18" in message
    assert database_fingerprint() == before


def test_missing_file_blocks_with_an_ops_request(secrets_dir, artifacts_dir):
    (secrets_dir / LEGACY_SEED_FILE).unlink()
    result = materialize_legacy()
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    metadata = failure.step_failure_data.user_failure_data.metadata
    assert metadata["exit_code"].value == 2
    log = (evidence_folders(artifacts_dir)[0] / "baseline_search.log").read_text()
    assert f"{LEGACY_SEED_FILE}: missing" in log
    for needed in ("Gate #40", "Deadline:", "Evidence:", "Target: Legacy", "chmod 600"):
        assert needed in log


def test_group_readable_file_is_refused_naming_file_and_mode(secrets_dir, artifacts_dir):
    (secrets_dir / LEGACY_SEED_FILE).chmod(0o644)
    result = materialize_legacy()
    (message,) = failure_messages(result)
    assert LEGACY_SEED_FILE in message and "mode 0644" in message


def test_symlink_escaping_the_secrets_root_is_refused(secrets_dir, tmp_path):
    outside = tmp_path / "elsewhere.sql"
    seed = secrets_dir / LEGACY_SEED_FILE
    outside.write_bytes(seed.read_bytes())
    outside.chmod(0o600)
    seed.unlink()
    seed.symlink_to(outside)
    (message,) = failure_messages(materialize_legacy())
    assert "outside the Secrets root" in message


def facility_num_state():
    return query("SELECT last_value, is_called FROM facility_num")[0]


@pytest.mark.slow
def test_facility_num_preview_consumes_nothing(side, secrets_dir):
    restored()
    before = facility_num_state()
    result = materialize_legacy(selection=[FACILITY_NUM])
    assert result.success and check_results(result) == {"nextval_works": True}
    assert facility_num_state() == before
    # The value the preview showed is still the one the next facility gets.
    assert query("SELECT nextval('facility_num')") == [(before[0] + 1,)]


@pytest.mark.slow
def test_facility_num_behind_the_facilities_is_realigned(side, secrets_dir, artifacts_dir):
    restored()
    execute(
        "INSERT INTO d_facility (id, facilityid, facilityname, registereddate, membertype) "
        "VALUES (99, '1.3.6.1.4.1.9414.72.150', 'テスト医院', '2024-01-01', 'PROCESS')"
    )
    result = materialize_legacy(selection=[FACILITY_NUM])
    assert check_results(result) == {"nextval_works": True}
    assert query("SELECT nextval('facility_num')") == [(151,)]
    setval_log = evidence_folders(artifacts_dir)[-1] / "psql_setval_facility_num_legacy.log"
    assert "RESTART WITH 151" in setval_log.read_text()
