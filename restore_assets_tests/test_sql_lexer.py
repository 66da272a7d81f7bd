"""The one SQL lexer (restore_assets.flyway.lexer) in its two dialects: the cases the old
hand-written lexers got wrong, then properties checked against PostgreSQL's and psql's own
answers."""

from __future__ import annotations

import io
import re
import subprocess
from collections import Counter

import hypothesis
import psycopg
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from psycopg import sql

from restore_assets.errors import UnsafeScriptError
from restore_assets.flyway.errors import FlywayError
from restore_assets.flyway.lexer import (
    FLYWAY_POSTGRES,
    PSQL,
    Lexer,
    MetaCommand,
    Span,
    lex,
    split_lines,
)
from restore_assets.flyway.statements import split_statements
from restore_assets.pg.clients import client_binary
from restore_assets.pg.database import Database, embedded_admin
from restore_assets.pg.psql import check_script, iter_meta_commands


def sqls(text: str) -> list[str]:
    return [s.sql for s in split_statements(text)]


def metas(text: str) -> list[tuple[int, str, str]]:
    return [(m.line, m.name, m.argument) for m in iter_meta_commands(io.StringIO(text))]


# Flyway dialect: where statements end.


def test_case_end_inside_begin_atomic_ends_the_body_as_flyway_does():
    """Flyway 10.17.3 closes BEGIN ATOMIC at the first END, a CASE's too (real Flyway then
    fails on it: test_flyway_vs_real.test_begin_atomic_with_case_fails_alike)."""
    first = (
        "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql\n"
        "BEGIN ATOMIC\n"
        "  SELECT CASE WHEN x > 0 THEN 1 ELSE 2 END;"
    )
    rest = "\n  SELECT CASE x WHEN 1 THEN CASE WHEN true THEN 3 END END;\nEND;"
    assert sqls(first + rest + "\nSELECT 4;") == [
        first,
        "SELECT CASE x WHEN 1 THEN CASE WHEN true THEN 3 END END;",
        "END;",
        "SELECT 4;",
    ]
    body = (
        "CREATE FUNCTION g() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT 2;\nEND;"
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


def test_an_e_string_continues_across_a_newline_for_the_server_but_not_for_psql_or_flyway():
    # Flyway's Parser.readToken reads each quote on its own, so the `;` after '\' splits there
    # (the server would read one string); psql too, and then runs the \echo.
    text = "SELECT E'a'\n'\\'; \\echo X\n';\n"
    assert sqls(text) == ["SELECT E'a'\n'\\';", "\\echo X\n';"]
    assert metas(text) == [(2, "echo", "X")]


def test_flyway_reads_escape_strings_in_upper_case_only_and_any_dollar_as_a_quote():
    # Parser.readToken: `e'` is a word and a plain string; B'/X' escape like E'.
    assert sqls("SELECT e'a\\'; SELECT 2; x';\n") == ["SELECT e'a\\';", "SELECT 2;", "x';"]
    assert sqls("SELECT X'a\\'; b';\n") == ["SELECT X'a\\'; b';"]
    # PostgreSQLParser: `$1` opens a quote whose tag runs to the next `$`, across lines.
    assert sqls("SELECT $1;\nSELECT $2;\nSELECT 3;\n") == ["SELECT $1;\nSELECT $2;\nSELECT 3;"]
    assert sqls("SELECT $1 a\n$;SELECT $1 a\n$;\nSELECT 3;\n") == [
        "SELECT $1 a\n$;SELECT $1 a\n$;",
        "SELECT 3;",
    ]
    with pytest.raises(FlywayError, match="Incomplete statement at line 2"):
        sqls("SELECT 1;\nCREATE FUNCTION f(int) RETURNS int BEGIN ATOMIC SELECT $1; END;\n")


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
        check_script(path, "x.sql")
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
    assert check_script(path, "x.sql").schemas == ["real"]


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
        check_script(path, "x.sql")
    assert err.value.line == 4
    assert metas(text) == [(7, "echo", "after")]
    spans = [s for s in lex(split_lines(text), PSQL) if isinstance(s, Span)]
    inherited = [s for s in spans if s.copy_inherited]
    assert [(s.line, text[slice(*s.copy_data)]) for s in inherited] == [(4, "\\! in data\n")]


# Properties, with PostgreSQL and psql themselves as the oracle.
#
# Texts are built from atoms `(text, slot)`; the slot says where a psql meta-command inserted just
# before the atom lands: "sql" between tokens, "in" inside a string, quoted identifier, block
# comment or COPY data, "line" inside a `--` comment (so it must not bring a newline), "none" for
# nowhere.

Atoms = list[tuple[str, str]]

PLAIN = [*"aZé;$():E-", " ", '"', "$$", "--", "/*", "*/", "\n", "\r"]
STANDARD = [*PLAIN, "''", "\\"]  # inside '...' a backslash is plain text
ESCAPED = [*PLAIN, "''", "\\\\", "\\'", "\\n", "\\;", "\\\n"]  # inside E'...'
SEPARATORS = [" ", "\n", "\t", "\r\n", "\r", "\f", "\v", " /* ; ' */ ", "-- ; '\n", "-- c\r"]
GAPS = ["\n", " \n ", "\r", " -- c\n", "\n-- c\n  ", "\t\r\n", "\v\n"]  # may continue a string


def text_of(atoms: Atoms) -> str:
    return "".join(text for text, _ in atoms)


def quoted(opening: str, units: list[str], closing: str) -> Atoms:
    return [(opening, "sql"), *((u, "in") for u in units), (closing, "in")]


def units_of(choices: list[str], min_size: int = 0) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(choices), min_size=min_size, max_size=6)


