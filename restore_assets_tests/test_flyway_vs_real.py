"""Differential tests: each Flyway edge applied by real Flyway 10.17.3 (fetched with Maven, one
JVM for the session) and by the engine, on two databases of the password cluster; history rows,
schemas and outcomes must agree. docs/flyway-compat.md lists each edge with the test that
proves it."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from restore_assets.flyway import checksum
from restore_assets.pg.clients import bundled_bin_dir
from restore_assets.settings import DEMO_FLYWAY_CONF, MODERN_SCHEMA_FILE
from restore_assets_tests.conftest import EXTERNAL_PASSWORD
from restore_assets_tests.flyway_twin import Twin
from restore_assets_tests.real_flyway import OracleUnavailable, RealFlyway

pytestmark = pytest.mark.real_flyway


@pytest.fixture(scope="session")
def real_flyway():
    try:
        oracle = RealFlyway()
    except OracleUnavailable as exc:
        pytest.fail(f"real Flyway is needed for the differential tests: {exc}")
    yield oracle
    oracle.close()


@pytest.fixture
def twin(real_flyway, password_cluster, tmp_path, request):
    label = request.node.name.lower().replace("[", "_").replace("]", "").replace("-", "_")
    return Twin(real_flyway, password_cluster, tmp_path / "sql", label[:30])


def write(folder, name, data: bytes | str):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_line_endings(twin, newline):
    """A `--` comment ends at \\r as well as \\n (Parser.readSingleLineComment), so a CR-only
    file runs every statement."""
    lines = [
        "-- first comment",
        "CREATE TABLE t1 (id int); -- trailing comment",
        "-- another",
        "CREATE TABLE t2 (id int);",
        "INSERT INTO t1 VALUES (1);",
        "/* block",
        "   comment */ CREATE TABLE t3 (note text DEFAULT 'a;b');",
    ]
    write(twin.folder, "V1__line_endings.sql", newline.join(lines) + newline)
    write(twin.folder, "V2__bom.sql", "\ufeff-- bom" + newline + "CREATE TABLE t4 (id int);")
    twin.step("migrate")
    rows = twin.assert_same()
    assert [r[1] for r in rows] == ["1", "2"]
    with twin.connect(twin.ours) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename ~ '^t[0-9]'")
        assert tables.fetchone()[0] == 4
    twin.real_accepts_ours()


def test_which_files_are_migrations(twin):
    """ResourceNameParser: prefix `V`/`R` (case-sensitive), suffix `.sql` (any case), version
    before the first `__` (none: empty description), MigrationVersion's numeric parts; other
    names are not migrations."""
    names = [
        "V1__plain.sql",
        "V2__upper_suffix.SQL",
        "V3.sql",
        "V4__.sql",
        "V5_1__under_score.sql",
        "V006__leading_zeros.sql",
        "V7__two__separators.sql",
        "V8__日本語の説明.sql",
        "V9.1.sql",
        "sub/dir/V10__nested.Sql",
        "R__repeatable.sQL",
        "R__.sql",
        # not migrations, for Flyway as for the engine
        "v11__lower_prefix.sql",
        "V12__backup.sql.bak",
        "Vx__bad_version.sql",
        "V13 __space.sql",
        "V1.2.__trailing_dot.sql",
        "README.md",
        "R1__versioned_repeatable.sql",
    ]
    for n, name in enumerate(names):
        write(twin.folder, name, f"CREATE TABLE m{n} (id int);\n")
    twin.step("migrate")
    twin.assert_same()
    assert twin.info()[1] == twin.info()[0]
    twin.real_accepts_ours()


def test_out_of_order_file_below_applied_versions(twin):
    """A file that sorts below the applied versions: validate and migrate fail alike (Flyway's
    default ignoreMigrationPatterns `*:future` makes it an error); with outOfOrder it is applied
    and info marks it Out of Order."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE o1 (id int);")
    write(twin.folder, "V3__three.SQL", "CREATE TABLE o3 (id int);")
    twin.step("migrate")
    write(twin.folder, "V2.sql", "CREATE TABLE o2 (id int);")
    twin.step("validate")
    twin.step("migrate")
    assert twin.info()[1] == twin.info()[0]
    twin.step("migrate", outOfOrder="true")
    twin.assert_same()
    real, ours = twin.info()
    assert ours == real, f"\nflyway {real}\nengine {ours}"
    assert ("Versioned", "2", "", "SQL", "Out of Order") in ours
    twin.real_accepts_ours()


def test_info_order_and_states(twin):
    """MigrationInfoImpl.compareTo and the states: applied rows in rank order (Missing,
    Outdated among them), then unapplied ones by version (Ignored, Pending), repeatables last."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE i1 (id int);")
    write(twin.folder, "V3__three.sql", "CREATE TABLE i3 (id int);")
    write(twin.folder, "V4__four.sql", "CREATE TABLE i4 (id int);")
    write(twin.folder, "R__view.sql", "CREATE OR REPLACE VIEW v AS SELECT 1 AS one;")
    twin.step("migrate")
    write(twin.folder, "R__view.sql", "CREATE OR REPLACE VIEW v AS SELECT 3 AS one;")
    write(twin.folder, "R__gone.sql", "CREATE OR REPLACE VIEW g AS SELECT 3 AS one;")
    twin.step("migrate")
    (twin.folder / "R__gone.sql").unlink()
    (twin.folder / "V3__three.sql").unlink()
    write(twin.folder, "V2__two.sql", "CREATE TABLE i2 (id int);")
    write(twin.folder, "V10__ten.sql", "CREATE TABLE i10 (id int);")
    write(twin.folder, "R__view.sql", "CREATE OR REPLACE VIEW v AS SELECT 2 AS one;")
    real, ours = twin.info()
    assert ours == real, f"\nflyway {real}\nengine {ours}"
    assert {row[4] for row in real} >= {"Missing", "Superseded", "Outdated", "Ignored", "Pending"}
    twin.step("validate")


def test_baseline_then_migrate_info(twin):
    """DbBaseline: a second baseline at the same version is a no-op; files at or below it are
    Below Baseline and never applied; info lists them as Flyway does."""
    for n in (1, 2, 3):
        write(twin.folder, f"V{n}__v{n}.sql", f"CREATE TABLE b{n} (id int);")
    twin.step("baseline", baselineVersion="2")
    twin.step("baseline", baselineVersion="2")
    twin.step("baseline", baselineVersion="3")
    twin.step("migrate", baselineVersion="2")
    twin.assert_same()
    real, ours = twin.info()
    assert ours == real, f"\nflyway {real}\nengine {ours}"
    twin.step("baseline", baselineVersion="2")
    twin.real_accepts_ours()


@pytest.mark.parametrize("command", ["baseline", "migrate"])
def test_schema_created_by_flyway(twin, command):
    """DbSchemas.create: `baseline` into a missing schema writes BASELINE rank 1 then SCHEMA
    rank 2; `migrate` writes SCHEMA rank 0; a second baseline is a no-op."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE one (id int);")
    write(twin.folder, "V2__two.sql", "CREATE TABLE two (id int);")
    write(twin.folder, "R__view.sql", "CREATE OR REPLACE VIEW v AS SELECT 1 AS x;")
    props = dict(schemas="app_schema,extra", baselineVersion="1")
    twin.step(command, **props)
    real, ours = twin.info(**props)
    assert ours == real, f"\nflyway {real}\nengine {ours}"
    twin.step("baseline", **props)
    twin.step("migrate", **props)
    rows = twin.assert_same("app_schema")
    assert [r[3] for r in rows][:2] == (
        ["BASELINE", "SCHEMA"] if command == "baseline" else ["SCHEMA", "SQL"]
    )
    twin.real_accepts_ours(**props)


