"""Issue 23: the fast load against raw `psql -1 -f schema -f seed`, on the real embedded server.

Each differential test restores one pair of dumps with the project (the real Dagster assets),
takes `pg_dump --schema-only` and a hash of every table's rows, then resets the target and runs
the runbook's own command on the same files: both must end in the same state. Also: which load
ran and why is what the evidence says; a seed breaking a key fails either way with nothing
changed; the row-count gate catches rows that did not arrive, on both load paths.
"""

from __future__ import annotations

import subprocess

import psycopg
import pytest
from psycopg import sql

from restore_assets.assets.legacy import SEED
from restore_assets.demo.build import ScratchDatabase
from restore_assets.pg.clients import client_binary
from restore_assets.pg.fastload import FastLoad
from restore_assets.runbook.restore import reset_script, reset_set
from restore_assets.settings import LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE
from restore_assets_tests.helpers import (
    check_results,
    database_fingerprint,
    evidence_folders,
    failure_messages,
    legacy_target,
    materialize_legacy,
)

# One of each object kind the fast load must give back as it was (or leave alone).
KINDS_SQL = """
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE SCHEMA app;
CREATE TABLE app.parent (id bigint PRIMARY KEY, code text NOT NULL, note text,
    CONSTRAINT parent_code_key UNIQUE (code) DEFERRABLE INITIALLY DEFERRED);
COMMENT ON CONSTRAINT parent_code_key ON app.parent IS 'codes are unique';
CREATE TABLE app.child (id bigint, parent_id bigint, qty int CHECK (qty >= 0), label text);
ALTER TABLE app.child ADD CONSTRAINT child_pkey PRIMARY KEY (id) WITH (fillfactor=80);
ALTER TABLE app.child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id)
    REFERENCES app.parent(id) DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX child_label_idx ON app.child (lower(label)) WITH (fillfactor=70);
ALTER INDEX app.child_label_idx ALTER COLUMN 1 SET STATISTICS 500;
COMMENT ON INDEX app.child_label_idx IS 'by label';
ALTER TABLE app.child CLUSTER ON child_label_idx;
CREATE TABLE app.ident (a int NOT NULL, b text);
CREATE UNIQUE INDEX ident_a_idx ON app.ident (a);
ALTER TABLE app.ident REPLICA IDENTITY USING INDEX ident_a_idx;
CREATE TABLE app.booking (room int, during tstzrange,
    EXCLUDE USING gist (room WITH =, during WITH &&));
CREATE TABLE public.fknv (id int PRIMARY KEY, p bigint);
CREATE FUNCTION app.fill_note() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN NEW.note := coalesce(NEW.note, 'filled'); RETURN NEW; END $$;
INSERT INTO app.parent SELECT g, 'c' || g FROM generate_series(1, 1000) g;
INSERT INTO app.child SELECT g, 1 + g % 1000, g % 7, 'L' || g FROM generate_series(1, 5000) g;
INSERT INTO app.ident SELECT g, 'b' FROM generate_series(1, 100) g;
INSERT INTO app.booking SELECT g, tstzrange(timestamptz '2026-01-01' + g * interval '1 hour',
    timestamptz '2026-01-01' + (g + 1) * interval '1 hour') FROM generate_series(1, 100) g;
INSERT INTO public.fknv VALUES (1, 5);
UPDATE app.parent SET note = NULL;
CREATE TRIGGER parent_fill BEFORE INSERT ON app.parent FOR EACH ROW
    EXECUTE FUNCTION app.fill_note();
"""

PARTITIONED_SQL = """
CREATE TABLE public.measure (id int, at date NOT NULL, v int, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE TABLE public.measure_2024 PARTITION OF public.measure
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.measure_2025 PARTITION OF public.measure
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX measure_v ON public.measure (v);
CREATE TABLE public.plain (id int PRIMARY KEY);
INSERT INTO public.measure
    SELECT g, date '2024-06-01' + (g % 400), g FROM generate_series(1, 1000) g;
INSERT INTO public.plain SELECT generate_series(1, 10);
"""

