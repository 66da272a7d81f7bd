"""The one SQL lexer (restore_assets.pg.lexer) in its two dialects: the cases the old hand-written
lexers got wrong."""

from __future__ import annotations

import io

import pytest

from restore_assets.flyway.statements import split_statements
from restore_assets.pg.lexer import (
    FLYWAY_POSTGRES,
    PSQL,
    Lexer,
    MetaCommand,
    Span,
    lex,
    split_lines,
)
from restore_assets.resources.psql_runner import UnsafeScriptError, check_script, iter_meta_commands


def sqls(text: str) -> list[str]:
    return [s.sql for s in split_statements(text)]


def metas(text: str) -> list[tuple[int, str, str]]:
    return [(m.line, m.name, m.argument) for m in iter_meta_commands(io.StringIO(text))]


# Flyway dialect: where statements end.


def test_case_end_inside_begin_atomic_does_not_end_the_body():
    body = (
        "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql\n"
        "BEGIN ATOMIC\n"
        "  SELECT CASE WHEN x > 0 THEN 1 ELSE 2 END;\n"
        "  SELECT CASE x WHEN 1 THEN CASE WHEN true THEN 3 END END;\n"
        "END;"
    )
    assert sqls(body + "\nSELECT 4;") == [body, "SELECT 4;"]


def test_copy_data_is_part_of_its_statement_not_split_at_semicolons():
    text = (
        "COPY t (a, b) FROM stdin; -- Flyway drops the rest of this line\n"
        "1\ta;b\n"
        "2\t'; DROP TABLE t; --\n"
        "  \\.  \r\n"
        "SELECT 1;\n"
    )
    copy, select = split_statements(text)
    assert copy.sql == "COPY t (a, b) FROM stdin;" and copy.line == 1
    assert copy.copy_data == "1\ta;b\n2\t'; DROP TABLE t; --\n"
    assert (select.sql, select.line, select.copy_data) == ("SELECT 1;", 5, None)


def test_semicolons_inside_parentheses_stay_in_the_statement():
    rule = "CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a, ';'; NOTIFY b);"
    assert sqls(f"{rule}\nSELECT (1);") == [rule, "SELECT (1);"]


def test_a_dash_dash_comment_ends_at_a_carriage_return():
    found = split_statements("-- one\rSELECT 1;\r-- two\rSELECT 2;\r")
    assert [(s.code, s.line) for s in found] == [("SELECT 1;", 1), ("SELECT 2;", 1)]


def test_leading_comments_nest_and_are_not_code():
    (found,) = split_statements("/* a /* b; */ c; */ -- d;\nSELECT 1;")
    assert found.code == "SELECT 1;" and found.line == 1
    assert sqls("/* only */ ; -- comments\n;") == []


def test_an_e_string_continues_across_a_newline_for_the_server_but_not_for_psql():
    text = "SELECT E'a'\n'\\'; \\echo X\n';\n"
    assert sqls(text) == ["SELECT E'a'\n'\\'; \\echo X\n';"]
    assert metas(text) == [(2, "echo", "X")]


# psql dialect: which meta-commands psql runs.


def test_psql_also_ends_a_dash_dash_comment_at_a_carriage_return():
    # psql's lexer takes \r as a newline: this \! runs, so the scanner must see it.
    assert metas("-- harmless\r\\! rm -rf ~\n") == [(1, "!", "rm -rf ~")]


def test_an_unquoted_backslash_ends_the_arguments_and_starts_the_next_command():
    text = "\\c opendolphin \\! touch x\n\\echo 'a \\! b' \\\\ SELECT 1;\n"
    assert metas(text) == [(1, "c", "opendolphin"), (1, "!", "touch x"), (2, "echo", "'a \\! b'")]


def test_psql_variables_hide_what_follows_the_colon():
    # psql reads `:E` as a variable, so '...\' is a plain string and the \echo runs.
    assert metas("SELECT :E'x\\' \\echo C ';\n") == [(1, "echo", "C ';")]
    assert metas("SELECT 1 :a$$ \\echo D $$;\n") == []


