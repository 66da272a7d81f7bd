"""The Flyway-compatible engine's pure parts: checksums, names, versions, conf, statements,
and the migration info (states, pending order) from hand-built files and history rows."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from restore_assets.flyway import FlywayError, Version, checksum
from restore_assets.flyway.checksum import checksum_text
from restore_assets.flyway.conf import load_conf, parse_jdbc_url, parse_properties
from restore_assets.flyway.history import java_string_hash, lock_key
from restore_assets.flyway.history_row import HistoryRow
from restore_assets.flyway.migration_info import MigrationInfoService, pending_after_baseline
from restore_assets.flyway.placeholders import replace_placeholders
from restore_assets.flyway.resolver import ResolvedMigration, parse_name, resolve
from restore_assets.flyway.statements import split_statements


@pytest.mark.parametrize(
    "data",
    [
        b"SELECT 1;",
        b"SELECT 1;\n",
        b"SELECT 1;\r\n",
        b"\xef\xbb\xbfSELECT 1;",
        b"\xef\xbb\xbfSELECT 1;\r\n",
        b"SELECT 1;\r",
    ],
)
def test_known_checksum_of_select_1_whatever_the_line_endings_or_bom(data):
    assert checksum(data) == 78787420


def test_known_checksums_from_flyway():
    assert checksum(b"") == 0
    text = b"alter table migrations.test_table\nadd added_column varchar(16);"
    assert checksum(text) == -604825677
    assert checksum(text.replace(b"\n", b"\r\n")) == -604825677
    assert checksum(text.replace(b"\n", b"\r")) == -604825677


def test_blank_lines_do_not_change_a_checksum_but_text_does():
    assert checksum(b"SELECT 1;\n\n\n") == checksum(b"SELECT 1;")
    assert checksum(b"SELECT 2;") != checksum(b"SELECT 1;")


def test_only_the_first_bom_is_removed_and_non_ascii_is_hashed_as_utf8():
    import zlib

    japanese = "COMMENT ON TABLE t IS '監査';"
    expected = zlib.crc32(japanese.encode("utf-8"))
    expected = expected - (1 << 32) if expected >= 1 << 31 else expected
    assert checksum(japanese.encode("utf-8")) == expected
    assert checksum(b"\xef\xbb\xbf" + japanese.encode("utf-8")) == expected
    # A BOM on a later line is content, as in Flyway.
    assert checksum_text("a\n\ufeffb") != checksum_text("a\nb")


def test_undecodable_bytes_name_the_file():
    with pytest.raises(FlywayError, match="V9__bad.sql: not valid utf-8"):
        checksum(b"SELECT '\xff';", name="V9__bad.sql")


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("V0002__performance_indexes.sql", ("V", "0002", "performance indexes")),
        ("V1_1__two_parts.sql", ("V", "1.1", "two parts")),
        ("V2.0.1__dots.sql", ("V", "2.0.1", "dots")),
        ("R__refresh_views.sql", ("R", None, "refresh views")),
        ("B5__baseline.sql", ("B", "5", "baseline")),
        ("B__no_version.sql", None),
        ("V1a__bad_version.sql", None),
        ("README.sql", None),
        ("V3_missing_separator.sql", None),
    ],
)
def test_migration_names(name, parsed):
    assert parse_name(name) == parsed


def test_versions_compare_numerically_and_keep_their_text():
    assert Version.parse("0002") == Version.parse("2") == Version.parse("2.0")
    assert Version.parse("0010") > Version.parse("0009")
    assert Version.parse("1.10") > Version.parse("1.9")
    assert sorted(["10", "0002", "1.1", "1"], key=Version.parse) == ["1", "1.1", "0002", "10"]
    assert str(Version.parse("0002")) == "0002"


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_resolver_scans_subfolders_orders_and_skips(tmp_path):
    write(tmp_path, "V10__ten.sql", "SELECT 10;")
    write(tmp_path, "sub/V0002__two.sql", "SELECT 2;")
    write(tmp_path, "R__views.sql", "SELECT 0;")
    write(tmp_path, "notes.sql", "not a migration")
    conf = load_conf(None, env={}, overrides={"flyway.locations": f"filesystem:{tmp_path}"})
    found = resolve(conf)
    assert [(m.version_text, m.script) for m in found] == [
        ("0002", "sub/V0002__two.sql"),
        ("10", "V10__ten.sql"),
        (None, "R__views.sql"),
    ]


def test_duplicate_versions_are_an_error(tmp_path):
    write(tmp_path, "V2__a.sql", "SELECT 1;")
    write(tmp_path, "x/V0002__b.sql", "SELECT 2;")
    conf = load_conf(None, env={}, overrides={"flyway.locations": f"filesystem:{tmp_path}"})
    with pytest.raises(FlywayError, match="more than one migration with version"):
        resolve(conf)


def test_a_migration_is_read_only_as_a_regular_file_inside_its_location(tmp_path):
    """The location is outside input: a FIFO named like a migration is refused, not waited on;
    a file swapped for a link (to a file outside) after the scan is refused, not followed."""
    location, outside = tmp_path / "sql", tmp_path / "outside"
    write(location, "V1__one.sql", "SELECT 1;")
    write(outside, "secret.txt", "first line of a local file\n")
    conf = load_conf(None, env={}, overrides={"flyway.locations": f"filesystem:{location}"})
    (migration,) = resolve(conf)
    os.mkfifo(location / "V2__fifo.sql")
    with pytest.raises(FlywayError, match="V2__fifo.sql: not a regular file"):
        resolve(conf)  # returns at once: opened O_NONBLOCK, refused by fstat
    (location / "V2__fifo.sql").unlink()
    (location / "V1__one.sql").unlink()
    (location / "V1__one.sql").symlink_to(outside / "secret.txt")
    with pytest.raises(FlywayError, match="changed into a link or special file"):
        migration.read_bytes()
    with pytest.raises(FlywayError, match="a link to a file outside the location"):
        resolve(conf)


def test_conf_java_properties_and_env_substitution(tmp_path):
    conf = write(
        tmp_path,
        "flyway.conf",
        "# comment\n! also a comment\n"
        "flyway.url=jdbc:postgresql://${DB_HOST}:${DB_PORT}/${DB_NAME}?sslmode=require\n"
        "flyway.user = ${DB_USER}\n"
        "flyway.password:${DB_PASSWORD}\n"
        "flyway.schemas=opendolphin,\\\n    audit\n"
        "flyway.defaultSchema=opendolphin\n"
        "flyway.baselineOnMigrate=true\n"
        "flyway.baselineVersion=0\n"
        "flyway.placeholders.Owner=${flyway:user}\n"
        "flyway.locations=filesystem:sql\n",
    )
    env = {
        "DB_HOST": "db.example",
        "DB_PORT": "55432",
        "DB_NAME": "opendolphin_modern",
        "DB_USER": "opendolphin",
        "DB_PASSWORD": "pw=with:chars",
    }
    config = load_conf(conf, env=env)
    assert config.jdbc.host == "db.example" and config.jdbc.port == 55432
    assert config.jdbc.database == "opendolphin_modern"
    assert config.jdbc.params == {"sslmode": "require"}
    assert config.user == "opendolphin" and config.password == "pw=with:chars"
    assert config.schemas == ("opendolphin", "audit")
    assert config.baseline_on_migrate is True and config.baseline_version == "0"
    assert config.placeholders == {"owner": "${flyway:user}"}
    # Relative locations start at the working directory, as in the Flyway CLI (not the conf's).
    assert config.location_dirs() == [Path.cwd() / "sql"]
    assert load_conf(conf, env=env, working_dir=tmp_path).location_dirs() == [tmp_path / "sql"]
    # Unset variables become empty, which leaves a URL that says what is wrong with it.
    with pytest.raises(FlywayError, match=r"jdbc:postgresql://:/"):
        _ = load_conf(conf, env={}).jdbc
    # FLYWAY_* env and explicit overrides win over the file.
    overridden = load_conf(conf, env={"FLYWAY_SCHEMAS": "x"}, overrides={"flyway.table": "h"})
    assert overridden.schemas == ("x",) and overridden.table == "h"


def test_properties_escapes_and_separators():
    props = parse_properties("a=1\nb : two words\nc\\=d=3\ne=\\u00e9\\tx\nf\n")
    assert props == {"a": "1", "b": "two words", "c=d": "3", "e": "é\tx", "f": ""}


def test_jdbc_url_must_be_postgresql():
    with pytest.raises(FlywayError, match="not a jdbc:postgresql"):
        parse_jdbc_url("jdbc:mysql://h/db")
    assert parse_jdbc_url("jdbc:postgresql://h/db").port == 5432


def test_placeholders_are_case_insensitive_and_unknown_ones_fail():
    assert replace_placeholders("GRANT ${Role} TO x", {"role": "app"}) == "GRANT app TO x"
    with pytest.raises(FlywayError, match=r"No value provided for placeholder: \$\{missing\}"):
        replace_placeholders("SELECT '${missing}'", {})
    # PlaceholderReplacingReader: any text up to `}` is a name; `$${x}` is passed on unchecked
    with pytest.raises(FlywayError, match=r"placeholder: \$\{not a name\}"):
        replace_placeholders("SELECT '${not a name}'", {})
    assert replace_placeholders("$${x} $a ${x}", {"x": "1"}) == "$${x} $a 1"
    with pytest.raises(FlywayError, match="default placeholder"):
        replace_placeholders("${flyway:nope}", {})


def test_lock_key_is_flyways_own():
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert lock_key("public", "flyway_schema_history") == 77433833903597


def test_statements_split_outside_quotes_and_bodies_with_lines():
    text = (
        "-- header\n"
        "CREATE TABLE a (x text DEFAULT 'a;b');\n"
        "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n"
        "\n"
        "/* c; */ CREATE INDEX CONCURRENTLY i ON a (x);\n"
        "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n"
        "SELECT 'it''s; fine', E'\\'; still';\n"
    )
    found = split_statements(text)
    assert [(s.line, s.transactional) for s in found] == [
        (1, True),
        (3, True),
        (5, False),
        (6, True),
        (7, True),
    ]
    assert found[1].sql.endswith("LANGUAGE sql;")
    assert found[0].line_of(text.index("DEFAULT") + 1) == 2


def test_pure_parts_import_without_psycopg_or_dagster():
    """The package, conf, resolver and migration_info need neither driver nor Dagster; the engine,
    which does need psycopg, fails under the same block (so the block is real)."""
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "sys.modules['dagster'] = None\n"
        "import restore_assets.flyway.migration_info, restore_assets.flyway.placeholders\n"
        "from restore_assets.flyway import FlywayError, InfoRow, Version, load_conf, resolve\n"
        "try:\n"
        "    from restore_assets.flyway import Flyway\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    sys.exit('Flyway imported although psycopg was blocked')\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_the_engine_imports_nothing_from_the_rest_of_the_project():
    """restore_assets/flyway/ could be published alone: its modules import only each other (the
    project's adapter, runbook/flyway_adapter.py, imports the engine, never the reverse)."""
    package = Path(__file__).resolve().parents[1] / "restore_assets" / "flyway"
    outside = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "restore_assets" and not (
                    name == "restore_assets.flyway" or name.startswith("restore_assets.flyway.")
                ):
                    outside.add((path.relative_to(package).as_posix(), name))
    assert not outside, sorted(outside)


def migration(version: str | None, description: str, checksum: int = 1) -> ResolvedMigration:
    name = f"V{version}__{description}.sql" if version else f"R__{description}.sql"
    return ResolvedMigration(
        Version.parse(version) if version else None, description, name, Path(name), checksum
    )


def applied(
    rank: int,
    version: str | None,
    description: str,
    *,
    type: str = "SQL",
    checksum: int | None = 1,
    success: bool = True,
) -> HistoryRow:
    name = f"V{version}__{description}.sql" if version else f"R__{description}.sql"
    return HistoryRow(rank, version, description, type, name, checksum, "me", None, 0, success)


def states(config, files, rows):
    return [
        (r.category, r.version, r.description, r.state)
        for r in MigrationInfoService(config, files, rows).info()
    ]


def test_info_states_ignored_missing_pending_outdated_in_flyways_order():
    config = load_conf(None, env={})
    files = [
        migration("1", "one"),
        migration("2", "two"),
        migration("4", "four"),
        migration("10", "ten"),
        migration(None, "view", checksum=2),
    ]
    rows = [
        applied(1, "1", "one"),
        applied(2, "3", "three"),  # no file, yet below the highest file (10): Missing
        applied(3, "4", "four"),
        applied(4, None, "view", checksum=1),  # the file changed since: Outdated
    ]
    assert states(config, files, rows) == [
        # applied rows in rank order, then the rest by version (MigrationInfoImpl.compareTo)
        ("Versioned", "1", "one", "Success"),
        ("Versioned", "3", "three", "Missing"),
        ("Versioned", "4", "four", "Success"),
        ("Repeatable", None, "view", "Outdated"),
        ("Versioned", "2", "two", "Ignored"),  # below the highest applied (4)
        ("Versioned", "10", "ten", "Pending"),
        ("Repeatable", None, "view", "Pending"),  # the changed file, to run again
    ]
    # With outOfOrder the ignored version becomes pending, and migrate applies it first.
    out_of_order = load_conf(None, env={}, overrides={"flyway.outOfOrder": "true"})
    assert ("Versioned", "2", "two", "Pending") in states(out_of_order, files, rows)
    assert [m.script for m in MigrationInfoService(out_of_order, files, rows).pending()] == [
        "V2__two.sql",
        "V10__ten.sql",
        "R__view.sql",
    ]


def test_info_states_baseline_below_baseline_failed_and_future():
    config = load_conf(None, env={})
    files = [migration("1", "one"), migration("2", "two"), migration("3", "three")]
    rows = [
        applied(1, "1", "<< Flyway Baseline >>", type="BASELINE", checksum=None),
        applied(2, "2", "two"),
        applied(3, "3", "three", success=False),
        applied(4, "9", "nine"),  # above every file: applied by a newer release
    ]
    assert states(config, files, rows) == [
        ("Versioned", "1", "one", "Ignored (Baseline)"),  # files at or below it come first
        ("", "1", "<< Flyway Baseline >>", "Baseline"),
        ("Versioned", "2", "two", "Success"),
        ("Versioned", "3", "three", "Failed"),
        ("Versioned", "9", "nine", "Future"),
    ]
    assert MigrationInfoService(config, files, rows).pending() == []


def test_pending_after_a_restore_counts_from_the_baseline_version_not_the_history():
    """After the reset the history is only the baseline row: what is pending then depends on
    flyway.baselineVersion and the files, whatever the target's history holds today."""
    files = [migration("0001", "a"), migration("0003", "b"), migration("0220", "c")]
    files.append(migration(None, "view"))
    at_zero = load_conf(None, env={}, overrides={"flyway.baselineVersion": "0"})
    assert [m.script for m in pending_after_baseline(at_zero, files)] == [
        "V0001__a.sql",
        "V0003__b.sql",
        "V0220__c.sql",
        "R__view.sql",
    ]
    at_three = load_conf(None, env={}, overrides={"flyway.baselineVersion": "3"})
    assert [m.script for m in pending_after_baseline(at_three, files)] == [
        "V0220__c.sql",
        "R__view.sql",
    ]
