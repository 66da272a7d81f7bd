"""Issue 20, class 5 and the smaller items of class 9: what leaks through errors and names.

Class 5: a failed statement's error carries row data. PostgreSQL's own text of an error can
quote a value — in the primary message (`invalid input syntax for type integer: "…"`, a
trigger's `RAISE`), or in a DETAIL line whose value holds a newline. Every error leaving the
core is said by its SQLSTATE and the names PostgreSQL reports with it
(`redaction.describe`/`first_line`), against the real server and a real run: a staff row whose
e-mail and password hash carry a marker must reach none of the CLI's output, the evidence and
Dagster's storage.

Class 9: a ZIP's file name never adds a line to a log (`redaction.escaped`); a credential in
RESTORE_FACILITY_API_URL is masked by the one redactor (`redaction.shown_url`); a target name is
validated whole, to what a Dagster partition key can carry, and a bad targets.yaml never stops
the code location from loading.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from dagster import serialize_value
from hypothesis import given
from hypothesis import strategies as st

from restore_assets.errors import UnexpectedError
from restore_assets.redaction import describe, first_line, traceback_text
from restore_assets.settings import LEGACY_SEED_FILE, load_settings
from restore_assets_tests.conftest import run_cli
from restore_assets_tests.helpers import legacy_target
from restore_assets_tests.test_failure_matrix import before_footer, migration
from restore_assets_tests.test_flyway_engine import db  # noqa: F401 (a fixture)

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


def _run_recorded(*args: str):
    """`restore-assets ARGS` through the CLI: its exit, what it printed, and the serialized
    event log of the runs it made (what Dagster stored)."""
    from restore_assets.jobs import prepare_instance

    instance = prepare_instance(load_settings().paths)
    earlier = {run.run_id for run in instance.get_runs()}
    done = run_cli(*args)
    runs = [run for run in instance.get_runs() if run.run_id not in earlier]
    stored = serialize_value([list(instance.all_logs(run.run_id)) for run in runs])
    return done.returncode, done.stdout + done.stderr, stored


def _where_held(secret: str, printed: str, stored: str, artifacts_dir: Path) -> dict:
    """Every place a secret must never reach, and whether (or in which files) it did."""
    return {
        "CLI": secret in printed,
        "Dagster's event log": secret in stored,
        "evidence": _files_holding(artifacts_dir, secret),
        "Dagster home": _files_holding(load_settings().paths.dagster_home, secret),
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SYNC_REFUSALS))
def test_a_failed_account_sync_never_shows_the_staff_row(
    case, secrets_dir, artifacts_dir, tmp_path, monkeypatch
):
    """SYNC_REFUSALS[case] on Modernized, and a Legacy staff row carrying the marker."""
    before_footer(secrets_dir / LEGACY_SEED_FILE, STAFF_ROW)
    migration(tmp_path, monkeypatch, "V0300__refuse_account.sql", SYNC_REFUSALS[case])

    code, printed, stored = _run_recorded("run")
    assert code == 1, printed
    assert "account sync failed and was rolled back" in printed, printed  # the path was taken
    assert "account sync failed" in stored
    leaks = _where_held(MARKER, printed, stored, artifacts_dir)
    assert not any(leaks.values()), leaks


# A seed row whose value does not fit its column: PostgreSQL's primary message quotes the value
# (`invalid input syntax for type bigint: "…"`). psql prints it word for word unless told
# otherwise, so the restore's own session runs with VERBOSITY=sqlstate.
SEED_REFUSALS = {
    "a karte id that is no bigint (22P02)": (0, MARKER, "invalid text representation (22P02)"),
    "a karte date that is no date (22007)": (1, f"2018-{MARKER}", "(22007)"),
}


def _karte_row_holding(seed: Path, field: int, value: str) -> None:
    """The first d_karte COPY row gets `value` in its `field`."""
    lines = seed.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("COPY public.d_karte ")) + 1
    fields = lines[at].rstrip("\n").split("\t")
    fields[field] = value
    lines[at] = "\t".join(fields) + "\n"
    seed.write_text("".join(lines), encoding="utf-8")


@pytest.mark.parametrize("case", list(SEED_REFUSALS))
def test_the_restore_session_says_a_refused_value_by_its_sqlstate_only(case, settings, tmp_path):
    """SEED_REFUSALS[case] in a COPY block fed to the restore's psql session directly."""
    from restore_assets.errors import PsqlError
    from restore_assets_tests.test_hostile import fed, run

    field, value, says = SEED_REFUSALS[case]
    text = "CREATE TEMP TABLE karte (id bigint, created date, patient_id bigint);\n"
    text += "COPY karte (id, created, patient_id) FROM stdin;\n1\t2018-06-28\t1\n"
    row = ["2", "2018-06-28", "1"]
    row[field] = value
    text += "\t".join(row) + "\n\\.\n"
    dump = fed(tmp_path / "in", "legacy-server/db-baseline/x.sql", text)
    with pytest.raises(PsqlError) as error:
        run(tmp_path, [dump])
    message = str(error.value)
    assert MARKER not in message, message
    assert MARKER.encode() not in (tmp_path / "psql.log").read_bytes()
    assert "legacy-server/db-baseline/x.sql:" in message and says in message, message


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SEED_REFUSALS))
def test_a_seed_value_refused_by_its_column_never_shows(case, secrets_dir, artifacts_dir):
    """SEED_REFUSALS[case] in the Legacy seed's first d_karte row, through a real `run`."""
    field, value, says = SEED_REFUSALS[case]
    _karte_row_holding(secrets_dir / LEGACY_SEED_FILE, field, value)

    code, printed, stored = _run_recorded("run", "--only", "legacy")
    assert code == 1, printed
    assert "legacy/restore" in stored
    leaks = _where_held(MARKER, printed, stored, artifacts_dir)
    assert not any(leaks.values()), leaks
    assert f"{LEGACY_SEED_FILE}:" in printed and says in printed, printed  # the path was taken
    assert says in stored