# A NOT VALID foreign key: psql's order checks the seed's rows against it as they arrive; added
# back after the seed it would check none, so the fast load leaves it to the runbook's order.
NOT_VALID_FK_SQL = """
CREATE TABLE public.owner (id int PRIMARY KEY);
CREATE TABLE public.pet (id int PRIMARY KEY, owner_id int);
INSERT INTO public.owner SELECT generate_series(1, 10);
INSERT INTO public.pet SELECT g, 1 + g % 10 FROM generate_series(1, 40) g;
ALTER TABLE public.pet ADD CONSTRAINT pet_owner_fk FOREIGN KEY (owner_id)
    REFERENCES public.owner(id) NOT VALID;
"""

# A view grouping by a primary key depends on it: the key cannot be dropped without CASCADE.
VIEW_ON_KEY_SQL = """
CREATE TABLE public.item (id int PRIMARY KEY, name text);
CREATE VIEW public.item_names AS SELECT id, name FROM public.item GROUP BY id;
INSERT INTO public.item SELECT g, 'n' || g FROM generate_series(1, 50) g;
"""


@pytest.fixture(autouse=True)
def any_tables(monkeypatch):
    """These dumps are not OpenDolphin's: any table will do for `expected_tables`."""
    monkeypatch.setenv("RESTORE_LEGACY_EXPECTED_TABLES", "*")


def dump_into_secrets(secrets_dir, script: str) -> None:
    """Replace the Legacy slots with pg_dump's schema and data dumps of a database `script`
    builds on the embedded server."""
    db = legacy_target()
    with ScratchDatabase(db, "restore_fastload_source") as scratch:
        scratch.run(script)
        for relpath, kind in (
            (LEGACY_SCHEMA_FILE, "--schema-only"),
            (LEGACY_SEED_FILE, "--data-only"),
        ):
            (secrets_dir / relpath).unlink()
            scratch.dump(secrets_dir / relpath, kind)


ROWS_MD5 = "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM ONLY {} t"


def end_state() -> tuple[list[str], dict[str, str]]:
    """`pg_dump --schema-only` of the target (but its random `\\restrict` key) and an md5 of
    every user table's rows, in order."""
    db = legacy_target()
    pg_dump = client_binary("pg_dump", db.pg.tools.pg_dump)
    done = subprocess.run(
        [pg_dump, "--schema-only"], env=db.client_env(), capture_output=True, text=True, check=True
    )
    schema = [
        line
        for line in done.stdout.splitlines()
        if not line.startswith(("\\restrict", "\\unrestrict"))
    ]
    hashes = {}
    with db.connect(autocommit=True) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
            "c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', "
            "'information_schema') AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2"
        ).fetchall()
        for schema_name, table in tables:
            query = sql.SQL(ROWS_MD5).format(sql.Identifier(schema_name, table))
            hashes[f"{schema_name}.{table}"] = conn.execute(query).fetchone()[0]
    return schema, hashes