def test_baseline_refusals(twin):
    """DbBaseline's error cases: an existing empty history table, and version 0 after the
    schema marker."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE one (id int);")
    with twin.connect(twin.real) as a, twin.connect(twin.ours) as b:
        for conn in (a, b):
            conn.execute("CREATE TABLE flyway_schema_history (installed_rank int)")
    twin.step("baseline")
    props = dict(schemas="fresh", baselineVersion="0")
    twin.step("migrate", **props)
    twin.step("baseline", **props)
    twin.assert_same("fresh")


def test_long_descriptions_are_abbreviated(twin):
    """AbbreviationUtils: a description over 200 characters is stored as 197 + `...`, and
    validate compares it abbreviated. (A file name has at most 255 bytes.)"""
    write(twin.folder, f"V1__{'_'.join(['word'] * 48)}.sql", "CREATE TABLE l1 (id int);")
    write(twin.folder, f"V2__{'x' * 201}.sql", "CREATE TABLE l2 (id int);")
    write(twin.folder, f"V3__{'y' * 200}.sql", "CREATE TABLE l3 (id int);")
    twin.step("migrate")
    rows = twin.assert_same()
    assert [r[2][-4:] for r in rows] == ["o...", "x...", "yyyy"]
    twin.step("validate")
    real, ours = twin.info()
    assert ours == real
    twin.real_accepts_ours()


def test_long_repeatable_description_is_refused(twin):
    """Flyway stores a long repeatable description abbreviated but matches runs by the full
    one: after its own migrate, its validate fails. The engine refuses such a file instead."""
    write(twin.folder, f"R__{'z' * 201}.sql", "CREATE OR REPLACE VIEW lv AS SELECT 1 AS x;")
    assert twin.run_real("migrate").ok
    real = twin.run_real("validate")
    assert real.valid is False and "not applied to database" in real.error
    ours = twin.run_ours("migrate")
    assert not ours.ok and "longer than 200 characters" in ours.error
    assert twin.history(twin.ours) == []


def test_parser_gaps(twin):
    """PostgreSQLParser/Parser: `;` inside parentheses does not end a statement (multi-action
    CREATE RULE), BEGIN ATOMIC bodies, dollar quotes, COPY ... FROM stdin data, and U+FEFF."""
    write(
        twin.folder,
        "V1__parser.sql",
        "\ufeffCREATE TABLE src (id int, label text);\n"
        "CREATE TABLE log (id int);\n"
        "CREATE RULE r AS ON INSERT TO src DO ALSO (INSERT INTO log VALUES (NEW.id);"
        " INSERT INTO log VALUES (NEW.id + 100));\n"
        "CREATE FUNCTION sign_label(x int) RETURNS text LANGUAGE SQL\n"
        "BEGIN ATOMIC\n"
        "  SELECT 'pos' WHERE x > 0;\n"
        "  SELECT 'neg';\n"
        "END;\n"
        "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;\n"
        "COPY src (id, label) FROM stdin;\n"
        "1\tone\n"
        "2\t二\n"
        "\\.\n"
        "INSERT INTO src VALUES (3, 'th\ufeffree');\n"
        "COMMENT ON TABLE src IS 'a\ufeffb \ufeff\ufeff\ufeff';\n",
    )
    twin.step("migrate")
    twin.assert_same()
    with twin.connect(twin.real) as real, twin.connect(twin.ours) as ours:
        for query in (
            "SELECT id, label FROM src ORDER BY id",
            "SELECT id FROM log ORDER BY id",
            "SELECT sign_label(-4), sign_label(0), sign_label(9), f()",
        ):
            assert ours.execute(query).fetchall() == real.execute(query).fetchall()
        # the rule ran both actions for the INSERT (COPY does not fire rules)
        assert ours.execute("SELECT count(*) FROM log").fetchone()[0] == 2
    twin.real_accepts_ours()


def test_begin_atomic_with_case_fails_alike(twin):
    """PostgreSQLParser.adjustBlockDepth ends a BEGIN ATOMIC body at its first END, a CASE's
    included: Flyway sends the cut statement and the server refuses it. The engine splits it
    the same way, so it fails where real Flyway fails, and records nothing."""
    write(
        twin.folder,
        "V1__atomic_case.sql",
        "CREATE FUNCTION sign_label(x int) RETURNS text LANGUAGE SQL\n"
        "BEGIN ATOMIC\n"
        "  SELECT CASE WHEN x > 0 THEN 'pos' ELSE 'other' END;\n"
        "END;\n",
    )
    real, ours = twin.step("migrate")
    assert "syntax error" in real.error and "syntax error" in ours.error
    twin.assert_same()


def test_repair_marks_removed_files_deleted_and_migrate_proceeds(twin):
    """DbRepair: failed rows are removed, applied migrations whose file is gone get a DELETE row
    (JdbcTableSchemaHistory.delete), and later runs treat them as gone, not missing
    (MigrationInfoServiceImpl.markAsDeleted)."""
    for n in (1, 2, 3):
        write(twin.folder, f"V{n}__v{n}.sql", f"CREATE TABLE d{n} (id int);")
    write(twin.folder, "R__keep.sql", "CREATE OR REPLACE VIEW keep AS SELECT 1 AS x;")
    write(twin.folder, "R__gone.sql", "CREATE OR REPLACE VIEW gone AS SELECT 1 AS x;")
    twin.step("migrate")
    (twin.folder / "V2__v2.sql").unlink()
    (twin.folder / "R__gone.sql").unlink()
    twin.step("validate")
    twin.step("migrate")
    twin.step("repair")
    rows = twin.assert_same()
    assert [r[3] for r in rows].count("DELETE") == 2
    real, ours = twin.info()
    assert ours == real, f"\nflyway {real}\nengine {ours}"
    twin.step("validate")
    write(twin.folder, "V4__v4.sql", "CREATE TABLE d4 (id int);")
    twin.step("migrate")
    twin.assert_same()
    real, ours = twin.info()
    assert ours == real, f"\nflyway {real}\nengine {ours}"
    twin.real_accepts_ours()


@pytest.mark.parametrize("transactional_lock", ["true", "false"])
def test_failed_non_transactional_migration(twin, transactional_lock):
    """A failing CREATE INDEX CONCURRENTLY: with Flyway 10's default transactional lock the
    failed row is rolled back with the lock's transaction (no row, the next migrate retries);
    without it a success=false row stays until repair (DbMigrate.applyMigrations)."""
    props = {"postgresql.transactional.lock": transactional_lock}
    write(twin.folder, "V1__table.sql", "CREATE TABLE c1 (id int);")
    write(twin.folder, "V2__index.sql", "CREATE INDEX CONCURRENTLY c_idx ON nowhere (id);")
    twin.step("migrate", **props)
    rows = twin.assert_same()
    assert [r[6] for r in rows] == ([True] if transactional_lock == "true" else [True, False])
    twin.step("migrate", **props)
    twin.step("validate", **props)
    # Real Flyway with its transactional lock would wait forever on a CONCURRENTLY that works
    # (the index waits for Flyway's own open lock transaction), so that case fixes it without.
    fixed = "CONCURRENTLY " if transactional_lock == "false" else ""
    write(twin.folder, "V2__index.sql", f"CREATE INDEX {fixed}c_idx ON c1 (id);")
    twin.step("repair", **props)
    twin.step("migrate", **props)
    twin.assert_same()
    real, ours = twin.info(**props)
    assert ours == real, f"\nflyway {real}\nengine {ours}"
    twin.real_accepts_ours(**props)


@pytest.mark.parametrize(
    "setting, value",
    [
        ("target", "next"),
        ("sqlMigrationPrefix", "M"),
        ("sqlMigrationSeparator", "--"),
        ("sqlMigrationSuffixes", ".psql"),
        ("repeatableSqlMigrationPrefix", "X"),
        ("placeholderPrefix", "#{"),
    ],
)
def test_unsupported_settings_are_refused_by_name(twin, setting, value):
    """Settings that change what real Flyway applies: the engine refuses them, naming the
    setting, and writes nothing (ignoring them would apply something else than Flyway)."""
    for name in ("V1__one.sql", "V2__two.sql", "M3__three.sql", "V4--four.sql", "V5__five.psql"):
        write(twin.folder, name, f"CREATE TABLE t_{name[1]} (id int);")
    write(twin.folder, "X__x.sql", "CREATE TABLE t_x (id int);")
    write(twin.folder, "V6__six.sql", "CREATE TABLE t_6 (note text DEFAULT '#{p}');")
    real = twin.run_real("migrate", **{setting: value})
    ours = twin.run_ours("migrate", **{setting: value})
    assert not ours.ok and f"flyway.{setting}" in ours.error
    assert twin.history(twin.ours) == []
    assert twin.run_ours("migrate").ok
    assert not real.ok or twin.history(twin.ours) != twin.history(twin.real)


def test_settings_at_their_defaults_and_unknown_ones(twin):
    """Explicit default values change nothing; a setting neither knows is refused by both."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE one (id int);")
    defaults = dict(target="latest", sqlMigrationPrefix="V", ignoreMigrationPatterns="*:future")
    twin.step("migrate", noSuchSetting="1")
    twin.step("migrate", **defaults)
    twin.assert_same()


