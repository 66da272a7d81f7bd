"""The fast load's own SQL runs in the psql session the Secrets' dumps run in (issue 23): a schema
dump before it may leave a search_path of its own and functions or operators there. The line that
says which load ran carries a random token; our SQL must never hand that token, or anything
else, to the dump's code (every name in our top-level statements qualified)."""

from __future__ import annotations

import subprocess

from restore_assets.pg.clients import client_binary
from restore_assets.pg.fastload import FastLoad
from restore_assets_tests.helpers import legacy_target

# A schema dump that redefines `||` (text, text) in a schema first on its search_path, and a
# `text` type there, and records whatever reaches them.
HOSTILE_SCHEMA = r"""
SELECT pg_catalog.set_config('search_path', '', false);
CREATE TABLE public.t (id int PRIMARY KEY);
CREATE SCHEMA evil;
CREATE TABLE evil.seen (v pg_catalog.text);
CREATE FUNCTION evil.cat(pg_catalog.text, pg_catalog.text) RETURNS pg_catalog.text
    LANGUAGE sql AS $$ INSERT INTO evil.seen VALUES ($1); SELECT pg_catalog.textcat($1, $2) $$;
CREATE OPERATOR evil.|| (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text,
    FUNCTION = evil.cat);
SELECT pg_catalog.set_config('search_path', 'evil, pg_catalog', false);
"""


def test_the_dump_before_the_fast_load_never_receives_its_token(secrets_dir):
    db = legacy_target()
    fast = FastLoad()
    script = (
        HOSTILE_SCHEMA
        + fast.defer_script().text
        + "\nSELECT 'seen: ' OPERATOR(pg_catalog.||) v FROM evil.seen;\nROLLBACK;\n"
    )
    psql = client_binary("psql", db.pg.tools.psql)
    done = subprocess.run(
        [psql, "-X", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        input="BEGIN;\n" + script,
        env=db.client_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{fast.defer_token} fast" in done.stdout  # our line was printed
    assert f"seen: {fast.defer_token}" not in done.stdout  # and never reached the dump's code