def raw_psql(secrets_dir) -> subprocess.CompletedProcess[str]:
    """The runbook's own command into the target, after the same reset the project does."""
    db = legacy_target()
    with db.connect(autocommit=True) as conn:
        conn.execute(reset_script(reset_set(db), recreate_public=True))
    psql = client_binary("psql", db.pg.tools.psql)
    command = [psql, "-X", "-1", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=sqlstate"]
    command += [
        "-f",
        str(secrets_dir / LEGACY_SCHEMA_FILE),
        "-f",
        str(secrets_dir / LEGACY_SEED_FILE),
    ]
    return subprocess.run(command, env=db.client_env(), capture_output=True, text=True)


def load_said(result) -> str:
    (materialization,) = [
        m for m in result.asset_materializations_for_node("legacy_restore") if m.asset_key == SEED
    ]
    return materialization.metadata["load"].value


def restore_both_ways(secrets_dir) -> str:
    """The project's restore, then raw psql: the same end state. Returns which load ran."""
    result = materialize_legacy(allow_reset=True)
    assert result.success, failure_messages(result)
    assert check_results(result)["rows_match_dump"] is True
    project = end_state()
    done = raw_psql(secrets_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    raw = end_state()
    assert project[1] == raw[1]  # every table's rows
    assert project[0] == raw[0]  # the whole schema, as pg_dump prints it
    assert project[1], "no table restored"
    return load_said(result)


@pytest.mark.slow
def test_demo_dumps_fast_load_ends_as_raw_psql(secrets_dir, artifacts_dir):
    said = restore_both_ways(secrets_dir)
    assert said.startswith("fast (") and "indexes and keys deferred" in said


@pytest.mark.slow
def test_every_object_kind_fast_load_ends_as_raw_psql(secrets_dir, artifacts_dir):
    dump_into_secrets(secrets_dir, KINDS_SQL)
    said = restore_both_ways(secrets_dir)
    assert said.startswith("fast (8 indexes and keys deferred"), said


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "why"),
    [
        (PARTITIONED_SQL, "an index or key on a partitioned table"),
        (VIEW_ON_KEY_SQL, "an index or key could not be dropped (2BP01)"),
        (NOT_VALID_FK_SQL, "a foreign key NOT VALID"),
    ],
    ids=["partitioned", "view-on-key", "not-valid-fk"],
)
def test_what_it_does_not_handle_loads_in_the_runbooks_order(
    script, why, secrets_dir, artifacts_dir
):
    dump_into_secrets(secrets_dir, script)
    said = restore_both_ways(secrets_dir)
    assert said.startswith("plain (the runbook's order in the same session: ") and why in said


@pytest.mark.slow
def test_forced_plain_load_ends_as_raw_psql(secrets_dir, artifacts_dir, monkeypatch):
    monkeypatch.setenv("RESTORE_LOAD", "plain")
    dump_into_secrets(secrets_dir, KINDS_SQL)
    assert restore_both_ways(secrets_dir) == "plain (RESTORE_LOAD=plain)"