def test_sql_callbacks_and_script_conf_files(twin):
    """A SQL callback file (Event ids, e.g. afterMigrate.sql) is run by real Flyway: the engine
    refuses it unless skipDefaultCallbacks, which both honour. A `<script>.conf` is refused."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE one (id int);")
    write(twin.folder, "afterMigrate.sql", "CREATE TABLE IF NOT EXISTS called_back (id int);")
    assert twin.run_real("migrate", db=twin.ours).ok  # Flyway runs it...
    with twin.connect(twin.ours) as conn:
        assert conn.execute("SELECT to_regclass('called_back')").fetchone()[0] is not None
        conn.execute("DROP TABLE called_back; DROP TABLE one; DROP TABLE flyway_schema_history")
    ours = twin.run_ours("migrate")  # ... so the engine refuses it
    assert not ours.ok and "afterMigrate.sql" in ours.error and "callback" in ours.error
    twin.step("migrate", skipDefaultCallbacks="true")
    twin.assert_same()
    write(twin.folder, "V2__two.sql", "CREATE TABLE two (id int);")
    write(twin.folder, "V2__two.sql.conf", "executeInTransaction=false\n")
    ours = twin.run_ours("migrate", skipDefaultCallbacks="true")
    assert not ours.ok and "V2__two.sql.conf" in ours.error


def test_placeholders_and_repeatable_checksums(twin):
    """PlaceholderReplacingReader: `${name}` case-insensitive, the built-ins (ParsingContext),
    `$${x}` left alone; a repeatable's checksum is taken after replacement, so changing a
    placeholder value re-runs it, while a versioned one keeps its raw checksum."""
    write(
        twin.folder,
        "V1__placeholders.sql",
        "CREATE TABLE p (k text, v text);\n"
        "INSERT INTO p VALUES ('app', '${App_Name}'), ('schema', '${flyway:defaultSchema}'),"
        " ('user', '${flyway:user}'), ('db_is_current', ('${flyway:database}' ="
        " current_database())::text), ('table', '${flyway:table}'),"
        " ('file', '${flyway:filename}'), ('env', '${flyway:environment}'),"
        " ('dollars', '$${x}'), ('empty', '${empty}');\n",
    )
    write(twin.folder, "R__view.sql", "CREATE OR REPLACE VIEW pv AS SELECT '${app_name}' AS app;")
    props = {"placeholders.app_name": "dolphin", "placeholders.empty": ""}
    twin.step("migrate", **props)
    twin.assert_same()
    with twin.connect(twin.real) as real, twin.connect(twin.ours) as ours:
        query = "SELECT k, v FROM p ORDER BY k"
        assert ours.execute(query).fetchall() == real.execute(query).fetchall()
        assert ("dollars", "$${x}") in ours.execute(query).fetchall()
    twin.step("validate", **props)
    props["placeholders.app_name"] = "orca"
    real, ours = twin.info(**props)
    assert ours == real and ours[-1][-1] == "Pending"
    twin.step("migrate", **props)
    rows = twin.assert_same()
    assert [r[3] for r in rows] == ["SQL", "SQL", "SQL"]
    twin.real_accepts_ours(**props)
    write(twin.folder, "V2__unknown.sql", "SELECT '${nobody}';")
    twin.step("migrate", **props)
    twin.assert_same()


def test_repair_realigns_a_repeatable_recorded_without_replacement(twin):
    """DbRepair: a repeatable row holding the checksum without placeholder replacement (as an
    older tool may have written it) is realigned to the replaced one; both agree after."""
    write(twin.folder, "R__view.sql", "CREATE OR REPLACE VIEW pv AS SELECT '${app}' AS app;")
    props = {"placeholders.app": "dolphin"}
    twin.step("migrate", **props)
    raw = checksum((twin.folder / "R__view.sql").read_bytes())
    for db in (twin.real, twin.ours):
        with twin.connect(db) as conn:
            conn.execute("UPDATE flyway_schema_history SET checksum = %s", (raw,))
    real, ours = twin.info(**props)
    assert ours == real and real[0][-1] == "Success"  # the raw checksum still matches
    twin.step("repair", **props)
    rows = twin.assert_same()
    assert rows[0][5] != raw
    twin.real_accepts_ours(**props)


@pytest.mark.parametrize(
    "existing",
    [
        "CREATE TABLE app.t (id int)",
        "CREATE VIEW app.v AS SELECT 1 AS x",
        "CREATE SEQUENCE app.s",
        "CREATE TYPE app.mood AS ENUM ('ok')",
        "CREATE DOMAIN app.posint AS int CHECK (VALUE > 0)",
        "CREATE FUNCTION app.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TYPE app.pair AS (a int, b int)",
        "CREATE MATERIALIZED VIEW app.mv AS SELECT 1 AS x",
        "CREATE TABLE app.parted (id int) PARTITION BY RANGE (id)",
    ],
    ids=lambda sql_text: sql_text.split(" app.")[0].removeprefix("CREATE ").lower(),
)
def test_empty_schema_for_baseline_on_migrate(twin, existing):
    """PostgreSQLSchema.doEmpty decides whether baselineOnMigrate baselines: tables, views,
    sequences, enums, domains, functions count; composite types, materialized views and
    partitioned tables alone do not."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE app.one (id int);")
    write(twin.folder, "V2__two.sql", "CREATE TABLE app.two (id int);")
    for db in (twin.real, twin.ours):
        with twin.connect(db) as conn:
            conn.execute("CREATE SCHEMA app")
            conn.execute(existing)
    props = dict(schemas="app", baselineOnMigrate="true", baselineVersion="1")
    twin.step("migrate", **props)
    twin.assert_same("app")
    twin.real_accepts_ours(**props)