# A Modernized migration that casts a stored value its new type refuses (22P02 quotes it). The
# failing statement's own text does not hold the value: the row does.
CASTING_MIGRATION = (
    "CREATE TABLE hostile_note (v text);\n"
    f"INSERT INTO hostile_note VALUES ('{MARKER}');\n"
    "ALTER TABLE hostile_note ALTER COLUMN v TYPE bigint USING v::bigint;\n"
)


def test_a_failed_migration_says_its_condition_never_the_value(db, tmp_path):  # noqa: F811
    """CASTING_MIGRATION through the native engine on the real server, taken into the project's
    errors by the adapter (the engine's own message and the adapter's)."""
    from restore_assets.flyway.errors import MigrationFailed
    from restore_assets.runbook.flyway_adapter import project_errors
    from restore_assets_tests.test_flyway_engine import flyway, write

    write(tmp_path / "sql", "V1__cast.sql", CASTING_MIGRATION)
    engine = flyway(db, tmp_path / "sql")
    with pytest.raises(MigrationFailed) as engine_error:
        engine.migrate()
    with pytest.raises(MigrationFailed) as project_error, project_errors():
        raise engine_error.value
    for exc in (engine_error.value, project_error.value):
        assert MARKER not in str(exc) and MARKER not in traceback_text(exc), str(exc)
        assert "V1__cast.sql failed at line 3" in str(exc), str(exc)
        assert "invalid text representation" in str(exc) and "22P02" in str(exc), str(exc)


def test_the_flyway_cli_failure_keeps_no_server_text():
    """Flyway 10's CLI report of a failed script and of another failure, each quoting a value
    in its `Message` field: neither the error nor its message keeps the value."""
    from restore_assets.runbook.flyway_adapter import cli_failure

    script = (
        'Migrating schema "opendolphin" to version "0300 - cast"\n'
        "ERROR: Script V0300__cast.sql failed\n"
        "-----------------------------------\n"
        "SQL State  : 22P02\n"
        "Error Code : 0\n"
        f'Message    : ERROR: invalid input syntax for type bigint: "{MARKER}"\n'
        "Location   : V0300__cast.sql (/flyway/sql/V0300__cast.sql)\n"
        "Line       : 3\n"
        "Statement  : ALTER TABLE hostile_note ALTER COLUMN v TYPE bigint USING v::bigint\n"
    )
    failed = cli_failure("flyway migrate exited 1", script)
    assert str(failed) == (
        "flyway migrate exited 1: Migration V0300__cast.sql failed at line 3: "
        "ERROR: invalid text representation (22P02)"
    )
    assert (failed.script, failed.version, failed.line, failed.sqlstate) == (
        "V0300__cast.sql", "0300", 3, "22P02"
    )  # fmt: skip
    other = (
        "ERROR: Unable to insert row for version '0300' in Schema History table\n"
        "SQL State  : 23505\n"
        f"Message    : ERROR: duplicate key value\n  Detail: Key (v)=({MARKER}) already exists.\n"
    )
    refused = cli_failure("flyway migrate exited 1", other)
    assert MARKER not in str(refused) and "Unable to insert row" in str(refused), str(refused)
    assert "SQL State  : 23505" in str(refused)


