"""Hostile Secrets files against the REAL psql: its restricted mode is what refuses them.

These call the psql session runner directly, without the early scanner, so they prove the
guard that does not depend on a second lexer: every file runs after `\\restrict <random key>`,
through a FIFO fed from one descriptor and hashed on the way. Each case asserts that no marker
file appears on the host and that the target is exactly as it was.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from restore_assets.errors import PsqlError
from restore_assets.pg.clients import client_binary
from restore_assets.pg.session import ScriptFile, run_psql
from restore_assets_tests.helpers import database_fingerprint, legacy_target

# {marker} is replaced by a path the test watches.
ESCAPES = {
    "shell escape": "\\! touch {marker}",
    "shell escape after an allowed command on one line": "\\restrict k \\! touch {marker}",
    "backquote in a \\set": "\\set x `touch {marker}`",
    "backquote in \\restrict's argument": "\\restrict `touch {marker}`",
    "output to a pipe": "\\o |touch {marker}",
    "\\copy from a program": "\\copy (SELECT 1) to program 'touch {marker}'",
    "\\connect to another database": "\\connect postgres",
    "\\c with a shell escape after it": "\\c opendolphin \\! touch {marker}",
    "include another file": "\\i /etc/hostname",
    "\\setenv then a shell": "\\setenv X 1\n\\! touch {marker}",
    "\\gexec a query": "SELECT 'SELECT 1' \\gexec",
    "a second \\unrestrict with a guessed key": "\\unrestrict k\n\\! touch {marker}",
    "meta-command after a comment ended by CR": "-- note\r\\! touch {marker}",
    "meta-command after non-ASCII and a dollar": "SELECT 'é'$$;\n\\! touch {marker}",
    "meta-command after an E-string with backslash": "SELECT E'\\\\';\n\\! touch {marker}",
}


def fed(tmp_path: Path, relpath: str, text: str) -> ScriptFile:
    path = tmp_path / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return ScriptFile(relpath, path, hashlib.sha256(path.read_bytes()).hexdigest())


def run(tmp_path: Path, files, prelude="CREATE TABLE public.hostile_canary (id int);\n"):
    target = legacy_target()
    return run_psql(
        client_binary("psql"),
        files,
        prelude=prelude,
        env=target.client_env(),
        tmp_root=tmp_path,
        log_path=tmp_path / "psql.log",
        redact=target.redact,
    )


@pytest.mark.parametrize("case", list(ESCAPES))
def test_psql_itself_refuses_what_a_dump_must_not_do(case, tmp_path, settings):
    marker = tmp_path / "pwned"
    before = database_fingerprint()
    body = ESCAPES[case].format(marker=marker)
    dump = fed(
        tmp_path / "in", "legacy-server/db-baseline/x.sql", f"SELECT 1;\n{body}\nSELECT 2;\n"
    )
    with pytest.raises(PsqlError) as error:
        run(tmp_path, [dump])
    assert not marker.exists(), case
    assert database_fingerprint() == before  # the canary of the prelude was rolled back too
    assert "legacy-server/db-baseline/x.sql:" in str(error.value)  # psql names file and line


def test_pg_dumps_own_restrict_lines_are_blanked_and_line_numbers_stay_true(tmp_path, settings):
    text = "--\n-- PostgreSQL database dump\n--\n\n\\restrict AbC123\n\nSELECT 1;\nSELECT nope;\n"
    text += "\n\\unrestrict AbC123\n"
    dump = fed(tmp_path / "in", "legacy-server/db-baseline/x.sql", text)
    with pytest.raises(PsqlError) as error:
        run(tmp_path, [dump])
    assert error.value.line == 8 and "nope" in str(error.value)


def test_a_file_changed_after_vetting_is_stopped_before_commit(tmp_path, settings):
    before = database_fingerprint()
    dump = fed(tmp_path / "in", "legacy-server/db-baseline/x.sql", "SELECT 1;\n")
    swapped = ScriptFile(dump.relpath, dump.path, "0" * 64)  # intake saw other bytes
    with pytest.raises(PsqlError) as error:
        run(tmp_path, [swapped])
    assert "changed after it was vetted" in str(error.value)
    assert database_fingerprint() == before


def test_a_clean_file_commits_and_reports_the_sha256_of_what_ran(tmp_path, settings):
    dump = fed(tmp_path / "in", "legacy-server/db-baseline/x.sql", "SELECT 1;\n")
    lines, ran = run(tmp_path, [dump], prelude="DROP TABLE IF EXISTS public.hostile_canary;\n")
    assert ran == {dump.relpath: dump.sha256} and lines > 0