def test_set_role_inside_a_migration(twin):
    """A migration that runs SET ROLE: Flyway writes its history row on its own connection and
    resets the role before the next migration (PostgreSQLConnection.doRestoreOriginalState), so
    the row is written as the connecting user and the next migration runs as that user."""
    with twin.cluster.admin() as admin:
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'fw_other'").fetchone():
            admin.execute("CREATE ROLE fw_other NOLOGIN")
        admin.execute("GRANT fw_other TO opendolphin")
    for db in (twin.real, twin.ours):
        with twin.connect(db) as conn:
            conn.execute("GRANT CREATE ON SCHEMA public TO fw_other")
    write(twin.folder, "V1__as_other.sql", "SET ROLE fw_other;\nCREATE TABLE by_other (id int);")
    write(twin.folder, "V2__as_owner.sql", "CREATE TABLE by_owner (id int);")
    write(
        twin.folder,
        "V3__index.sql",
        "SET ROLE fw_other;\nCREATE INDEX CONCURRENTLY i ON by_other (id);",
    )
    twin.step("migrate", **{"postgresql.transactional.lock": "false"})
    twin.assert_same()
    query = "SELECT tablename, tableowner FROM pg_tables WHERE tablename LIKE 'by_%' ORDER BY 1"
    with twin.connect(twin.ours) as conn:
        owners = conn.execute(query).fetchall()
        installers = conn.execute("SELECT DISTINCT installed_by FROM flyway_schema_history")
        assert installers.fetchall() == [("opendolphin",)]
    assert owners == [("by_other", "fw_other"), ("by_owner", "opendolphin")]
    with twin.connect(twin.real) as conn:
        assert conn.execute(query).fetchall() == owners


def test_demo_migrations_on_the_demo_baseline(twin, demo_secrets):
    """The demo's own folder and flyway.conf settings, on the Modernized demo baseline restored
    into both databases with psql: the path every demo run takes."""
    shutil.copytree(DEMO_FLYWAY_CONF.parent / "sql", twin.folder)
    for db in (twin.real, twin.ours):
        subprocess.run(
            [str(bundled_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(twin.cluster.port), "-U", "opendolphin", "-d", db,
             "-f", str(demo_secrets / MODERN_SCHEMA_FILE)],
            check=True, capture_output=True, env={"PGPASSWORD": EXTERNAL_PASSWORD},
        )  # fmt: skip
    props = dict(
        schemas="opendolphin", defaultSchema="opendolphin", baselineOnMigrate="true",
        baselineVersion="0",
    )  # fmt: skip
    twin.step("migrate", **props)
    rows = twin.assert_same("opendolphin")
    assert [r[1] for r in rows] == ["0", "0001", "0002", "0003", "0220", "0221"]
    real, ours = twin.info(**props)
    assert ours == real
    twin.real_accepts_ours(**props)


def test_hostile_corpus(twin):
    """Empty files, comment-only files, Japanese text and identifiers, a BOM with CRLF, Latin-1
    looking bytes in UTF-8, nested block comments, E'' strings, quoted identifiers with `;`,
    dollar quotes with tags: same history, same schema, valid for real Flyway."""
    write(twin.folder, "V1__empty.sql", b"")
    write(twin.folder, "V2__comments_only.sql", "-- nothing here\n/* nor; here */\n")
    write(
        twin.folder,
        "V3__日本語.sql",
        'CREATE TABLE "患者" ("氏名" text);\nCOMMENT ON TABLE "患者" IS \'患者；一覧\';\n',
    )
    write(twin.folder, "V4__bom_crlf.sql", b"\xef\xbb\xbf-- x\r\nCREATE TABLE crlf (id int);\r\n")
    write(
        twin.folder,
        "V5__quoting.sql",
        "/* outer /* nested; */ still comment; */\n"
        "CREATE TABLE \"semi;colon\" (v text DEFAULT E'it\\'s; -- not a comment');\n"
        "CREATE FUNCTION tagged() RETURNS text AS $fn$ SELECT 'a;b' $fn$ LANGUAGE sql;\n"
        "CREATE FUNCTION plain() RETURNS text AS $$ BEGIN RETURN $x$;$x$; END $$\n"
        "  LANGUAGE plpgsql;\n"
        "SELECT 1 -- no final semicolon",
    )
    write(
        twin.folder, "R__日本語ビュー.sql", 'CREATE OR REPLACE VIEW "一覧" AS SELECT * FROM "患者";'
    )
    twin.step("migrate")
    rows = twin.assert_same()
    assert rows[0][5] == 0  # the empty file's checksum
    real, ours = twin.info()
    assert ours == real
    twin.real_accepts_ours()


def test_edited_and_renamed_files_validate_and_repair(twin):
    """An applied file edited (checksum) and renamed (description): validate and migrate fail
    alike; repair realigns the rows to the files in both."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE e1 (id int);")
    write(twin.folder, "V2__two.sql", "CREATE TABLE e2 (id int);")
    twin.step("migrate")
    write(twin.folder, "V1__one.sql", "CREATE TABLE e1 (id int); -- edited")
    (twin.folder / "V2__two.sql").rename(twin.folder / "V2__second.sql")
    twin.step("validate")
    twin.step("migrate")
    twin.step("repair")
    twin.assert_same()
    twin.step("validate")
    twin.real_accepts_ours()


@pytest.mark.parametrize(
    "names",
    [
        ("V1__a.sql", "V1.0__b.sql"),
        ("V2__a.sql", "sub/V002__b.SQL"),
        ("R__same.sql", "x/R__same.sql"),
    ],
    ids=["1-and-1.0", "2-and-002", "repeatable"],
)
def test_duplicate_migrations_are_refused(twin, names):
    """Two files with one version (compared numerically) or one repeatable description: both
    refuse to run anything."""
    for n, name in enumerate(names):
        write(twin.folder, name, f"CREATE TABLE dup{n} (id int);")
    twin.step("migrate")
    twin.step("validate")
    twin.assert_same()


def test_validate_on_a_fresh_database_and_failed_rows(twin):
    """`validate` before any migrate (pending files are errors for the command itself), and
    `info` without a history table."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE f1 (id int);")
    write(twin.folder, "R__view.sql", "CREATE OR REPLACE VIEW fv AS SELECT 1 AS x;")
    twin.step("validate")
    real, ours = twin.info()
    assert ours == real
    twin.step("migrate")
    twin.step("validate")


def test_encodings(twin):
    """flyway.encoding decodes the files (the checksum is over the decoded text's UTF-8); bytes
    not valid in it stop both ("Unable to calculate checksum"), the engine naming the file."""
    latin1 = "CREATE TABLE enc (v text DEFAULT 'café');\n".encode("latin-1")
    write(twin.folder, "V1__latin1.sql", latin1)
    twin.step("migrate", encoding="ISO-8859-1")
    twin.assert_same()
    twin.real_accepts_ours(encoding="ISO-8859-1")
    write(twin.folder, "V2__latin1_too.sql", latin1.replace(b"enc", b"enc2"))
    real, ours = twin.step("migrate")
    assert "Unable to calculate checksum" in real.error
    assert "V1__latin1.sql" in ours.error and "not valid UTF-8" in ours.error
    twin.assert_same()


