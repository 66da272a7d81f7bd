"""Issue 20, class 5 and the smaller items of class 9: what leaks through errors and names.

Class 5: a failed statement's error carries row data. PostgreSQL's own text of an error can
quote a value — in the primary message (`invalid input syntax for type integer: "…"`, a
trigger's `RAISE`), or in a DETAIL line whose value holds a newline. Every error leaving the
core is said by its SQLSTATE and the names PostgreSQL reports with it
(`redaction.describe`/`first_line`), against the real server and a real run: a staff row whose
e-mail and password hash carry a marker must reach none of the CLI's output, the evidence and
Dagster's storage.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from dagster import serialize_value

from restore_assets.errors import UnexpectedError
from restore_assets.redaction import describe, first_line, traceback_text
from restore_assets.settings import LEGACY_SEED_FILE, load_settings
from restore_assets_tests.conftest import run_cli
from restore_assets_tests.helpers import legacy_target
from restore_assets_tests.test_failure_matrix import before_footer, migration

MARKER = "Hx7-MARKER-q9"  # in the staff row's e-mail and password hash

# Statements the real server refuses, each quoting the marker in its own text of the error.
REFUSED = {
    "a cast of the value (22P02 quotes it in the primary message)": (
        f"SELECT '{MARKER}'::int",
        ["invalid text representation", "(22P02)"],
    ),
    "a date of the value (22007 quotes it)": (
        f"SELECT '{MARKER}'::date",
        ["(22007)"],
    ),
    "a trigger's RAISE with the row's values (P0001)": (
        f"DO $$ BEGIN RAISE EXCEPTION 'account % refused', '{MARKER}@clinic.example'; END $$",
        ["raise exception (P0001)"],
    ),
    "a not-null violation whose Failing row has a newline in a value (23502)": (
        "CREATE TEMP TABLE staff (email text, password text NOT NULL);"
        f"INSERT INTO staff VALUES (E'x\\n{MARKER}@clinic.example', NULL)",
        ["not null violation on column password of table pg_temp", "(23502)"],
    ),
    "a check violation (23514: Failing row contains the value)": (
        "CREATE TEMP TABLE staff (email text CHECK (email NOT LIKE '%@%'));"
        f"INSERT INTO staff VALUES ('{MARKER}@clinic.example')",
        ["check violation on constraint staff_email_check", "(23514)"],
    ),
    "a unique violation (23505: Key (…)=(…) in the DETAIL)": (
        "CREATE TEMP TABLE staff (email text UNIQUE);"
        f"INSERT INTO staff VALUES ('{MARKER}'), ('{MARKER}')",
        ["unique violation on constraint staff_email_key", "(23505)"],
    ),
}


def _refused(statements: str) -> psycopg.Error:
    """The error of the last statement (`;`-separated: the DO block is the only one)."""
    with legacy_target().connect(autocommit=True) as conn:
        *setup, failing = statements.split(";") if "$$" not in statements else [statements]
        for statement in setup:
            conn.execute(statement)
        with pytest.raises(psycopg.Error) as refused:
            conn.execute(failing)
    return refused.value


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_database_error_leaves_the_core_as_its_condition_never_a_value(case, settings):
    """REFUSED[case]: the real server's error, whose own text quotes the marker."""
    statements, says = REFUSED[case]
    exc = _refused(statements)
    assert MARKER in str(exc)  # PostgreSQL's text does quote it
    try:
        raise RuntimeError("the step failed") from exc
    except RuntimeError as chained:
        trace = traceback_text(chained)
    for text in (describe(exc), first_line(exc), str(UnexpectedError(exc)), trace):
        assert MARKER not in text, text
    for words in says:
        assert words in first_line(exc), first_line(exc)


def test_an_error_whose_message_names_objects_only_keeps_it(settings):
    """The control: `relation … does not exist` (42P01) says what to fix, and keeps saying it."""
    exc = _refused("SELECT * FROM no_such_table")
    assert first_line(exc) == 'relation "no_such_table" does not exist (42P01)'
    assert first_line(ValueError("not a database error\nsecond line")) == "not a database error"


# A staff row on Legacy (first in the sync's id order) whose e-mail and hash hold the marker.
STAFF_ROW = (
    "INSERT INTO public.d_users (id, userid, password, commonname, email, membertype, "
    f"registereddate, facility_id) SELECT -1, 'hostile:staff', 'md5{MARKER}hash', 'Staff', "
    f"'{MARKER}@clinic.example', 'staff', DATE '2020-01-01', min(id) FROM public.d_facility;"
)
# Modernized migrations under which the sync of that row fails, its value in the error's text.
SYNC_REFUSALS = {
    "a column type that refuses the value (22P02 quotes it)": (
        "ALTER TABLE d_users ALTER COLUMN email TYPE integer USING NULL;\n"
    ),
    "a trigger that raises with the row's e-mail and hash (P0001)": (
        "CREATE FUNCTION refuse_account() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  IF NEW.id < 0 THEN\n"
        "    RAISE EXCEPTION 'account % (%) refused', NEW.email, NEW.password;\n"
        "  END IF;\n"
        "  RETURN NEW;\n"
        "END $$;\n"
        "CREATE TRIGGER refuse_account BEFORE INSERT OR UPDATE ON d_users\n"
        "  FOR EACH ROW EXECUTE FUNCTION refuse_account();\n"
    ),
}


def _files_holding(folder: Path, marker: str) -> list[str]:
    return [
        str(path)
        for path in folder.rglob("*")
        if path.is_file() and marker.encode() in path.read_bytes()
    ]


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SYNC_REFUSALS))
def test_a_failed_account_sync_never_shows_the_staff_row(
    case, secrets_dir, artifacts_dir, tmp_path, monkeypatch
):
    """SYNC_REFUSALS[case] on Modernized, and a Legacy staff row carrying the marker."""
    from restore_assets.jobs import prepare_instance

    before_footer(secrets_dir / LEGACY_SEED_FILE, STAFF_ROW)
    migration(tmp_path, monkeypatch, "V0300__refuse_account.sql", SYNC_REFUSALS[case])
    instance = prepare_instance(load_settings().paths)
    earlier = {run.run_id for run in instance.get_runs()}

    done = run_cli("run")
    printed = done.stdout + done.stderr
    assert done.returncode == 1, printed
    assert "account sync failed and was rolled back" in printed, printed  # the path was taken

    runs = [run for run in instance.get_runs() if run.run_id not in earlier]
    stored = serialize_value([list(instance.all_logs(run.run_id)) for run in runs])
    assert runs and "account sync failed" in stored
    assert MARKER not in printed, printed
    assert MARKER not in stored
    assert not _files_holding(artifacts_dir, MARKER)
    assert not _files_holding(load_settings().paths.dagster_home, MARKER)
