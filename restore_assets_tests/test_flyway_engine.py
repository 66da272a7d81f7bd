"""The Flyway-compatible engine against a real PostgreSQL: history DDL and rows, baseline rules,
validate, repair, transactions, CONCURRENTLY, the lock."""

from __future__ import annotations

import itertools
import threading
import time

import psycopg
import pytest
from psycopg import sql

from restore_assets.flyway import Flyway, FlywayError, MigrationFailed, checksum
from restore_assets.flyway.conf import load_conf
from restore_assets.flyway.history import lock_key
from restore_assets.pg.database import Database, embedded_admin

_counter = itertools.count()


@pytest.fixture
def db(settings):
    """A brand-new database owned by `opendolphin` on the embedded server."""
    target = Database(settings.modernized, settings.pg)
    endpoint = target.endpoint()
    name = f"flyway_test_{next(_counter)}_{int(time.time() * 1000) % 100000}"
    with embedded_admin(endpoint) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER opendolphin").format(sql.Identifier(name)))
    info = target.conninfo(dbname=name)
    yield lambda: psycopg.connect(**info)
    with embedded_admin(endpoint) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def flyway(db, folder, **props) -> Flyway:
    overrides = {"flyway.locations": f"filesystem:{folder}"}
    overrides.update({f"flyway.{k}": str(v) for k, v in props.items()})
    return Flyway(load_conf(None, env={}, overrides=overrides), db, lock_wait_seconds=30)


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def rows(db, table='"public"."flyway_schema_history"'):
    with db() as conn:
        return conn.execute(
            "SELECT installed_rank, version, description, type, script, checksum, installed_by, "
            f"execution_time >= 0, success FROM {table} ORDER BY installed_rank"
        ).fetchall()


def run(db, statement):
    with db() as conn:
        conn.autocommit = True
        return (
            conn.execute(statement).fetchall()
            if statement.lstrip().upper().startswith("SELECT")
            else conn.execute(statement)
        )


def test_migrate_writes_exactly_flywayss_rows(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V0001__baseline_tag.sql", b"\xef\xbb\xbf-- tag\r\nSELECT 1;\r\n")
    write(sql_dir, "V0002__create_t.sql", "CREATE TABLE t (id int);\nCOMMENT ON TABLE t IS '表';\n")
    write(sql_dir, "sub/V2_1__add_col.sql", "ALTER TABLE t ADD COLUMN c text;")
    engine = flyway(db, sql_dir)
    result = engine.migrate()
    assert [r.version for r in result.applied] == ["0001", "0002", "2.1"]
    file_checksum = checksum((sql_dir / "V0002__create_t.sql").read_bytes())
    assert rows(db) == [
        (
            1,
            "0001",
            "baseline tag",
            "SQL",
            "V0001__baseline_tag.sql",
            checksum(b"-- tag\nSELECT 1;"),
            "opendolphin",
            True,
            True,
        ),
        (
            2,
            "0002",
            "create t",
            "SQL",
            "V0002__create_t.sql",
            file_checksum,
            "opendolphin",
            True,
            True,
        ),
        (
            3,
            "2.1",
            "add col",
            "SQL",
            "sub/V2_1__add_col.sql",
            checksum(b"ALTER TABLE t ADD COLUMN c text;"),
            "opendolphin",
            True,
            True,
        ),
    ]
    # A second migrate applies nothing and changes nothing.
    assert engine.migrate().applied == []
    assert len(rows(db)) == 3


def test_history_table_ddl_is_flywayss_as_the_catalog_shows_it(db, tmp_path):
    write(tmp_path / "sql", "V1__x.sql", "SELECT 1;")
    flyway(db, tmp_path / "sql", schemas="opendolphin", defaultSchema="opendolphin").migrate()
    with db() as conn:
        columns = conn.execute(
            "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'opendolphin' AND "
            "table_name = 'flyway_schema_history' ORDER BY ordinal_position"
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'opendolphin' "
            "AND tablename = 'flyway_schema_history' ORDER BY indexname"
        ).fetchall()
        constraints = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'opendolphin.flyway_schema_history'::regclass AND contype <> 'n'"
        ).fetchall()
    assert columns == [
        ("installed_rank", "integer", None, "NO", None),
        ("version", "character varying", 50, "YES", None),
        ("description", "character varying", 200, "NO", None),
        ("type", "character varying", 20, "NO", None),
        ("script", "character varying", 1000, "NO", None),
        ("checksum", "integer", None, "YES", None),
        ("installed_by", "character varying", 100, "NO", None),
        ("installed_on", "timestamp without time zone", None, "NO", "now()"),
        ("execution_time", "integer", None, "NO", None),
        ("success", "boolean", None, "NO", None),
    ]
    assert indexes == [
        (
            "CREATE UNIQUE INDEX flyway_schema_history_pk ON opendolphin.flyway_schema_history "
            "USING btree (installed_rank)",
        ),
        (
            "CREATE INDEX flyway_schema_history_s_idx ON opendolphin.flyway_schema_history "
            "USING btree (success)",
        ),
    ]
    assert constraints == [("flyway_schema_history_pk", "PRIMARY KEY (installed_rank)")]
    # Flyway had to create the schema: the marker row, rank 0.
    assert rows(db, '"opendolphin"."flyway_schema_history"')[0] == (
        0,
        None,
        "<< Flyway Schema Creation >>",
        "SCHEMA",
        '"opendolphin"',
        None,
        "opendolphin",
        True,
        True,
    )