def test_flyway_conf_is_read_as_flyway_reads_it(real_flyway, tmp_path):
    """ConfigUtils.loadConfigurationFromString: lines trimmed, backslashes literal (doubled before
    Properties.load) except a trailing one continuing onto a content line, `${ENV}` expanded."""
    conf = tmp_path / "flyway.conf"
    conf.write_bytes(
        b"# comment\r\n! also a comment\r\n"
        b"flyway.url=jdbc:postgresql://h:5432/db?ssl=false  \r\n"
        b"flyway.user = dolphin\n"
        b"flyway.password=pa\\ss\\tword\\u00e9\n"
        b"flyway.locations=filesystem:C:\\sql\\dir,\\\n"
        b"    filesystem:/second\n"
        b"flyway.schemas:opendolphin\n"
        b"flyway.placeholders.home=${HOME}/x\n"
        b"flyway.placeholders.trail=ends with backslash\\\n"
        b"\n"
        b"   flyway.table=   history  \n"
        b"flyway.installedBy=\xe6\x97\xa5\xe6\x9c\xac\n"
    )
    from restore_assets.flyway.conf import read_conf_file

    ours = read_conf_file(conf, env=dict(os.environ))
    assert ours == real_flyway.read_conf(conf)
    assert ours["flyway.password"] == "pa\\ss\\tword\\u00e9"


@pytest.mark.parametrize(
    "statement, transactional",
    [
        ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ux ON r (id);", False),
        ("DROP INDEX CONCURRENTLY ri;", False),
        ("REINDEX (VERBOSE) SCHEMA public;", False),
        ("VACUUM r;", False),
        ("REINDEX TABLE CONCURRENTLY r;", True),
        ("REINDEX INDEX ri;", True),
    ],
)
def test_which_statements_run_outside_a_transaction(twin, statement, transactional):
    """PostgreSQLParser.detectCanExecuteInTransaction's patterns decide; REINDEX ...
    CONCURRENTLY is not among them, so Flyway runs it in a transaction, where PostgreSQL refuses
    it: the engine does the same. (Without the transactional lock, so CONCURRENTLY can finish.)"""
    props = {"postgresql.transactional.lock": "false"}
    write(twin.folder, "V1__table.sql", "CREATE TABLE r (id int);\nCREATE INDEX ri ON r (id);")
    write(twin.folder, "V2__statement.sql", statement)
    real, ours = twin.step("migrate", **props)
    assert real.ok == (not statement.startswith("REINDEX TABLE CONCURRENTLY"))
    twin.assert_same()
    if real.ok:  # a failed V2 stays pending: validate would rightly say so
        twin.real_accepts_ours(**props)


def test_target_version(twin):
    """flyway.target: versions above it are Above Target (ResolvedMigration.getState), neither
    applied nor validate errors; a target no file or row has fails (failOnMissingTarget)."""
    for n in (1, 2, 3, 4):
        write(twin.folder, f"V{n}__v{n}.sql", f"CREATE TABLE tg{n} (id int);")
    write(twin.folder, "R__view.sql", "CREATE OR REPLACE VIEW tv AS SELECT 1 AS x;")
    twin.step("migrate", target="2")
    rows = twin.assert_same()
    assert [r[1] for r in rows] == ["1", "2", None]
    real, ours = twin.info(target="2")
    assert ours == real and real[-1][-1] == "Above Target"
    twin.step("validate", target="2")
    twin.step("migrate", target="5")
    twin.step("info", target="5")
    twin.step("migrate", target="3")
    twin.step("migrate", target="latest")
    twin.assert_same()
    twin.real_accepts_ours()


def test_custom_table_default_schema_and_search_path(twin):
    """flyway.table and defaultSchema: the history lives there (its DDL, index and key names
    compared by pg_dump), and each migration runs with the default schema first on the
    search_path (PostgreSQLConnection.changeCurrentSchemaTo)."""
    write(twin.folder, "V1__unqualified.sql", "CREATE TABLE lands_here (id int);")
    write(
        twin.folder,
        "V2__path.sql",
        "CREATE TABLE seen AS SELECT current_setting('search_path') AS p;",
    )
    props = dict(schemas="first,second", defaultSchema="second", table="my_history")
    twin.step("migrate", **props)
    real = twin.history(twin.real, "second", "my_history")
    assert real and real == twin.history(twin.ours, "second", "my_history")
    assert twin.schema(twin.ours) == twin.schema(twin.real)
    with twin.connect(twin.real) as a, twin.connect(twin.ours) as b:
        query = (
            "SELECT schemaname, tablename FROM pg_tables WHERE tablename IN ('lands_here', 'seen')"
        )
        assert sorted(b.execute(query).fetchall()) == sorted(a.execute(query).fetchall())
        path = "SELECT p FROM second.seen"
        assert b.execute(path).fetchall() == a.execute(path).fetchall()
    twin.real_accepts_ours(**props)


def test_ignore_migration_patterns(twin):
    """ValidatePattern / MigrationInfoImpl.validate: each of missing (versioned, repeatable),
    future, ignored, pending is an error unless a pattern matches it; repair deletes missing
    and future rows unless a pattern matches (DbRepair.deleteMissingMigrations)."""
    for n in (1, 2, 3, 4):
        write(twin.folder, f"V{n}__v{n}.sql", f"CREATE TABLE ip{n} (id int);")
    write(twin.folder, "R__r.sql", "CREATE OR REPLACE VIEW ipr AS SELECT 1 AS x;")
    twin.step("migrate")
    (twin.folder / "V2__v2.sql").unlink()  # missing
    (twin.folder / "V4__v4.sql").unlink()  # future: above every file
    (twin.folder / "R__r.sql").unlink()  # missing repeatable
    write(twin.folder, "V2_5__late.sql", "CREATE TABLE ip25 (id int);")  # ignored
    write(twin.folder, "R__new.sql", "CREATE OR REPLACE VIEW ipn AS SELECT 1 AS x;")  # pending
    every = ["versioned:missing", "repeatable:missing", "*:future", "*:ignored", "*:pending"]
    real, _ = twin.step("validate", ignoreMigrationPatterns=",".join(every))
    assert real.valid
    for left_out in every:
        patterns = ",".join(p for p in every if p != left_out)
        real, _ = twin.step("validate", ignoreMigrationPatterns=patterns)
        assert not real.valid, left_out
    twin.step("migrate", ignoreMigrationPatterns="*:missing,*:ignored,*:future")
    twin.assert_same()
    twin.step("repair")  # the default *:future: V4 stays, V2 and R__r are marked deleted
    rows = twin.assert_same()
    assert [(r[1], r[2]) for r in rows if r[3] == "DELETE"] == [("2", "v2"), (None, "r")]
    twin.step("repair", ignoreMigrationPatterns="")
    rows = twin.assert_same()
    assert [r[1] for r in rows if r[3] == "DELETE"] == ["2", None, "4"]
    twin.step("migrate", ignoreMigrationPatterns="*:ignored")
    twin.step("validate", ignoreMigrationPatterns="bad")


def test_mixed_scripts(twin):
    """A script mixing transactional and non-transactional statements fails unless mixed=true
    (ParserSqlScript), then runs outside a transaction."""
    props = {"postgresql.transactional.lock": "false"}
    write(
        twin.folder,
        "V1__mixed.sql",
        "CREATE TABLE mx (id int);\nCREATE INDEX CONCURRENTLY mxi ON mx (id);",
    )
    real, ours = twin.step("migrate", **props)
    assert "mixed" in real.error and "mixed" in ours.error
    twin.step("migrate", mixed="true", **props)
    twin.assert_same()
    twin.real_accepts_ours(mixed="true", **props)