@pytest.mark.slow
def test_a_migration_casting_a_stored_value_never_shows_it(
    secrets_dir, artifacts_dir, tmp_path, monkeypatch
):
    """CASTING_MIGRATION as Modernized's V0300, through a real `run` (native engine)."""
    migration(tmp_path, monkeypatch, "V0300__cast.sql", CASTING_MIGRATION)

    code, printed, stored = _run_recorded("run", "--only", "modernized", "--allow-reset")
    assert code == 1, printed
    leaks = _where_held(MARKER, printed, stored, artifacts_dir)
    assert not any(leaks.values()), leaks
    assert "V0300__cast.sql failed at line 3" in printed, printed  # the path was taken
    assert "invalid text representation (22P02)" in printed and "22P02" in stored


# Class 9 (a): a ZIP's file name is chosen by whoever can write into the inbox; every log that
# names it must keep one line per record. The forged line: a shasum line for a file never sent.
FORGED = "0" * 64 + "  opendolphin-legacy-seed.sql"
FORGING_NAMES = {
    "a newline, then a forged shasum line": f"delivery\n{FORGED}\n.zip",
    "a carriage return and a terminal escape": f"delivery\r{FORGED}\x1b[2K.zip",
    "a Unicode line separator (U+2028)": f"delivery\u2028{FORGED}.zip",
}


@pytest.mark.parametrize("refused", [False, True], ids=["unpacked", "refused"])
@pytest.mark.parametrize("case", list(FORGING_NAMES))
def test_a_zip_name_never_adds_a_line_to_a_log(
    case, refused, demo_secrets, tmp_path, artifacts_dir, monkeypatch
):
    """A ZIP in the inbox named FORGING_NAMES[case], unpacked or refused by `intake-zip`."""
    from restore_assets_tests.test_inbox import PASSWORD, build_zip, demo_entries

    store = tmp_path / "Secrets"
    entries = demo_entries(demo_secrets)
    if refused:
        entries["notes.txt"] = b"not a baseline file"
    build_zip(store / "inbox" / FORGING_NAMES[case], entries)
    monkeypatch.setenv("SECRETS_DIR", str(store))
    monkeypatch.setenv("SECRETS_ZIP_PASSWORD", PASSWORD)

    done = run_cli("intake-zip")
    assert done.returncode == (2 if refused else 0), done
    assert "unpacked" in done.stdout or "refused" in done.stdout
    logs = {"CLI": done.stdout + done.stderr}
    logs |= {str(p): p.read_text() for p in artifacts_dir.rglob("*") if p.is_file()}
    logs |= {str(p): p.read_text() for p in store.rglob("*.reason.txt")}
    assert any(p.endswith("investigation.log") for p in logs)
    for where, text in logs.items():
        lines = text.splitlines()  # every line break Python knows, U+2028 included
        assert not any(line.startswith("0" * 64) for line in lines), (where, text)
        assert "\x1b" not in text and "\r" not in text, (where, text)


# Class 9 (b): a credential in RESTORE_FACILITY_API_URL: user info and a token in the query.
API_USER, API_PASSWORD, API_TOKEN = "api-user-Q2", "api-pw-Zr8!never", "tok-Lm4-never"


def test_a_url_is_shown_without_its_user_info_and_query_values():
    from restore_assets.redaction import REDACTED, Redactor, shown_url

    url = f"https://{API_USER}:{API_PASSWORD}@api.clinic.example:8443/f?token={API_TOKEN}&v=2"
    shown = f"https://{REDACTED}@api.clinic.example:8443/f?token={REDACTED}&v={REDACTED}"
    assert shown_url(url) == shown
    redact = Redactor(urls=[url])
    # The password is a secret on its own too: an error can quote the URL's netloc.
    assert redact(f"GET {url}: nonnumeric port: '{API_PASSWORD}@api'") == (
        f"GET {shown}: nonnumeric port: '{REDACTED}@api'"
    )
    assert shown_url("http://127.0.0.1:8080/health") == "http://127.0.0.1:8080/health"