def test_copy_data_in_a_dump_is_skipped_and_lines_stay_exact():
    text = "COPY t FROM stdin; \\echo after-data\n\\! in data\n\\.\n\\echo next\n"
    assert metas(text) == [(1, "echo", "after-data"), (4, "echo", "next")]


def test_the_scanner_streams_its_input():
    def lines():
        yield "\\restrict k\n"
        raise AssertionError("read past the first meta-command")

    assert next(iter_meta_commands(lines())) == MetaCommand(1, "restrict", "k")


@pytest.mark.parametrize(
    "line",
    [
        "\\restrict `touch /tmp/pwned`",
        "\\connect -reuse-previous=on \"dbname='opendolphin'\" `touch /tmp/pwned`",
        "\\c opendolphin \\! touch /tmp/pwned",
        "-- comment\r\\! touch /tmp/pwned",
    ],
)
def test_check_script_refuses_what_psql_would_run_behind_an_allowed_command(tmp_path, line):
    path = tmp_path / "x.sql"
    path.write_bytes(f"SELECT 1;\n{line}\n".encode())
    with pytest.raises(UnsafeScriptError) as err:
        check_script(path, "x.sql", "opendolphin")
    assert err.value.line == 2


def test_check_script_ignores_create_schema_in_data_and_strings(tmp_path):
    path = tmp_path / "x.sql"
    path.write_text(
        "CREATE SCHEMA real;\n"
        "COPY t (sql) FROM stdin;\n"
        "CREATE SCHEMA from_data;\n"
        "\\.\n"
        "INSERT INTO t VALUES ('\n"
        "CREATE SCHEMA from_string;\n"
        "');\n"
    )
    assert check_script(path, "x.sql", "db").schemas == ["real"]


def test_lines_end_at_newline_only_and_offsets_are_exact():
    text = "SELECT 1;\r-- c\rSELECT 2; SELECT 'x\n;';\nSELECT 3"
    assert list(split_lines(text)) == [
        "SELECT 1;\r-- c\rSELECT 2; SELECT 'x\n",
        ";';\n",
        "SELECT 3",
    ]
    spans = list(lex(split_lines(text), FLYWAY_POSTGRES))
    assert [(text[s.start : s.end], s.line) for s in spans] == [
        ("SELECT 1;", 1),
        ("-- c\rSELECT 2;", 1),
        ("SELECT 'x\n;';", 1),
        ("SELECT 3", 3),
    ]
    assert [text[s.code : s.end] for s in spans][1] == "SELECT 2;"


def test_at_statement_start_is_false_inside_anything_open():
    lexer = Lexer(PSQL)
    states = []
    for line in ["-- c\n", "SELECT '\n", "';\n", "COPY t FROM stdin;\n", "x\n", "\\.\n"]:
        states.append(lexer.at_statement_start)
        lexer.feed(line)
    assert states == [True, True, False, True, False, False]


def test_a_copy_sent_with_a_previous_statement_still_reads_data():
    assert metas("SELECT 1 \\; COPY c FROM stdin;\n\\echo in-data\n\\.\n\\echo after\n") == [
        (4, "echo", "after")
    ]


def test_psql_reads_copy_data_after_a_statement_without_identifiers_that_follows_a_copy(tmp_path):
    # psql 18.6 keeps a statement's first identifiers until the next one; check_script refuses
    # this, as psql before 18.6 runs those lines.
    text = "COPY t FROM stdin;\nx\n\\.\n;\n\\! in data\n\\.\n\\echo after\n"
    path = tmp_path / "x.sql"
    path.write_text(text)
    with pytest.raises(UnsafeScriptError, match="older psql runs them") as err:
        check_script(path, "x.sql", "db")
    assert err.value.line == 4
    assert metas(text) == [(7, "echo", "after")]
    spans = [s for s in lex(split_lines(text), PSQL) if isinstance(s, Span)]
    inherited = [s for s in spans if s.copy_inherited]
    assert [(s.line, text[slice(*s.copy_data)]) for s in inherited] == [(4, "\\! in data\n")]