# -- Issue 25: what real deployments meet -------------------------------------------------------


def configmap(folder, files: dict[str, str], stamp: str = "..2026_12_07_10_00_00.000000001"):
    """The layout kubelet writes for a ConfigMap volume (atomic_writer.go): the files in a
    hidden timestamped folder, `..data` linking to it, and one link per file at the top."""
    for name, text in files.items():
        write(folder / stamp, name, text)
    (folder / "..data").symlink_to(stamp)
    for name in files:
        (folder / name).symlink_to(f"..data/{name}")


def test_kubernetes_configmap_layout(twin):
    """FileSystemScanner skips hidden folders (#1807, "to avoid issues with Kubernetes") and
    follows links: a ConfigMap volume's files are each found once, by their top-level link, and
    recorded with that name."""
    configmap(
        twin.folder,
        {
            "V1__one.sql": "CREATE TABLE k1 (id int);",
            "V2__two.sql": "CREATE TABLE k2 (id int);",
            "R__view.sql": "CREATE OR REPLACE VIEW kv AS SELECT 1 AS x;",
        },
    )
    write(twin.folder / "..2026_12_06_09_00_00.000000002", "V1__one.sql", "stale copy")
    twin.step("migrate")
    rows = twin.assert_same()
    assert [r[4] for r in rows] == ["V1__one.sql", "V2__two.sql", "R__view.sql"]
    real, ours = twin.info()
    assert ours == real
    twin.real_accepts_ours()


def test_hidden_and_linked_folders(twin):
    """Hidden folders are skipped (a `.git`, an editor's `.backup`), hidden files are not
    migrations (their names do not start with the prefix), a dangling link is passed over
    (File.canRead), a linked folder is followed and its scripts named through the link; a
    folder linked twice holds each file twice, which both refuse as duplicates."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE h1 (id int);")
    write(twin.folder, ".git/V2__in_git.sql", "CREATE TABLE h2 (id int);")
    write(twin.folder, "sub/.backup/V3__backup.sql", "CREATE TABLE h3 (id int);")
    write(twin.folder, ".V4__hidden_file.sql", "CREATE TABLE h4 (id int);")
    write(twin.folder, "shared/V5__shared.sql", "CREATE TABLE h5 (id int);")
    write(twin.folder, "sub/R__view.sql", "CREATE OR REPLACE VIEW hv AS SELECT 1 AS x;")
    (twin.folder / "V6__dangling.sql").symlink_to("nowhere.sql")
    (twin.folder / "linked").symlink_to("shared")
    real, ours = twin.step("migrate")
    lead = "Found more than one migration with version 5\nOffenders:\n-> "
    assert real.error.startswith(lead) and ours.error.startswith(lead)
    assert "linked/V5__shared.sql (SQL)" in ours.error and "(SQL)" in real.error
    (twin.folder / "linked").unlink()
    write(twin.folder, ".store/V7__through_link.sql", "CREATE TABLE h7 (id int);")
    (twin.folder / "current").symlink_to(".store")
    twin.step("migrate")
    rows = twin.assert_same()
    scripts = ["V1__one.sql", "shared/V5__shared.sql", "current/V7__through_link.sql"]
    assert [r[4] for r in rows] == [*scripts, "sub/R__view.sql"]
    real, ours = twin.info()
    assert ours == real
    twin.real_accepts_ours()


def test_links_out_of_the_location_and_loops(twin, tmp_path):
    """The engine's one difference in discovery: a link leading out of the location is
    refused, naming it (Flyway reads it; the location is outside input, so the engine reads
    only what is inside it). A link looping back to a folder above makes Flyway list the same
    files again at every depth until the path is too long: both refuse."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE x1 (id int);")
    (twin.folder / "loop").symlink_to(".")
    real, ours = twin.step("migrate")
    assert real.error.startswith("Found more than one migration with version 1")
    assert "loop: a link back to a folder above it" in ours.error
    (twin.folder / "loop").unlink()
    write(tmp_path / "outside", "V2__outside.sql", "CREATE TABLE x2 (id int);")
    (twin.folder / "V2__outside.sql").symlink_to(tmp_path / "outside" / "V2__outside.sql")
    assert twin.run_real("migrate").ok
    ours = twin.run_ours("migrate")
    assert not ours.ok and "V2__outside.sql: a link to a file outside the location" in ours.error
    (twin.folder / "V2__outside.sql").unlink()
    (twin.folder / "elsewhere").symlink_to(tmp_path / "outside")
    ours = twin.run_ours("migrate")
    assert not ours.ok and "elsewhere: a link to a folder outside the location" in ours.error
    assert twin.history(twin.ours) == []


def _one_version_as_a_set(rows: list[tuple]) -> list[tuple]:
    """`info` rows in their order, but a B and a V file of one version in either order: Flyway
    lists those two as its resolver's HashSet gives them (seen both ways)."""
    first = {}
    for index, row in enumerate(rows):
        first.setdefault(row[1], index)
    return sorted(rows, key=lambda row: (first[row[1]], str(row)))


def test_baseline_migrations_on_a_fresh_database(twin):
    """Flyway 10's `B<version>__` files (BaselineMigrationResolver, type SQL_BASELINE): on a
    fresh database the highest one runs instead of every version up to it
    (BaselineResolvedMigration.getState, `pendingBaseline`); the versions above follow. Once
    anything is applied they are Ignored, and no validate error."""
    for n in (1, 2, 3, 4, 5, 6):
        write(twin.folder, f"V{n}__v{n}.sql", f"CREATE TABLE bm{n} (id int);")
    write(twin.folder, "B3__older_baseline.sql", "CREATE TABLE old_base (id int);")
    write(
        twin.folder,
        "base/B5__baseline.sql",
        "".join(f"CREATE TABLE bm{n} (id int);\n" for n in (1, 2, 3, 4, 5)),
    )
    write(twin.folder, "R__view.sql", "CREATE OR REPLACE VIEW bv AS SELECT 1 AS x;")
    real, ours = twin.info()
    assert _one_version_as_a_set(ours) == _one_version_as_a_set(real), f"\n{real}\n{ours}"
    twin.step("validate")
    twin.step("migrate")
    rows = twin.assert_same()
    assert [(r[1], r[3]) for r in rows] == [("5", "SQL_BASELINE"), ("6", "SQL"), (None, "SQL")]
    real, ours = twin.info()
    assert _one_version_as_a_set(ours) == _one_version_as_a_set(real), f"\n{real}\n{ours}"
    write(twin.folder, "B7__later_baseline.sql", "CREATE TABLE later (id int);")
    write(twin.folder, "V7__v7.sql", "CREATE TABLE bm7 (id int);")
    twin.step("validate")
    twin.step("migrate")
    twin.assert_same()
    real, ours = twin.info()
    assert _one_version_as_a_set(ours) == _one_version_as_a_set(real), f"\n{real}\n{ours}"
    twin.real_accepts_ours()


