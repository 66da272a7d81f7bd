"""Hostile and damaged Secrets files, against the REAL psql and PostgreSQL.

First part: psql's restricted mode is what refuses what a dump must not do.

These call the psql session runner directly, without the early scanner, so they prove the
guard that does not depend on a second lexer: every file runs after `\\restrict <random key>`,
through a FIFO fed from one descriptor and hashed on the way. Each case asserts that no marker
file appears on the host and that the target is exactly as it was.

Second part: damaged or misplaced deliveries are refused at intake, both sides untouched.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from restore_assets.errors import PsqlError
from restore_assets.pg.clients import client_binary
from restore_assets.pg.session import ScriptFile, run_psql
from restore_assets.settings import (
    LEGACY_SCHEMA_FILE,
    LEGACY_SEED_FILE,
    MODERN_SCHEMA_FILE,
    load_settings,
)
from restore_assets_tests.conftest import run_cli
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
    with (tmp_path / "psql.log").open("w", encoding="utf-8") as log:
        return run_psql(
            client_binary("psql"),
            files,
            prelude=prelude,
            env=target.client_env(),
            tmp_root=tmp_path,
            log=log,
            redact=load_settings().redactor,
        )


@pytest.mark.parametrize("case", list(ESCAPES))
def test_psql_itself_refuses_what_a_dump_must_not_do(case, tmp_path, settings):
    """Each ESCAPES case inside a dump fed to psql in restricted mode."""
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
    """A dump bracketed by pg_dump 17.6's own `\\restrict` lines, failing on line 8."""
    text = "--\n-- PostgreSQL database dump\n--\n\n\\restrict AbC123\n\nSELECT 1;\nSELECT nope;\n"
    text += "\n\\unrestrict AbC123\n"
    dump = fed(tmp_path / "in", "legacy-server/db-baseline/x.sql", text)
    with pytest.raises(PsqlError) as error:
        run(tmp_path, [dump])
    assert error.value.line == 8 and "undefined column (42703)" in str(error.value)


def test_a_file_changed_after_vetting_is_stopped_before_commit(tmp_path, settings):
    """A file whose bytes are not the ones intake hashed (swapped after vetting)."""
    before = database_fingerprint()
    dump = fed(tmp_path / "in", "legacy-server/db-baseline/x.sql", "SELECT 1;\n")
    swapped = ScriptFile(dump.relpath, dump.path, "0" * 64)  # intake saw other bytes
    with pytest.raises(PsqlError) as error:
        run(tmp_path, [swapped])
    assert "changed after it was vetted" in str(error.value)
    assert database_fingerprint() == before


def test_a_clean_file_commits_and_reports_the_sha256_of_what_ran(tmp_path, settings):
    """The control: a clean file through the same verified feeder."""
    dump = fed(tmp_path / "in", "legacy-server/db-baseline/x.sql", "SELECT 1;\n")
    lines, ran = run(tmp_path, [dump], prelude="DROP TABLE IF EXISTS public.hostile_canary;\n")
    assert ran == {dump.relpath: dump.sha256} and lines > 0


# Damaged or misplaced deliveries: refused at intake, before either side is touched.
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def _swap_in(other: str):
    def put(path: Path) -> None:
        path.write_bytes((path.parents[2] / other).read_bytes())

    return put


