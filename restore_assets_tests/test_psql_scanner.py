"""The meta-command scanner: what psql would execute from a Secrets file."""

from __future__ import annotations

import io
import json

import pytest

from restore_assets.pg.psql import UnsafeScriptError, check_script, iter_meta_commands


def metas(text: str) -> list[tuple[int, str, str]]:
    return [(m.line, m.name, m.argument) for m in iter_meta_commands(io.StringIO(text))]


def test_pg_dump_commands_are_found_with_their_lines():
    text = "--\n\\restrict abc\nSET x = 1;\nSELECT 1;\n\\unrestrict abc\n"
    assert metas(text) == [(2, "restrict", "abc"), (5, "unrestrict", "abc")]


def test_backslashes_inside_quotes_comments_and_dollar_bodies_are_not_commands():
    text = (
        "SELECT '\\! not a command', E'it\\'s \\\\ fine \\q';\n"
        'SELECT "we\\ird" FROM t; -- \\! comment\n'
        "/* outer /* nested \\! */ still comment \\q */ SELECT 1;\n"
        "CREATE FUNCTION f() RETURNS text AS $body$\n"
        "  SELECT regexp_replace(x, '\\s+', ' ') -- $notend$ \\!\n"
        "$body$ LANGUAGE sql;\n"
        "SELECT $$ \\! $$, $tag$ multi\n \\! line $tag$;\n"
    )
    assert metas(text) == []


def test_copy_data_is_skipped_until_the_terminator():
    text = (
        "COPY public.t (a, b) FROM stdin;\n"
        "1\t\\N\n"
        "2\tback\\\\slash \\! in data\n"
        "\\.\n"
        "\\! echo after\n"
    )
    assert metas(text) == [(5, "!", "echo after")]


def test_a_command_after_sql_on_the_same_line_is_seen():
    assert metas("SELECT 1 \\gexec\n") == [(1, "gexec", "")]


def test_check_script_refuses_shell_escape_naming_file_line_and_command(tmp_path):
    path = tmp_path / "x.sql"
    path.write_text("--\n\\! touch /tmp/pwned\n\\restrict k\nSELECT 1;\n\\unrestrict k\n")
    with pytest.raises(UnsafeScriptError) as err:
        check_script(path, "legacy-server/db-baseline/x.sql")
    assert err.value.line == 2
    assert "legacy-server/db-baseline/x.sql:2" in str(err.value)
    assert "\\! touch /tmp/pwned" in str(err.value)


@pytest.mark.parametrize(
    ("line", "allowed"),
    [
        ("\\unrestrict k", True),
        ("\\connect -reuse-previous=on \"dbname='opendolphin'\"", False),  # never \connect
        ("\\connect opendolphin", False),
        ("\\connect -reuse-previous=on \"dbname='postgres'\"", False),
        ("\\c template1", False),
        ("\\copy t from '/etc/passwd'", False),
        ("\\i /etc/passwd", False),
        ("\\o |sh", False),
        ("\\set ON_ERROR_STOP 0", False),
    ],
)
def test_only_pg_dump_meta_commands_pass(tmp_path, line, allowed):
    path = tmp_path / "x.sql"
    path.write_text(f"\\restrict k\n{line}\nSELECT 1;\n")
    if allowed:
        assert check_script(path, "x.sql").meta_commands == 2
    else:
        with pytest.raises(UnsafeScriptError):
            check_script(path, "x.sql")


def test_scan_reports_created_schemas_and_extensions(tmp_path):
    path = tmp_path / "x.sql"
    path.write_text(
        'CREATE SCHEMA opendolphin;\nCREATE SCHEMA "Mixed""Case";\n'
        "CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;\n"
    )
    scan = check_script(path, "x.sql")
    assert scan.schemas == ["opendolphin", 'Mixed"Case']
    assert scan.extensions == ["pg_trgm"]


def test_intake_scans_the_bytes_it_hashes_in_the_same_pass(secrets_dir, settings):
    """The restore reads each file once, to feed psql: intake's pass already holds the scan."""
    from restore_assets.runbook.intake import SecretsStore
    from restore_assets.settings import LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE

    store = SecretsStore(settings.with_overrides(paths={"secrets_dir": secrets_dir}).paths)
    for relpath in (LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE):
        info = store.inspect(relpath)
        assert info.scan == check_script(secrets_dir / relpath, relpath)
        assert info.scan.meta_commands == 2  # pg_dump's \restrict and \unrestrict
    assert "opendolphin" in store.inspect(LEGACY_SCHEMA_FILE).scan.schemas


def test_a_refusal_found_in_intake_is_kept_in_the_cache_with_file_and_line(secrets_dir, settings):
    from restore_assets.runbook.intake import SecretsStore
    from restore_assets.settings import LEGACY_SCHEMA_FILE

    path = secrets_dir / LEGACY_SCHEMA_FILE
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(6, "\\! touch /tmp/pwned\n")
    path.write_text("".join(lines), encoding="utf-8")
    settings = settings.with_overrides(paths={"secrets_dir": secrets_dir})
    store = SecretsStore(settings.paths)
    first = store.inspect(LEGACY_SCHEMA_FILE)
    entries = json.loads(store.cache_path.read_text()).values()
    assert [e["refused"] for e in entries if e["sha256"] == first.sha256] == [first.scan.refused]
    cached = SecretsStore(settings.paths).inspect(LEGACY_SCHEMA_FILE)  # from the sha256 cache
    assert cached.scan == first.scan
    assert first.usable  # the scan is no intake problem: the restore refuses, naming the line
    with pytest.raises(UnsafeScriptError) as err:
        cached.scan.raise_if_refused(LEGACY_SCHEMA_FILE)
    assert f"{LEGACY_SCHEMA_FILE}:7" in str(err.value) and "\\! touch" in str(err.value)