def test_baseline_migrations_beside_baseline_on_migrate(twin):
    """On a non-empty schema baselineOnMigrate writes its BASELINE row first, so every `B` file
    is Ignored and the versions above the baseline run."""
    write(twin.folder, "B2__baseline.sql", "CREATE TABLE b_two (id int);")
    write(twin.folder, "V2__two.sql", "CREATE TABLE v_two (id int);")
    write(twin.folder, "V3__three.sql", "CREATE TABLE v_three (id int);")
    for db in (twin.real, twin.ours):
        with twin.connect(db) as conn:
            conn.execute("CREATE TABLE existing (id int)")
    twin.step("migrate", baselineOnMigrate="true")
    rows = twin.assert_same()
    assert [(r[1], r[3]) for r in rows] == [("1", "BASELINE"), ("2", "SQL"), ("3", "SQL")]
    real, ours = twin.info()
    assert ours == real, f"\nflyway {real}\nengine {ours}"
    twin.real_accepts_ours()


def test_a_migration_that_commits_part_of_its_work_then_fails(twin):
    """A script with its own COMMIT: Flyway's transaction (JDBC, autocommit off) ends there and
    the driver opens the next one at the next statement, so what came before the COMMIT stays,
    what came after is rolled back with the failure, and no row is written."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE c1 (id int);")
    write(
        twin.folder,
        "V2__partial.sql",
        "CREATE TABLE kept (id int);\nCOMMIT;\nCREATE TABLE lost (id int);\n"
        "INSERT INTO kept VALUES (1);\nSELECT 1/0;\n",
    )
    real, ours = twin.step("migrate")
    assert "V2__partial.sql" in real.error
    assert "failed at line 5" in ours.error and "transaction itself at line 2" in ours.error
    rows = twin.assert_same()
    assert [r[1] for r in rows] == ["1"]
    with twin.connect(twin.ours) as conn:
        tables = "SELECT to_regclass('kept') IS NOT NULL, to_regclass('lost') IS NOT NULL"
        assert conn.execute(tables).fetchone() == (True, False)
        assert conn.execute("SELECT count(*) FROM kept").fetchone()[0] == 0


def test_non_transactional_statements_after_comments(twin):
    """PostgreSQLParser.detectCanExecuteInTransaction reads the statement's first keywords,
    comments left out: a CREATE INDEX CONCURRENTLY after a comment, or with comments between
    its words, runs outside a transaction."""
    props = {"postgresql.transactional.lock": "false"}
    write(twin.folder, "V1__table.sql", "CREATE TABLE ct (id int, v int);")
    write(
        twin.folder,
        "V2__index.sql",
        "-- the index the report needs\n/* built online */\n"
        "CREATE /* no lock */ INDEX -- online\n CONCURRENTLY cti ON ct (id);\n",
    )
    write(
        twin.folder,
        "V3__unique.sql",
        "/* a */ -- b\nCREATE UNIQUE INDEX CONCURRENTLY ctu ON ct (v);\n",
    )
    real, ours = twin.step("migrate", **props)
    assert real.ok
    rows = twin.assert_same()
    assert [r[1] for r in rows] == ["1", "2", "3"]
    twin.real_accepts_ours(**props)


@pytest.mark.parametrize("version", ["1.a", "v2", "1..2", "1_a", "1_1", "+3"])
def test_baseline_version_is_checked_like_flyway(twin, version):
    """MigrationVersion.fromVersion reads baselineVersion when Flyway baselines, not before: a
    migrate that needs no baseline and info pass; baseline and baselineOnMigrate on a
    non-empty schema refuse a version that is none, in Flyway's words, writing nothing."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE bv1 (id int);")
    twin.step("migrate", baselineVersion=version)
    twin.step("info", baselineVersion=version)
    for db in (twin.real, twin.ours):
        with twin.connect(db) as conn:
            conn.execute("DROP TABLE flyway_schema_history, bv1")
            conn.execute("CREATE TABLE existing (id int)")
    props = dict(baselineVersion=version, baselineOnMigrate="true")
    for command in ("baseline", "migrate"):
        real, ours = twin.step(command, **props)
        if not real.ok:
            lead = "Version may only contain 0..9 and . (dot). Invalid version: "
            normalized = version.replace("_", ".")
            assert real.error == lead + normalized and ours.error.startswith(real.error)
        twin.assert_same()


def test_baseline_version_latest_is_refused(twin):
    """A deliberate difference: Flyway takes baselineVersion=latest, records
    '<< Latest Version >>' as the baseline's version and then fails on its own history; the
    engine refuses it."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE bl1 (id int);")
    for db in (twin.real, twin.ours):
        with twin.connect(db) as conn:
            conn.execute("CREATE TABLE existing (id int)")
    assert twin.run_real("baseline", baselineVersion="latest").ok
    assert twin.history(twin.real)[0][1] == "<< Latest Version >>"
    real = twin.run_real("info")
    assert not real.ok and "Invalid version: << Latest Version >>" in real.error
    ours = twin.run_ours("baseline", baselineVersion="latest")
    assert not ours.ok and "flyway.baselineVersion='latest' is not a version" in ours.error
    assert twin.history(twin.ours) == []


def test_messages_lead_with_flyways_words(twin):
    """For a missing target (MigrationInfoServiceImpl.validateTarget), duplicates
    (CompositeMigrationResolver.checkForIncompatibilities) and an unknown placeholder
    (PlaceholderReplacingReader) the engine's message starts with Flyway's own, which a DBA
    searches for, then says what to do."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE m1 (id int);")
    for command in ("migrate", "info", "validate"):
        real, ours = twin.step(command, target="7")
        assert real.error.startswith("No migration with a target version 7 could be found.")
        assert ours.error.startswith(real.error)
    write(twin.folder, "V2__placeholder.sql", "SELECT '${nobody}';")
    real, ours = twin.step("migrate")
    flyway = "No value provided for placeholder: ${nobody}.  Check your configuration!"
    assert flyway in real.error and ours.error.startswith(flyway)
    write(twin.folder, "V2__placeholder.sql", "SELECT '${flyway:nothing}';")
    real, ours = twin.step("migrate")
    flyway = "Failed to populate value for default placeholder: ${flyway:nothing}"
    assert flyway in real.error and ours.error.startswith(flyway)
    write(twin.folder, "V2__placeholder.sql", "SELECT 1;")
    write(twin.folder, "R__a.sql", "SELECT 1;")
    write(twin.folder, "sub/R__a.sql", "SELECT 1;")
    real, ours = twin.step("migrate")
    assert real.error.startswith("Found more than one repeatable migration with description a\n")
    # The two offenders, in whatever order Flyway's HashSet gives them (the engine: path order).
    offenders = set(real.error.splitlines()[1:])
    assert len(offenders) == 3 and offenders <= set(ours.error.splitlines()), ours.error
    assert ours.error.startswith(real.error.splitlines()[0])
    (twin.folder / "sub/R__a.sql").unlink()
    other = twin.folder.parent / "other"
    write(other, "V001__again.sql", "SELECT 1;")
    real, ours = twin.step("migrate", locations=f"filesystem:{twin.folder},filesystem:{other}")
    # Which of the two Flyway names first (and so whose version text it shows) follows a
    # HashSet's order; the engine names them in path order.
    for error in (real.error, ours.error):
        assert error.startswith("Found more than one migration with version ")
        assert f"-> {other}/V001__again.sql (SQL)" in error
        assert f"-> {twin.folder}/V1__one.sql (SQL)" in error
    twin.assert_same()