DAMAGE = {
    "truncated seed": (LEGACY_SEED_FILE, _truncate, "truncated"),
    "schema dump in the seed slot": (
        LEGACY_SEED_FILE,
        _swap_in(LEGACY_SCHEMA_FILE),
        "schema dump in the seed slot",
    ),
    "seed in the schema slot": (
        LEGACY_SCHEMA_FILE,
        _swap_in(LEGACY_SEED_FILE),
        "data dump in the schema slot",
    ),
    "the Legacy schema in the Modernized slot": (
        MODERN_SCHEMA_FILE,
        _swap_in(LEGACY_SCHEMA_FILE),
        f"the same bytes as {LEGACY_SCHEMA_FILE}: one of the two is in the wrong slot",
    ),
    "not a pg_dump file": (
        MODERN_SCHEMA_FILE,
        lambda path: path.write_text("DROP TABLE d_users;\n"),
        "not a pg_dump plain-format file",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_delivery_blocks_both_sides_before_anything_is_touched(
    case, secrets_dir, artifacts_dir
):
    """Each DAMAGE case: a damaged or misplaced file in the Secrets store."""
    relpath, damage, reason = DAMAGE[case]
    damage(secrets_dir / relpath)
    (secrets_dir / relpath).chmod(0o600)
    done = run_cli("run")
    assert done.returncode == 2, done.stdout + done.stderr
    assert reason in done.stdout
    folder = Path(done.stdout.strip().splitlines()[-1].removeprefix("evidence: "))
    names = {p.name for p in folder.iterdir()}
    assert "legacy_psql.log" not in names and "modern_psql.log" not in names


def test_an_in_place_edit_with_the_mtime_put_back_is_hashed_again(secrets_dir, settings):
    """A same-size edit of a vetted seed, its mtime put back (a stale hash-cache entry)."""
    from restore_assets.runbook.intake import SecretsStore

    path = secrets_dir / LEGACY_SEED_FILE
    store = SecretsStore(load_settings().paths)
    before = store.inspect(LEGACY_SEED_FILE).sha256
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[-40] = ord("X") if data[-40] != ord("X") else ord("Y")  # same size
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime put back
    assert store.inspect(LEGACY_SEED_FILE).sha256 == hashlib.sha256(bytes(data)).hexdigest()
    assert store.inspect(LEGACY_SEED_FILE).sha256 != before


@pytest.mark.slow
def test_a_malformed_seed_row_never_reaches_the_evidence(secrets_dir, artifacts_dir):
    """psql runs with VERBOSITY=sqlstate: PostgreSQL's CONTEXT line (the whole row) stays out of
    the evidence, and the embedded server's own log (in RESTORE_STATE_DIR) does not keep it
    either."""
    server_log = Path(os.environ["RESTORE_STATE_DIR"]) / "pgdata" / "log"
    logged_before = server_log.stat().st_size if server_log.exists() else 0
    seed = secrets_dir / LEGACY_SEED_FILE
    lines = seed.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("COPY public.d_patient "))
    fields = lines[start + 1].rstrip("\n").split("\t")
    lines[start + 1] = "\t".join([*fields, "one-field-too-many"]) + "\n"
    seed.write_text("".join(lines), encoding="utf-8")
    done = run_cli("run", "--only", "legacy")
    assert done.returncode == 1
    folder = Path(done.stdout.strip().splitlines()[-1].removeprefix("evidence: "))
    evidence = "".join(p.read_text(errors="replace") for p in folder.iterdir() if p.is_file())
    assert "bad copy file format (22P04)" in evidence  # the error is there ...
    with server_log.open("rb") as log:
        log.seek(logged_before)
        logged = log.read().decode(errors="replace")
    for value in fields[1:]:
        if len(value) > 3 and value != "\\N":
            assert value not in evidence  # ... but no other field of the row
            assert value not in logged, logged[-2000:]


@pytest.mark.slow
def test_evidence_is_private(secrets_dir, artifacts_dir):
    """Another local user reading the evidence folder (patients' counts, server details)."""
    done = run_cli("run", "--only", "legacy")
    folder = Path(done.stdout.strip().splitlines()[-1].removeprefix("evidence: "))
    assert folder.stat().st_mode & 0o777 == 0o700
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert modes and set(modes.values()) == {0o600}, modes


@pytest.mark.slow
def test_a_psql_without_restricted_mode_is_refused_before_anything_is_touched(
    secrets_dir, artifacts_dir, tmp_path, monkeypatch
):
    """RESTORE_PSQL pointing at a psql older than 17.6, which has no `\\restrict`."""
    old = tmp_path / "bin" / "psql"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho 'psql (PostgreSQL) 17.5'\n")  # before 17.6: no \restrict
    old.chmod(0o755)
    monkeypatch.setenv("RESTORE_PSQL", str(old))
    before = database_fingerprint()
    done = run_cli("run", "--only", "legacy")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "no restricted mode" in done.stdout and "RESTORE_PSQL" in done.stdout
    assert database_fingerprint() == before


@pytest.mark.slow
def test_the_dt_transcript_names_no_schema_in_a_meta_command(secrets_dir, artifacts_dir):
    """Schema names come from the server's catalogue, never typed into `\\dt`."""
    (secrets_dir / LEGACY_SCHEMA_FILE).write_text(
        (secrets_dir / LEGACY_SCHEMA_FILE)
        .read_text(encoding="utf-8")
        .replace(
            "CREATE SCHEMA opendolphin;",
            'CREATE SCHEMA opendolphin;\nCREATE SCHEMA "x;\\! touch /tmp/pwned-dt";',
        ),
        encoding="utf-8",
    )
    done = run_cli("run", "--only", "legacy")
    assert done.returncode == 0, done.stdout + done.stderr
    folder = Path(done.stdout.strip().splitlines()[-1].removeprefix("evidence: "))
    assert not Path("/tmp/pwned-dt").exists()
    transcript = (folder / "psql_dt_legacy.log").read_text()
    assert transcript.count("\\dt") == 1  # one fixed command, no argument


def test_a_password_with_backslash_and_quote_reaches_flyway_unaltered(tmp_path):
    """A password holding a backslash, a quote and `#!`, filled into flyway.conf."""
    from restore_assets.flyway.conf import load_conf

    conf = tmp_path / "flyway.conf"
    conf.write_text("flyway.password=${DB_PASSWORD}\nflyway.placeholders.pw=x${DB_PASSWORD}\n")
    password = 'p\\"w\\n#!x'
    config = load_conf(conf, env={"DB_PASSWORD": password})
    assert config.password == password and config.placeholders["pw"] == "x" + password


@pytest.mark.slow
def test_a_failing_migration_never_shows_the_password(
    secrets_dir, artifacts_dir, external_modernized, tmp_path, monkeypatch
):
    """A placeholder filled from ${DB_PASSWORD} lands in PostgreSQL's error message; the CLI
    output, the evidence and Dagster's storage must still not hold the password."""
    import shutil

    from restore_assets.settings import DEMO_FLYWAY_CONF
    from restore_assets_tests.conftest import EXTERNAL_PASSWORD

    flyway = tmp_path / "flyway"
    shutil.copytree(DEMO_FLYWAY_CONF.parent, flyway)
    conf = flyway / "flyway.conf"
    conf.write_text(conf.read_text() + "\nflyway.placeholders.secret=${DB_PASSWORD}\n")
    (flyway / "sql" / "V0222__leak.sql").write_text("SELECT '${secret}'::int;\n")
    monkeypatch.setenv("FLYWAY_CONF", str(conf))
    monkeypatch.setenv("FLYWAY_WORKING_DIRECTORY", str(flyway))  # its filesystem:sql
    done = run_cli("run", "--only", "modernized", "--allow-reset")
    assert done.returncode == 1 and "V0222__leak.sql" in done.stdout
    assert EXTERNAL_PASSWORD not in done.stdout + done.stderr
    state = Path(os.environ["RESTORE_STATE_DIR"]) / "dagster_home"
    for root in (artifacts_dir, state):
        for path in root.rglob("*"):
            if path.is_file():
                assert EXTERNAL_PASSWORD.encode() not in path.read_bytes(), path


@pytest.mark.slow
@pytest.mark.parametrize(
    "only",
    [
        "CREATE TYPE public.mood AS ENUM ('ok', 'not ok')",
        "CREATE DOMAIN public.positive AS int CHECK (VALUE > 0)",
        "CREATE TEXT SEARCH CONFIGURATION public.jp (COPY = pg_catalog.simple)",
        "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE EXTENSION pg_trgm",  # trusted: the database owner may create it
        "CREATE SCHEMA keep_me",
    ],
)
def test_a_target_holding_only_other_kinds_of_objects_is_not_empty(
    only, secrets_dir, artifacts_dir, external_legacy
):
    """Types, domains, text-search objects, functions, extensions, a bare schema: not empty, so
    no reset without consent (and then a backup first)."""
    from restore_assets_tests.helpers import execute, query

    execute(only)
    done = run_cli("run", "--only", "legacy")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "--allow-reset" in done.stdout
    assert query("SELECT count(*) FROM pg_namespace WHERE nspname = 'keep_me'") == [
        (1 if "keep_me" in only else 0,)
    ]
    assert not (secrets_dir / "backups").exists()


@pytest.mark.slow
def test_a_superuser_target_role_is_written_in_the_evidence(
    secrets_dir, artifacts_dir, external_legacy, monkeypatch
):
    """A target configured with a superuser role (more power than a restore needs)."""
    from restore_assets_tests.conftest import SUPERUSER_PASSWORD

    monkeypatch.setenv("POSTGRES_USER", "postgres")
    monkeypatch.setenv("POSTGRES_PASSWORD", SUPERUSER_PASSWORD)
    done = run_cli("run", "--only", "legacy")
    assert done.returncode == 0, done.stdout + done.stderr
    folder = Path(done.stdout.strip().splitlines()[-1].removeprefix("evidence: "))
    assert "role is superuser: true" in (folder / "README.md").read_text()
    assert SUPERUSER_PASSWORD not in done.stdout + done.stderr


# Property: whatever quoting, comment or COPY context a meta-command is wrapped in, nothing runs.
_CONTEXTS = st.sampled_from(
    [
        "SELECT '{p}';",  # inside a string
        "SELECT E'\\\\'{p}';",  # after an escaped backslash in an E-string
        "SELECT $x${p}$x$;",  # inside a dollar quote
        "SELECT 'é'$$;\n{p}",  # after non-ASCII next to a dollar
        "-- {p}",  # inside a comment
        "/* {p} */ SELECT 1;",  # inside a block comment
        "-- note\r{p}",  # after a comment ended by CR
        "COPY t (a) FROM stdin;\nrow\n{p}\n\\.",  # inside COPY data
        "COPY t (a) FROM stdin;\nrow\n\\.\n{p}",  # right after COPY data
        "SELECT 1 {p}",  # after SQL on the same line
        "{p}",  # on its own
        'SELECT "{p}";',  # inside a quoted identifier
    ]
)
_PAYLOADS = st.sampled_from(
    [
        "\\! touch {marker}",
        "\\setenv X 1 \\! touch {marker}",
        "\\set v `touch {marker}`",
        "\\o |touch {marker}",
        "\\restrict k \\! touch {marker}",
    ]
)


@pytest.mark.slow
@hypothesis.settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@given(contexts=st.lists(_CONTEXTS, min_size=1, max_size=4), payload=_PAYLOADS, data=st.data())
def test_no_wrapping_makes_psql_run_a_meta_command(contexts, payload, data, tmp_path, settings):
    """Hypothesis: random meta-commands in random quoting, comment and COPY contexts."""
    marker = tmp_path / f"pwned-{data.draw(st.integers(0, 10**9))}"
    command = payload.format(marker=marker)
    text = "\n".join(c.format(p=command) for c in contexts) + "\nSELECT 1;\n"
    dump = fed(tmp_path / "in", "legacy-server/db-baseline/x.sql", text)
    try:
        run(tmp_path, [dump], prelude="CREATE TEMP TABLE t (a text);\n")
    except PsqlError:
        pass  # refused or a syntax error: either way, the point is what did NOT run
    assert not marker.exists(), text


@pytest.mark.slow
def test_gates_never_read_a_target_while_a_restore_holds_it(secrets_dir, artifacts_dir):
    """A restore holds the target's lock exclusively (from any process or state directory); the
    gates take it shared, so they wait until the restore is over instead of interleaving."""
    import threading
    import time

    from restore_assets.runbook.preflight import restore_lock
    from restore_assets_tests.helpers import gates_only, run_all

    assert run_all().success
    held, released = threading.Event(), []

    def restore_elsewhere():
        with restore_lock(legacy_target()):
            held.set()
            time.sleep(3)
            released.append(time.time())

    holder = threading.Thread(target=restore_elsewhere)
    holder.start()
    held.wait(timeout=30)
    result = gates_only()  # alone it takes well under the 3 s the lock is held
    finished = time.time()
    holder.join()
    assert result.success and finished >= released[0]  # it waited for the "restore" to end


@pytest.mark.slow
def test_a_restore_waiting_for_the_target_lock_says_who_holds_it(
    secrets_dir, artifacts_dir, monkeypatch
):
    """Another session holds the target's lock until the restore has tried it for 7 s: the
    restore says who holds it, at once and 5 s later, then goes on once it is free (a session
    outside Dagster: the target's lock is the only wait that sees it)."""
    import threading
    import time

    from restore_assets.runbook.preflight import RESTORE_LOCK_KEY

    def release_once_tried(holder, watcher) -> None:
        # The restore polls with pg_try_advisory_lock: its session shows that as its query.
        # Waiting for it (not a fixed time) keeps the test true on a slow machine.
        trying = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_try_advisory%'"
        deadline = time.monotonic() + 120
        while not watcher.execute(trying).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(7)
        holder.execute("SELECT pg_advisory_unlock(%s)", (RESTORE_LOCK_KEY,))

    monkeypatch.setenv("RESTORE_WAIT_SECONDS", "60")
    target = legacy_target()
    with target.connect(autocommit=True) as holder, target.connect(autocommit=True) as watcher:
        holder.execute("SET application_name = 'ops-by-hand'")
        holder.execute("SELECT pg_advisory_lock(%s)", (RESTORE_LOCK_KEY,))
        release = threading.Thread(target=release_once_tried, args=(holder, watcher))
        release.start()
        try:
            done = run_cli("run", "--only", "legacy", "--allow-reset")
        finally:
            release.join()
    assert done.returncode == 0, done.stdout + done.stderr
    said = [line for line in (done.stdout + done.stderr).splitlines() if "is locked by" in line]
    assert len(said) >= 2, done.stdout + done.stderr  # at once, and again 5 s later
    assert all("ops-by-hand" in line and "RESTORE_WAIT_SECONDS" in line for line in said), said


def test_the_embedded_server_lets_in_only_this_os_user_as_the_projects_roles(settings):
    """No trust: a role that exists but is not the project's is refused, and no rule trusts."""
    import psycopg

    from restore_assets.pg.database import embedded_admin

    endpoint = legacy_target().endpoint()
    with embedded_admin(endpoint) as conn:
        conn.execute("DROP ROLE IF EXISTS intruder")
        conn.execute("CREATE ROLE intruder LOGIN")
        methods = {r[0] for r in conn.execute("SELECT auth_method FROM pg_hba_file_rules")}
        kinds = {r[0] for r in conn.execute("SELECT type FROM pg_hba_file_rules")}
    assert methods == {"peer"} and kinds == {"local"}
    with pytest.raises(psycopg.OperationalError, match="Peer authentication failed"):
        psycopg.connect(host=endpoint.host, port=endpoint.port, user="intruder", dbname="postgres")
    assert legacy_target().server_version_num() > 0  # the project's own role still gets in
    assert legacy_target().role_is_superuser() is False  # and it is not a superuser


@pytest.mark.slow
def test_evidence_failing_after_commit_says_the_target_was_restored(
    secrets_dir, artifacts_dir, monkeypatch
):
    """A full disk after psql committed: its own exit code and words, never "nothing happened"."""
    import errno

    from restore_assets.runbook.evidence import EvidenceStore
    from restore_assets_tests.helpers import query

    record_step = EvidenceStore.record_step

    def disk_full_after_commit(self, step, status, summary):
        if step == "legacy/restore" and status == "ok":
            raise OSError(errno.ENOSPC, "No space left on device")
        record_step(self, step, status, summary)

    monkeypatch.setattr(EvidenceStore, "record_step", disk_full_after_commit)
    done = run_cli("run", "--only", "legacy")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "WAS restored; writing evidence failed: [Errno 28] No space left" in done.stdout
    assert query("SELECT count(*) > 0 FROM d_patient") == [(True,)]  # really committed


@pytest.mark.slow
@pytest.mark.parametrize("statement", ["COMMIT;", "rollback;", "END;", "BEGIN;"])
def test_a_dump_that_ends_the_transaction_itself_is_refused_untouched(
    statement, secrets_dir, artifacts_dir
):
    """After its own COMMIT/ROLLBACK, psql would run the rest outside the single transaction."""
    seed = secrets_dir / LEGACY_SEED_FILE
    lines = seed.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("COPY public.d_patient "))
    lines.insert(at, statement + "\n")
    seed.write_text("".join(lines), encoding="utf-8")
    before = database_fingerprint()
    done = run_cli("run", "--only", "legacy")
    assert done.returncode == 1, done.stdout + done.stderr
    word = statement.rstrip(";").upper()
    assert f"{LEGACY_SEED_FILE}:{at + 1}: refused transaction control `{word}`" in done.stdout
    assert database_fingerprint() == before


def test_a_role_name_that_would_add_an_auth_rule_is_refused():
    """pg_ident.conf is text: a configured user carrying a newline must not become a rule."""
    from restore_assets.errors import DatabaseUnusable
    from restore_assets.pg.database import restrict_embedded_auth

    endpoint = legacy_target().endpoint()
    pgdata = load_settings().paths.state_dir / "pgdata"
    before = (pgdata / "pg_ident.conf").read_text()
    with pytest.raises(DatabaseUnusable, match="is not a plain name"):
        restrict_embedded_auth(pgdata, endpoint, ["opendolphin\nrestore_assets nobody postgres"])
    assert (pgdata / "pg_ident.conf").read_text() == before