def test_baseline_on_migrate_only_for_a_non_empty_schema(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__one.sql", "CREATE TABLE one (id int);")
    write(sql_dir, "V2__two.sql", "CREATE TABLE two (id int);")
    # Empty public schema: no baseline, every migration applies.
    flyway(db, sql_dir, baselineOnMigrate="true").migrate()
    assert [r[1] for r in rows(db)] == ["1", "2"]


def test_baseline_on_migrate_for_a_non_empty_schema(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__one.sql", "CREATE TABLE one (id int);")
    write(sql_dir, "V2__two.sql", "CREATE TABLE two (id int);")
    run(db, "CREATE TABLE existing (id int)")
    with pytest.raises(FlywayError, match="non-empty schema"):
        flyway(db, sql_dir).migrate()  # baselineOnMigrate=false refuses
    flyway(db, sql_dir, baselineOnMigrate="true", baselineVersion="1").migrate()
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows(db)] == [
        (1, "1", "<< Flyway Baseline >>", "BASELINE", "<< Flyway Baseline >>", None),
        (2, "2", "two", "SQL", "V2__two.sql", checksum(b"CREATE TABLE two (id int);")),
    ]


def test_baseline_command_rules(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__one.sql", "SELECT 1;")
    engine = flyway(db, sql_dir, baselineVersion="0", baselineDescription="Legacy baseline")
    assert engine.baseline() is True
    assert engine.baseline() is False  # the same baseline again: a no-op success
    other = flyway(db, sql_dir, baselineVersion="5")
    with pytest.raises(FlywayError, match="already been baselined with"):
        other.baseline()
    engine.migrate()
    # DbBaseline compares only the baseline row: after migrations the same one is still a no-op.
    assert engine.baseline() is False
    with pytest.raises(FlywayError, match="already been baselined with"):
        other.baseline()
    assert [(r[1], r[2], r[3]) for r in rows(db)] == [
        ("0", "Legacy baseline", "BASELINE"),
        ("1", "one", "SQL"),
    ]


def test_validate_catches_edited_missing_and_out_of_order_files(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__one.sql", "SELECT 1;")
    write(sql_dir, "V3__three.sql", "SELECT 3;")
    engine = flyway(db, sql_dir)
    engine.migrate()
    assert engine.validate() == []
    write(sql_dir, "V1__one.sql", "SELECT 11;")  # edited after it was applied
    write(sql_dir, "V2__two.sql", "SELECT 2;")  # added below the highest applied version
    (sql_dir / "V3__three.sql").unlink()
    write(sql_dir, "V4__four.sql", "SELECT 4;")  # keeps 3 below the highest file: missing
    errors = "\n".join(engine.validate())
    assert "checksum mismatch for migration version 1" in errors
    assert "not resolved locally: 3" in errors
    assert "not applied to database: 2" in errors and "outOfOrder" in errors
    with pytest.raises(FlywayError, match="Validate failed"):
        engine.migrate()


def test_pending_is_only_an_error_for_the_validate_command(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__one.sql", "SELECT 1;")
    engine = flyway(db, sql_dir)
    engine.migrate()
    write(sql_dir, "V2__two.sql", "SELECT 2;")
    (error,) = engine.validate()
    assert error.startswith("Detected resolved migration not applied to database: 2.\n")
    assert engine.validate(pending_is_error=False) == []


def test_out_of_order_applies_when_allowed(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__one.sql", "SELECT 1;")
    write(sql_dir, "V3__three.sql", "SELECT 3;")
    flyway(db, sql_dir).migrate()
    write(sql_dir, "V2__two.sql", "SELECT 2;")
    engine = flyway(db, sql_dir, outOfOrder="true")
    assert [m.version for m in engine.migrate().applied] == ["2"]
    assert "Out of Order" in {r.state for r in engine.info()}


def test_info_rows_as_flyway_shows_them(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__one.sql", "CREATE TABLE one (id int);")
    write(sql_dir, "V2__two.sql", "SELECT 2;")
    write(sql_dir, "R__view.sql", "CREATE OR REPLACE VIEW v AS SELECT 1 AS x;")
    engine = flyway(db, sql_dir, schemas="opendolphin", baselineVersion="1")
    engine.baseline()
    info = [(r.category, r.version, r.description, r.type, r.state) for r in engine.info()]
    assert info == [
        # as real Flyway 10.17.3 lists them (test_flyway_vs_real.test_schema_created_by_flyway)
        ("Versioned", "1", "one", "SQL", "Ignored (Baseline)"),
        ("", "1", "<< Flyway Baseline >>", "BASELINE", "Baseline"),
        ("", None, "<< Flyway Schema Creation >>", "SCHEMA", "Success"),
        ("Versioned", "2", "two", "SQL", "Pending"),
        ("Repeatable", None, "view", "SQL", "Pending"),
    ]


def test_failing_migration_is_rolled_back_without_a_row_and_names_the_line(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__one.sql", "CREATE TABLE one (id int);")
    write(
        sql_dir,
        "V2__broken.sql",
        "CREATE TABLE half_done (id int);\n\nINSERT INTO half_done\n  VALUES ('not a number');\n",
    )
    engine = flyway(db, sql_dir)
    with pytest.raises(MigrationFailed) as err:
        engine.migrate()
    assert err.value.script == "V2__broken.sql" and err.value.line == 4
    assert "V2__broken.sql failed at line 4" in str(err.value)
    assert [r[1] for r in rows(db)] == ["1"]
    assert run(db, "SELECT to_regclass('half_done')") == [(None,)]


def test_concurrently_runs_outside_a_transaction_and_mixed_is_refused(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__table.sql", "CREATE TABLE big (id int, name text);")
    write(sql_dir, "V2__index.sql", "CREATE INDEX CONCURRENTLY big_name ON big (name);")
    engine = flyway(db, sql_dir)
    engine.migrate()
    assert run(db, "SELECT indexname FROM pg_indexes WHERE indexname = 'big_name'") == [
        ("big_name",)
    ]
    write(
        sql_dir,
        "V3__mixed.sql",
        "CREATE TABLE m (id int);\nCREATE INDEX CONCURRENTLY mi ON m (id);",
    )
    with pytest.raises(FlywayError, match="mixed is false"):
        engine.migrate()
    flyway(db, sql_dir, mixed="true").migrate()
    assert [r[1] for r in rows(db)] == ["1", "2", "3"]


def test_failed_non_transactional_migration_leaves_a_failed_row_then_repair(db, tmp_path):
    """Without Flyway 10's transactional lock (the default keeps no row: test_flyway_vs_real)."""
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__table.sql", "CREATE TABLE big (id int);")
    write(sql_dir, "V2__index.sql", "CREATE INDEX CONCURRENTLY big_x ON big (no_such_column);")
    engine = flyway(db, sql_dir, **{"postgresql.transactional.lock": "false"})
    with pytest.raises(MigrationFailed):
        engine.migrate()
    assert [(r[1], r[8]) for r in rows(db)] == [("1", True), ("2", False)]
    with pytest.raises(FlywayError, match="Detected failed migration to version 2"):
        engine.migrate()
    write(sql_dir, "V2__index.sql", "CREATE INDEX CONCURRENTLY big_id ON big (id);")
    assert engine.repair() == {"removed": ["2"], "deleted": [], "realigned": []}
    engine.migrate()
    assert [(r[1], r[8]) for r in rows(db)] == [("1", True), ("2", True)]


def test_repair_realigns_checksum_and_description(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__one.sql", "SELECT 1;")
    engine = flyway(db, sql_dir)
    engine.migrate()
    (sql_dir / "V1__one.sql").unlink()
    write(sql_dir, "V1__first.sql", "SELECT  1 ;")
    assert len(engine.validate()) == 2
    assert engine.repair() == {"removed": [], "deleted": [], "realigned": ["1"]}
    assert engine.validate() == []
    assert rows(db)[0][2] == "first"


def test_search_path_puts_the_default_schema_first(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(
        sql_dir,
        "V1__where.sql",
        "CREATE TABLE where_am_i AS SELECT current_setting('search_path') AS p;",
    )
    flyway(db, sql_dir, schemas="opendolphin").migrate()
    # exactly as Flyway sets it (test_flyway_vs_real: ...default_schema_and_search_path)
    assert run(db, "SELECT p FROM opendolphin.where_am_i") == [('"opendolphin","$user", public',)]


def test_placeholders_in_migrations(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__p.sql", "CREATE TABLE ${name} (who text DEFAULT '${flyway:user}');")
    engine = flyway(db, sql_dir, **{"placeholders.name": "placed"})
    engine.migrate()
    assert run(
        db, "SELECT column_default FROM information_schema.columns WHERE table_name = 'placed'"
    ) == [("'opendolphin'::text",)]
    # The checksum is of the raw text, before replacement.
    assert rows(db)[0][5] == checksum((sql_dir / "V1__p.sql").read_bytes())


def test_copy_from_stdin_sends_the_data_that_follows_it(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(
        sql_dir,
        "V1__copy.sql",
        "CREATE TABLE c (id int, note text);\n"
        "COPY c (id, note) FROM stdin;\n"
        "1\tsemi; colon\n"
        "2\tit's -- not a comment\n"
        "\\.\n"
        "INSERT INTO c VALUES (3, 'after');\n",
    )
    flyway(db, sql_dir).migrate()
    assert run(db, "SELECT id, note FROM c ORDER BY id") == [
        (1, "semi; colon"),
        (2, "it's -- not a comment"),
        (3, "after"),
    ]


def test_repeatable_migrations_run_after_versioned_and_again_when_changed(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__t.sql", "CREATE TABLE t (id int);")
    write(sql_dir, "R__view.sql", "CREATE OR REPLACE VIEW v AS SELECT id FROM t;")
    engine = flyway(db, sql_dir)
    engine.migrate()
    assert engine.migrate().applied == []
    write(sql_dir, "R__view.sql", "CREATE OR REPLACE VIEW v AS SELECT id, 1 AS one FROM t;")
    assert [m.description for m in engine.migrate().applied] == ["view"]
    assert [(r[1], r[3], r[4]) for r in rows(db)] == [
        ("1", "SQL", "V1__t.sql"),
        (None, "SQL", "R__view.sql"),
        (None, "SQL", "R__view.sql"),
    ]


def test_lock_held_elsewhere_makes_migrate_wait(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__one.sql", "SELECT 1;")
    key = lock_key("public", "flyway_schema_history")
    holder = db()
    holder.autocommit = True
    holder.execute("SELECT pg_advisory_lock(%s)", (key,))
    messages: list[str] = []
    engine = flyway(db, sql_dir)
    engine.log = messages.append
    done = threading.Event()
    thread = threading.Thread(target=lambda: (engine.migrate(), done.set()))
    thread.start()
    time.sleep(1.0)
    assert not done.is_set()
    assert any("waiting for the Flyway lock" in m for m in messages)
    holder.execute("SELECT pg_advisory_unlock(%s)", (key,))
    holder.close()
    thread.join(30)
    assert done.is_set()
    assert [r[1] for r in rows(db)] == ["1"]


def test_two_concurrent_migrates_apply_each_version_once(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__slow.sql", "SELECT pg_sleep(0.5);")
    write(sql_dir, "V2__t.sql", "CREATE TABLE t (id int);")
    results, errors = [], []

    def migrate():
        try:
            results.append(len(flyway(db, sql_dir).migrate().applied))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(results) == [0, 2]
    assert [r[1] for r in rows(db)] == ["1", "2"]


def test_future_versions_are_ignored_by_validate_and_shown_in_info(db, tmp_path):
    sql_dir = tmp_path / "sql"
    write(sql_dir, "V1__one.sql", "SELECT 1;")
    write(sql_dir, "V2__two.sql", "SELECT 2;")
    engine = flyway(db, sql_dir)
    engine.migrate()
    (sql_dir / "V2__two.sql").unlink()  # a newer release applied 2; this checkout stops at 1
    assert engine.validate(pending_is_error=False) == []
    assert [(r.version, r.state) for r in engine.info()] == [("1", "Success"), ("2", "Future")]
    assert engine.migrate().applied == []