@pytest.mark.parametrize(
    "constant, flyway_fails",
    [
        ("e'it\\'s; DROP TABLE pe; --'", True),
        ("e'\\\\'", False),
        ("E'it\\'s; fine'", False),
        ("E'a'\n'b\\'c'", False),  # to Flyway the statement runs on to the end: the same
        ("x'1f'", False),
        ("X'1F'", False),
        ("u&'d\\0061t\\+000061'", False),
        ("n'Ｘ'", False),
    ],
    ids=["lower-e", "lower-e-backslash", "upper-E", "E-continued", "lower-x", "upper-X",
         "unicode", "national"],
)  # fmt: skip
def test_string_constants_flyway_reads_its_own_way(twin, constant, flyway_fails):
    """Parser.readToken knows `E'`, `B'`, `X'` (backslash escapes) and `U&'` in upper case
    only: a lowercase `e'a\\'b'` is a word and a plain string to it, so outside parentheses the
    statement splits inside the constant and the server refuses the pieces; an `E'...'`
    continued on the next line is two strings to it (here the rest of the script still
    reaches the server whole). PostgreSQL reads them otherwise, but the
    history must be the one real Flyway writes: the engine splits as Flyway does, and fails
    where Flyway fails (a Flyway parser gap, kept on purpose)."""
    write(twin.folder, "V1__table.sql", "CREATE TABLE pe (v text);")
    write(twin.folder, "V2__constant.sql", f"CREATE TABLE pc AS SELECT {constant}::text AS v;\n")
    real, ours = twin.step("migrate")
    assert real.ok is not flyway_fails
    twin.assert_same()
    if real.ok:
        with twin.connect(twin.real) as a, twin.connect(twin.ours) as b:
            assert (
                b.execute("SELECT v FROM pc").fetchall() == a.execute("SELECT v FROM pc").fetchall()
            )
        twin.real_accepts_ours()


def test_a_parameter_in_a_begin_atomic_body_fails_alike(twin):
    """PostgreSQLParser.handleAlternativeStringLiteral takes any `$` for a dollar quote whose
    tag runs to the next `$`: `$1` in a BEGIN ATOMIC body swallows the rest of the script and
    Flyway stops with "Incomplete statement" before running any of it. The engine reads it
    the same way and refuses the script before running anything; the file before it stays
    applied, as with Flyway."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE before_fn (id int);")
    write(
        twin.folder,
        "V2__fn.sql",
        "CREATE TABLE in_fn_script (id int);\n"
        "CREATE FUNCTION add_one(int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n"
        "  SELECT $1 + 1;\nEND;\nCREATE TABLE after_fn (id int);\n",
    )
    real, ours = twin.step("migrate", **{"postgresql.transactional.lock": "false"})
    assert "Incomplete statement at line 2" in real.error
    assert ours.error.startswith("Unable to parse statement in V2__fn.sql: Incomplete statement")
    rows = twin.assert_same()
    assert [r[1] for r in rows] == ["1"]
    write(
        twin.folder,
        "V2__fn.sql",
        "CREATE FUNCTION add_one(int) RETURNS int LANGUAGE sql AS $$ SELECT $1 + 1 $$;\n"
        "CREATE TABLE after_fn AS SELECT add_one(1) AS two, $x$ $1 $x$ AS quoted;\n",
    )
    twin.step("migrate")
    twin.assert_same()
    twin.real_accepts_ours()


def test_default_schema_not_among_the_schemas(twin):
    """SchemaHistoryFactory.prepareSchemas: a defaultSchema that flyway.schemas does not list
    leads the managed schemas; Flyway creates it with them (marker `"hist","app","extra"`) and
    keeps the history there. A missing schema beside a non-empty default one: Flyway creates it
    with the history table, so baselineOnMigrate finds a history and does not baseline."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE ds1 (id int);")
    props = dict(schemas="app,extra", defaultSchema="hist")
    twin.step("migrate", **props)
    rows = twin.assert_same("hist")
    assert rows[0][4] == '"hist","app","extra"'
    real, ours = twin.info(**props)
    assert ours == real
    twin.real_accepts_ours(**props)
    props = dict(schemas="app2", defaultSchema="hist2", baselineOnMigrate="true")
    for db in (twin.real, twin.ours):
        with twin.connect(db) as conn:
            conn.execute("CREATE SCHEMA hist2; CREATE TABLE hist2.t (id int)")
    twin.step("migrate", **props)
    rows = twin.assert_same("hist2")
    assert [(r[3], r[4]) for r in rows] == [("SCHEMA", '"app2"'), ("SQL", "V1__one.sql")]


@pytest.mark.parametrize(
    "path", ["nowhere", '"$user", nowhere', "''"], ids=["app", "user", "empty"]
)
def test_a_search_path_with_no_schema_to_create_in(twin, path):
    """A database whose search_path names no existing schema: current_schema() is NULL, and
    without flyway.schemas or defaultSchema PostgreSQLConnection.doGetCurrentSchema takes the
    search_path text for the schema's name, which Flyway then creates: `nowhere` (a role or
    database set to its application schema before anyone created it), and, a quirk matched so
    the history is where Flyway keeps it, a schema named `"$user", nowhere` or `""`, after which
    the migration fails on the search_path Flyway sets (3F000)."""
    write(twin.folder, "V1__one.sql", "CREATE TABLE sp1 (id int);")
    for db in (twin.real, twin.ours):
        with twin.connect(db) as conn:
            conn.execute(f"ALTER DATABASE {db} SET search_path = {path}")
    real, ours = twin.step("migrate")
    assert real.ok is (path == "nowhere")
    schema = {"nowhere": "nowhere", "''": '""'}.get(path, path)
    rows = twin.assert_same(schema)
    assert rows[0][3] == "SCHEMA"
    real, ours = twin.info()
    assert ours == real


def test_validate_messages_are_flyways(twin):
    """MigrationInfoImpl.validate's messages, word for word (the engine may add a line after):
    checksum and description mismatches, a missing migration, an ignored one, pending versioned
    and repeatable ones, a failed one."""
    props = {"postgresql.transactional.lock": "false"}
    for n in (1, 2, 4, 6):
        write(twin.folder, f"V{n}__v{n}.sql", f"CREATE TABLE vm{n} (id int);")
    write(twin.folder, "V5__fails.sql", "CREATE INDEX CONCURRENTLY vmi ON nowhere (id);")
    twin.step("migrate", target="4", **props)
    write(twin.folder, "V1__v1.sql", "CREATE TABLE vm1 (id int); -- edited")
    (twin.folder / "V2__v2.sql").rename(twin.folder / "V2__renamed.sql")
    (twin.folder / "V4__v4.sql").unlink()
    write(twin.folder, "V3__late.sql", "CREATE TABLE vm3 (id int);")
    write(twin.folder, "R__view.sql", "CREATE OR REPLACE VIEW vmv AS SELECT 1 AS x;")
    real, ours = twin.step("validate", **props)
    errors = twin.engine(**props).validate()
    assert len(errors) == 7  # 1 and 2 changed, 4 missing, 3 ignored, 5, 6 and R pending
    for error in errors:
        flyway_part = error.split("\n(")[0]  # the engine's own added line
        assert flyway_part in real.error, f"{flyway_part!r} not in Flyway's\n{real.error}"
    twin.step(
        "migrate", ignoreMigrationPatterns="*:missing,*:ignored", validateOnMigrate="false", **props
    )
    real, ours = twin.step("validate", **props)
    failed = [e for e in twin.engine(**props).validate() if "failed" in e]
    assert failed and failed[0].split(" (`restore-assets")[0] in real.error