def _before_footer(path, text: str) -> None:
    """`text` as lines just before pg_dump's footer (the file stays a whole dump)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    footer = max(
        i for i, line in enumerate(lines) if line.startswith("-- PostgreSQL database dump complete")
    )
    lines[footer - 1 : footer - 1] = [text]
    path.write_text("".join(lines), encoding="utf-8")


@pytest.mark.slow
def test_schema_not_reproduced_rolls_back_and_loads_in_the_runbooks_order(
    secrets_dir, artifacts_dir
):
    """A seed that creates an index itself: the rebuilt catalogue is not the schema's, so the fast
    load rolls back and the same files run again in the runbook's order, in one transaction."""
    dump_into_secrets(secrets_dir, KINDS_SQL)
    _before_footer(secrets_dir / LEGACY_SEED_FILE, "CREATE INDEX seed_own_idx ON app.ident (b);\n")
    said = restore_both_ways(secrets_dir)
    assert said == (
        "plain (the fast load was rolled back: the indexes and keys differ from the schema)"
    )
    (folder,) = evidence_folders(artifacts_dir)  # both sessions' logs are kept
    assert "failed RA001" in (folder / "legacy_psql_fast_rolled_back.log").read_text()
    assert "restore_assets_fastload" not in (folder / "legacy_psql.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("load", ["fast", "plain"])
def test_a_seed_row_breaking_a_key_fails_either_way_with_nothing_changed(
    load, secrets_dir, artifacts_dir, monkeypatch
):
    monkeypatch.setenv("RESTORE_LOAD", load)
    dump_into_secrets(secrets_dir, KINDS_SQL)
    seed = secrets_dir / LEGACY_SEED_FILE
    text = seed.read_text(encoding="utf-8")
    block = text.index("COPY app.child ")
    first_row = text.index("\n", block) + 1
    row = text[first_row : text.index("\n", first_row) + 1]
    seed.write_text(text[:first_row] + row + text[first_row:], encoding="utf-8")  # id twice
    before = database_fingerprint()
    result = materialize_legacy(allow_reset=True)
    assert not result.success
    (message,) = failure_messages(result)
    assert f"{LEGACY_SEED_FILE}:" in message and "unique violation (23505)" in message
    assert " (a row of app.child): ERROR" in message  # the COPY block psql's line falls in
    if load == "fast":  # psql's own file:line from the runbook's order, the key from the fast load
        assert "building child_pkey on app.child" in message
    assert database_fingerprint() == before


@pytest.mark.slow
@pytest.mark.parametrize("load", ["fast", "plain"])
def test_rows_match_dump_blocks_when_rows_do_not_arrive(
    load, secrets_dir, artifacts_dir, monkeypatch
):
    """A trigger of the schema's skips some seed rows: the restore commits, but the seed's
    blocking check fails, naming the table and both counts."""
    monkeypatch.setenv("RESTORE_LOAD", load)
    dump_into_secrets(
        secrets_dir,
        KINDS_SQL + "CREATE FUNCTION app.skip_odd() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF NEW.a % 2 = 1 THEN RETURN NULL; END IF; RETURN NEW; END $$;\n"
        "CREATE TRIGGER ident_skip BEFORE INSERT ON app.ident FOR EACH ROW "
        "EXECUTE FUNCTION app.skip_odd();\n",
    )
    result = materialize_legacy(allow_reset=True)
    assert not result.success
    assert check_results(result)["rows_match_dump"] is False
    (folder,) = evidence_folders(artifacts_dir)
    table = (folder / "rows_vs_dump_legacy.md").read_text()
    assert "| app.ident | 100 | 50 |" in table
    assert "| app.child | 5000 | 5000 |" in table
    said = check_said(result, "rows_match_dump")
    assert said == "rows missing: app.ident (dump 100, restored 50)"


def last_row(conn, script: str) -> tuple:
    """The row the last statement of `script` returned (psycopg gives one result per statement)."""
    cursor, row = conn.execute(script), None
    while True:
        if cursor.description:
            row = cursor.fetchone()
        if not cursor.nextset():
            return row


@pytest.mark.slow
@pytest.mark.parametrize(
    "tamper",
    [
        # a rebuilt index with other storage parameters than the schema's
        "UPDATE pg_temp.restore_assets_fastload SET ddl = replace(ddl, '(fillfactor=''70'')', "
        "'(fillfactor=''60'')')",
        # a comment, a CLUSTER mark and a replica identity not given back
        "DELETE FROM pg_temp.restore_assets_fastload WHERE step = 4",
        # a foreign key not rebuilt
        "DELETE FROM pg_temp.restore_assets_fastload WHERE step = 3",
    ],
    ids=["storage-parameters", "what-belongs-to-an-index", "foreign-key"],
)
def test_a_rebuild_that_differs_from_the_schema_raises(tamper, secrets_dir):
    """The fingerprint is the proof: whatever the rebuild leaves different, its script raises
    (and psql's one transaction rolls back)."""
    fast = FastLoad()
    db = legacy_target()
    with ScratchDatabase(db, "restore_fastload_tamper") as scratch:
        with db.connect(dbname=scratch.name) as conn:
            conn.execute(KINDS_SQL)
            conn.commit()  # the schema and its rows, as a restored database holds them
            assert last_row(conn, fast.defer_script().text) == (
                f"{fast.defer_token} fast: 8 indexes and keys deferred",
            )
            conn.execute(tamper)
            rebuild = fast.rebuild_script().text
            # Every tampered statement still runs: only the fingerprint can tell.
            with pytest.raises(psycopg.DatabaseError) as raised:
                conn.execute(rebuild)
            assert raised.value.sqlstate == "RA002"
            conn.rollback()


@pytest.mark.slow
def test_an_untouched_rebuild_passes_the_fingerprint(secrets_dir):
    fast = FastLoad()
    db = legacy_target()
    with ScratchDatabase(db, "restore_fastload_tamper") as scratch:
        with db.connect(dbname=scratch.name) as conn:
            conn.execute(KINDS_SQL)
            conn.commit()  # the schema and its rows, as a restored database holds them
            deferred = last_row(conn, fast.defer_script().text)
            assert deferred == (f"{fast.defer_token} fast: 8 indexes and keys deferred",)
            cursor, said = conn.execute(fast.rebuild_script().text), []  # raises on a difference
            while True:
                said += [row[0] for row in cursor.fetchall()] if cursor.description else []
                if not cursor.nextset():
                    break
            assert any(s.startswith(f"{fast.rebuild_token} fast: ") for s in said), said
            conn.rollback()


def check_said(result, check: str) -> str:
    (said,) = [
        e.asset_check_evaluation_data.description
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == check
    ]
    return said


@pytest.mark.slow
def test_rows_a_seed_statement_adds_are_named_not_refused(secrets_dir, artifacts_dir):
    """An INSERT in the seed adds a row no COPY block counted: the data arrived, and the check
    says which table holds more."""
    dump_into_secrets(secrets_dir, KINDS_SQL)
    _before_footer(secrets_dir / LEGACY_SEED_FILE, "INSERT INTO app.ident VALUES (1000, 'x');\n")
    result = materialize_legacy(allow_reset=True)
    assert result.success, failure_messages(result)
    assert check_said(result, "rows_match_dump") == (
        "all 5 tables hold their COPY blocks' rows (6201 rows); more than the COPY blocks (the "
        "seed's other statements): app.ident (dump 100, restored 101)"
    )


@pytest.mark.slow
def test_an_old_dump_naming_tables_without_their_schema_is_counted(secrets_dir, artifacts_dir):
    """pg_dump before 2018 wrote `SET search_path = public, pg_catalog;` and `COPY item (…)`:
    rows_match_dump finds each bare name as psql did, and the restore passes."""
    dump_into_secrets(secrets_dir, VIEW_ON_KEY_SQL.replace("CREATE VIEW", "-- CREATE VIEW"))
    seed = secrets_dir / LEGACY_SEED_FILE
    text = seed.read_text(encoding="utf-8")
    assert "COPY public.item " in text
    text = text.replace("COPY public.", "COPY ").replace(
        "SELECT pg_catalog.set_config('search_path', '', false);",
        "SET search_path = public, pg_catalog;",
    )
    seed.write_text(text, encoding="utf-8")
    result = materialize_legacy(allow_reset=True)
    assert result.success, failure_messages(result)
    assert check_results(result)["rows_match_dump"] is True


@pytest.mark.slow
def test_a_seed_statement_needing_a_deferred_key_loads_in_the_runbooks_order(
    secrets_dir, artifacts_dir
):
    """Never worse than psql: a seed's `INSERT … ON CONFLICT (id)` needs the unique index the fast
    load deferred (42P10 without it); the runbook's order runs and ends as raw psql does."""
    dump_into_secrets(secrets_dir, VIEW_ON_KEY_SQL.replace("CREATE VIEW", "-- CREATE VIEW"))
    upsert = "INSERT INTO public.item VALUES (1, 'again') ON CONFLICT (id) DO NOTHING;\n"
    _before_footer(secrets_dir / LEGACY_SEED_FILE, upsert)
    said = restore_both_ways(secrets_dir)
    assert said.startswith("plain (the fast load was rolled back: "), said
    assert "failed with the indexes and keys deferred (SQLSTATE 42P10)" in said