@st.composite
def dollar_quoted(draw: st.DrawFn) -> Atoms:
    tag = "$" + draw(st.sampled_from(["", "a", "tag", "_x1", "é"])) + "$"
    body = draw(units_of([*PLAIN, "'", "\\"]))
    assume(("".join(body) + tag).find(tag) == len("".join(body)))
    return quoted(tag, body, tag)


@st.composite
def continued(draw: st.DrawFn, prefix: str, choices: list[str]) -> Atoms:
    """'...' then blanks holding a newline then '...': one string to the server (scan.l xqs)."""
    first = quoted(prefix, draw(units_of(choices)), "'")
    second = quoted("'", draw(units_of(choices)), "'")
    return [*first, (draw(st.sampled_from(GAPS)), "sql"), *second]


def string_literal(as_flyway_reads: bool = False) -> st.SearchStrategy[Atoms]:
    """`as_flyway_reads`: only forms Flyway's parser reads as the server does (not an E'...'
    continued after a newline, which it takes for two strings)."""
    forms = [
        units_of(STANDARD).map(lambda u: quoted("'", u, "'")),
        units_of(ESCAPED).map(lambda u: quoted("E'", u, "'")),
        dollar_quoted(),
        continued("'", STANDARD),
    ]
    return st.one_of(*forms, *([] if as_flyway_reads else [continued("E'", ESCAPED)]))


def literal(as_flyway_reads: bool = False) -> st.SearchStrategy[Atoms]:
    others = st.sampled_from(["1", "1.5e3", ".5", "B'0101'", "X'1F'", "N'x;'"])
    return st.one_of(string_literal(as_flyway_reads), others.map(lambda t: [(t, "sql")]))


def quoted_identifier() -> st.SearchStrategy[Atoms]:
    choices = [u for u in PLAIN if u != '"'] + ['""', "'", "\\"]
    return units_of(choices, min_size=1).map(lambda u: quoted('"', u, '"'))


def comment() -> st.SearchStrategy[Atoms]:
    line_text = [u for u in PLAIN if u not in ("\n", "\r")] + ["'", "\\"]
    line_comment = st.builds(
        lambda body, end: [("--", "sql"), *((u, "line") for u in body), (end, "line")],
        units_of(line_text),
        st.sampled_from(["\n", "\r", "\r\n"]),
    )
    block_text = [u for u in line_text if u not in ("/*", "*/")] + ["\n", " * ", " / "]
    nested = units_of(block_text).map(lambda u: ["/*", *u, "*/"])
    block_comment = st.builds(
        lambda a, inner, b: quoted("/*", [*a, *inner, *b], "*/"),
        units_of(block_text),
        st.one_of(st.just([]), nested),
        units_of(block_text),
    )
    return st.one_of(line_comment, block_comment)


def separator() -> st.SearchStrategy[Atoms]:
    return st.one_of(st.sampled_from(SEPARATORS).map(lambda s: [(s, "sql")]), comment())


@st.composite
def migration(draw: st.DrawFn) -> str:
    """Valid statements (or comments only) whose text hides `;`, quotes, comment marks."""

    def sep() -> str:
        return text_of(draw(separator()))

    statements = []
    for k in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["select", "paren", "function", "rule", "empty"]))
        value = text_of(draw(literal(as_flyway_reads=True)))
        alias = text_of(draw(quoted_identifier()))
        if kind == "select" or k == 0:
            statements.append(f"SELECT{sep()}{value}{sep()}AS{sep()}{alias}")
        elif kind == "paren":
            statements.append(f"SELECT ({value}) AS {alias}")
        elif kind == "function":
            statements.append(
                f"CREATE FUNCTION pg_temp.lex_f{k}() RETURNS int LANGUAGE sql{sep()}BEGIN"
                # no CASE in the body: Flyway itself would end the body at its END
                f"{sep()}ATOMIC SELECT 1 WHERE {value} IS NULL;{sep()}SELECT 2;{sep()}END"
            )
            statements.append(f"SELECT pg_temp.lex_f{k}()")
        elif kind == "rule":
            payload = text_of(draw(string_literal(as_flyway_reads=True)))
            statements.append(f"CREATE TEMP TABLE lex_t{k} (a text)")
            statements.append(
                f"CREATE RULE lex_r{k} AS ON INSERT TO lex_t{k} DO ALSO"
                f" (NOTIFY lex, {payload};{sep()}NOTIFY lex)"
            )
        else:
            statements.append(draw(st.sampled_from(["", "-- only a comment\n", "/* ; */"])))
    text = "".join(f"{statement};{sep()}" for statement in statements)
    return text.removesuffix(";") if draw(st.booleans()) else text