@pytest.mark.slow
def test_a_credential_in_the_facility_api_url_is_in_no_report(
    demo_secrets, secrets_dir, artifacts_dir, monkeypatch
):
    """RESTORE_FACILITY_API_URL with `user:password@` and `?token=…`, on a port that refuses."""
    from restore_assets_tests.helpers import free_port

    url = f"http://{API_USER}:{API_PASSWORD}@127.0.0.1:{free_port()}/f?token={API_TOKEN}"
    monkeypatch.setenv("RESTORE_FACILITY_API_URL", url)

    code, printed, stored = _run_recorded("run", "--allow-reset")
    assert code == 1, printed  # the facility_api check fails: nothing listens
    assert "facility_api" in printed and "127.0.0.1" in printed, printed
    assert "facility_api" in stored
    for secret in (API_USER, API_PASSWORD, API_TOKEN):
        leaks = _where_held(secret, printed, stored, artifacts_dir)
        assert not any(leaks.values()), (secret, leaks)


# Class 9 (c): target names are Dagster partition keys, folder names and run keys.
ONE_TARGET = (
    "targets:\n  {}:\n    secrets_dir: a\n    legacy: {{db: x}}\n    modernized: {{db: y}}\n"
)
BAD_NAMES = ["clinic\n", "clinic\r", "clinic\nb", "clinic...b", "-clinic", "Clinic", "a" * 64]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_a_target_name_dagster_cannot_carry_is_refused(name, tmp_path):
    """A targets.yaml whose one target is named `name` (a trailing newline passed `$`)."""
    from restore_assets.errors import ConfigError
    from restore_assets.named_targets import load_targets

    path = tmp_path / "targets.yaml"
    path.write_text(ONE_TARGET.format(json.dumps(name)))
    with pytest.raises(ConfigError, match="use lower-case letters"):
        load_targets(load_settings({"RESTORE_TARGETS": str(path)}))


@given(
    name=st.text(min_size=1, max_size=70)
    | st.builds(
        str.__add__,
        st.from_regex(r"[a-z0-9][a-z0-9_-]{0,62}", fullmatch=True),
        st.sampled_from(["", "\n", "\r\n", "\t", " ", "...", "\x00"]),
    )
)
def test_every_target_name_accepted_is_a_valid_partition_key(name):
    """Any name, and valid names with a newline or other character Dagster refuses after them,
    through targets.yaml's validation."""
    from dagster._core.definitions.partitions.utils import (
        raise_error_on_invalid_partition_key_substring,
    )
    from pydantic import ValidationError

    from restore_assets.named_targets import _File

    target = {"secrets_dir": "a", "legacy": {"db": "x"}, "modernized": {"db": "y"}}
    try:
        _File.model_validate({"targets": {name: target}})
    except ValidationError:
        return
    raise_error_on_invalid_partition_key_substring([name])
    assert name.isprintable() and "," not in name and "/" not in name


@pytest.mark.slow
@pytest.mark.parametrize(
    "text",
    [
        ONE_TARGET.format(json.dumps("clinic\n")),
        "targets: [not, a, mapping\n",
        None,  # RESTORE_TARGETS names a file that is not there
    ],
    ids=["a name ending in a newline", "not YAML", "missing"],
)
def test_a_bad_targets_yaml_never_stops_the_code_location_from_loading(text, tmp_path):
    """RESTORE_TARGETS naming a bad targets.yaml: a fresh process loads the definitions (the
    sensor included); the sensor's tick reports the configuration error instead."""
    path = tmp_path / "targets.yaml"
    if text is not None:
        path.write_text(text)
    script = (
        "from dagster import DagsterInstance, build_sensor_context\n"
        "from restore_assets.definitions import defs\n"
        "from restore_assets.errors import ConfigError\n"
        "repository = defs.get_repository_def()\n"
        "repository.load_all_definitions()\n"
        "sensor = repository.get_sensor_def('secrets_sensor')\n"
        "context = build_sensor_context(instance=DagsterInstance.ephemeral())\n"
        "try:\n"
        "    sensor(context)\n"
        "except ConfigError as exc:\n"
        "    print('tick:', exc)\n"
    )
    env = {**os.environ, "RESTORE_TARGETS": str(path), "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tick: ") and str(path) in done.stdout, done.stdout