@pytest.fixture(scope="module")
def scratch_db(settings):
    """A throw-away database on the embedded server: what the properties run may leave there."""
    target = Database(settings.legacy, settings.pg)
    name = "lexer_properties"
    with embedded_admin(target.endpoint()) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(settings.legacy.user)
            )
        )
    yield target, name
    with embedded_admin(target.endpoint()) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def results(cur: psycopg.Cursor) -> list[tuple[str | None, list[str] | None, list | None]]:
    """Every result of the last execute: command tag, column names, rows."""
    found = []
    while True:
        columns = None if cur.description is None else [c.name for c in cur.description]
        found.append((cur.statusmessage, columns, None if columns is None else cur.fetchall()))
        if not cur.nextset():
            return found


@pytest.mark.slow
@hypothesis.settings(max_examples=60, deadline=None)
@given(text=migration())
def test_flyway_split_gives_what_postgresql_gives_for_the_whole_text(scratch_db, text):
    target, name = scratch_db
    with target.connect(dbname=name) as conn, conn.cursor() as cur:
        cur.execute(text)  # no parameters: one simple query, split by the server itself
        whole = results(cur)
        conn.rollback()
        split = []
        for statement in split_statements(text):
            cur.execute(statement.sql)
            split += results(cur)
        conn.rollback()
    assert split == whole


WORDS = ["SELECT", "x", "CREATE", "OR", "REPLACE", "FUNCTION", "PROCEDURE", "BEGIN", "ATOMIC"]
WORDS += ["CASE", "END", "COPY", "FROM", "stdin", "(", ")", ";", "::", "1", "\\;", "\\:", "\\zz"]
GLUED = [":", "xE", "1", "$1", "a$"]  # glued to what follows: psql variables, identifiers...
DATA = [u for u in PLAIN if u not in ("\n", "\r")] + ["'"]  # COPY text: no tab, CR, backslash


def copy_block() -> st.SearchStrategy[Atoms]:
    head = [("COPY", "sql"), (" lex_copy ", "sql"), ("FROM", "sql"), (" stdin", "sql")]
    line = units_of(DATA).map(lambda u: [*((x, "in") for x in u), ("\n", "in")])
    return st.lists(line, max_size=3).map(
        lambda lines: [*head, (";", "sql"), ("\n", "sql"), *sum(lines, []), ("\\.\n", "in")]
    )


def psql_piece() -> st.SearchStrategy[Atoms]:
    return st.one_of(
        st.sampled_from(WORDS).map(lambda w: [(w, "sql")]),
        literal(),
        quoted_identifier(),
        st.tuples(st.sampled_from(GLUED), literal()).map(lambda t: [(t[0], "sql"), *t[1]]),
        copy_block(),
    )


@st.composite
def psql_script(draw: st.DrawFn) -> tuple[str, dict[int, int]]:
    """Random SQL-ish text with `\\echo MARK<n>` put in at random places; returns the text and
    the line each mark was put on."""
    atoms = [("CREATE TEMP TABLE lex_copy (a text);\n", "none")]
    for _ in range(draw(st.integers(1, 8))):
        atoms += draw(psql_piece()) + draw(separator())
    text, lines = "", {}
    for atom, slot in atoms:
        if slot != "none" and draw(st.integers(0, 5)) == 0:
            lines[len(lines)] = text.count("\n") + 1
            newline = slot != "line" and draw(st.booleans())
            text += f"\\echo MARK{len(lines) - 1}" + ("\n" if newline else " \\\\")
        text += atom
    return text, lines


def what_ran(names_and_arguments) -> Counter:
    return Counter(
        ("mark", int(m.group(1)))
        if name == "echo" and (m := re.fullmatch(r"MARK(\d+)", arg))
        else (name, arg if name == "echo" else "")
        for name, arg in names_and_arguments
    )


@pytest.mark.slow
@hypothesis.settings(max_examples=60, deadline=None)
@given(script=psql_script())
def test_psql_scanner_finds_exactly_the_meta_commands_psql_runs(
    scratch_db, tmp_path_factory, script
):
    text, lines = script
    target, name = scratch_db
    path = tmp_path_factory.mktemp("psql") / "script.sql"
    path.write_bytes(text.encode())
    ran = subprocess.run(
        [client_binary("psql"), "-X", "-q", "-o", "/dev/null", "-f", str(path)],
        env=target.client_env(dbname=name),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    printed = ran.stdout.decode().splitlines()
    invalid = re.findall(r"error: invalid command \\(.*)", ran.stderr.decode())
    psql_ran = what_ran([("echo", line) for line in printed] + [(c, "") for c in invalid])
    found = list(iter_meta_commands(split_lines(text)))
    assert what_ran((m.name, m.argument) for m in found) == psql_ran
    found_lines = {m.argument: m.line for m in found if m.name == "echo"}
    assert {n: found_lines[f"MARK{n}"] for n in lines if ("mark", n) in psql_ran} == {
        n: line for n, line in lines.items() if ("mark", n) in psql_ran
    }
