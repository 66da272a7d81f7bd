"""`flyway.conf`: Java-properties rules, `${ENV}` substitution, the keys flyway-compat.md lists."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from restore_assets.flyway.errors import FlywayError
from restore_assets.flyway.version import Version

_JAVA_TRIM = "".join(chr(c) for c in range(33))  # String.trim() drops every char <= ' '
_ENV_REF = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
_JDBC = re.compile(
    r"^jdbc:postgresql://(?P<host>\[[^\]]+\]|[^:/?]*)(?::(?P<port>\d+))?/(?P<db>[^?]*)(?:\?(?P<q>.*))?$"
)
DEFAULT_TABLE = "flyway_schema_history"
DEFAULT_BASELINE_DESCRIPTION = "<< Flyway Baseline >>"


def _env_name(setting: str) -> str:
    """Flyway's environment variable for a setting: `sqlMigrationPrefix` is
    FLYWAY_SQL_MIGRATION_PREFIX, `postgresql.transactional.lock`
    FLYWAY_POSTGRESQL_TRANSACTIONAL_LOCK."""
    return "FLYWAY_" + re.sub(r"(?<=[a-z])(?=[A-Z])", "_", setting).replace(".", "_").upper()


def substitute_env(text: str, env: Mapping[str, str]) -> str:
    """`${NAME}` → the environment variable (empty if unset); `${flyway:...}` is left alone."""
    return _ENV_REF.sub(lambda m: env.get(m.group(1), ""), text)


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 == len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u" and re.match(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
            continue
        out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(nxt, nxt))
        i += 2
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """Java `Properties.load` rules: `#`/`!` comments, `=`/`:`/space separators, `\\` continues."""
    props: dict[str, str] = {}
    logical: list[str] = []
    pending = ""
    for raw in re.split(r"\r\n|\r|\n", text):
        line = raw.lstrip(" \t\f")
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    for line in logical:
        key_chars, i = [], 0
        while i < len(line):
            ch = line[i]
            if ch == "\\" and i + 1 < len(line):
                key_chars.append(line[i : i + 2])
                i += 2
                continue
            if ch in "=: \t\f":
                break
            key_chars.append(ch)
            i += 1
        rest = line[i:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        props[_unescape("".join(key_chars))] = _unescape(rest)
    return props


def _bool(props: Mapping[str, str], key: str, default: bool) -> bool:
    value = props.get(key)
    if value is None or value.strip() == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise FlywayError(f"{key}={value!r} must be true or false")


def _list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


@dataclass(frozen=True)
class JdbcUrl:
    host: str
    port: int
    database: str
    params: dict[str, str]


def parse_jdbc_url(url: str) -> JdbcUrl:
    m = _JDBC.match(url.strip())
    if not m:
        raise FlywayError(f"flyway.url {url!r} is not a jdbc:postgresql://host[:port]/database URL")
    return JdbcUrl(
        host=m.group("host").strip("[]") or "localhost",
        port=int(m.group("port") or 5432),
        database=m.group("db"),
        params=dict(parse_qsl(m.group("q") or "")),
    )


@dataclass(frozen=True)
class FlywayConfig:
    url: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    schemas: tuple[str, ...] = ()
    default_schema: str | None = None
    table: str = DEFAULT_TABLE
    locations: tuple[str, ...] = ("filesystem:sql",)
    baseline_on_migrate: bool = False
    baseline_version: str = "1"
    baseline_description: str = DEFAULT_BASELINE_DESCRIPTION
    installed_by: str | None = None
    encoding: str = "UTF-8"
    placeholders: Mapping[str, str] = field(default_factory=dict)
    placeholder_replacement: bool = True
    out_of_order: bool = False
    validate_on_migrate: bool = True
    mixed: bool = False
    create_schemas: bool = True
    # flyway.postgresql.transactional.lock (default true in Flyway 10): the lock is held in a
    # transaction around each migration's history write, so a failed migration leaves no row.
    transactional_lock: bool = True
    skip_default_callbacks: bool = False
    target: str | None = None  # a version text; None: the latest
    # (type, state) pairs of flyway.ignoreMigrationPatterns, e.g. ("*", "future")
    ignore_migration_patterns: tuple[tuple[str, str], ...] = (("*", "future"),)
    base_dir: Path = field(default_factory=Path.cwd)

    def baseline(self) -> Version:
        """flyway.baselineVersion as MigrationVersion.fromVersion reads it. Flyway checks it only
        when it baselines, so the commands call this then, not at load."""
        text = self.baseline_version
        if text.lower() in ("latest", "current", "next"):
            # Flyway 10.17.3 writes "<< Latest Version >>" (etc.) as the row's version, which
            # it then cannot read back: every later command fails on its own history.
            raise FlywayError(
                f"flyway.baselineVersion={text!r} is not a version: Flyway would record "
                f"'<< {text.title()} Version >>' in the history and then fail to read it back. "
                "Give the version the existing schema is at, such as 1 or 0"
            )
        try:
            return Version.parse(text)
        except ValueError:
            raise FlywayError(
                f"Version may only contain 0..9 and . (dot). Invalid version: {text} "
                "(flyway.baselineVersion: give the version the existing schema is at, such as "
                "1 or 0)"
            ) from None

    @property
    def jdbc(self) -> JdbcUrl | None:
        return parse_jdbc_url(self.url) if self.url else None

    def location_dirs(self) -> list[Path]:
        """`filesystem:` locations as folders (relative ones against the working directory, as
        the Flyway CLI resolves them)."""
        dirs = []
        for location in self.locations:
            prefix, _, path = location.partition(":")
            if not path:
                prefix, path = "filesystem", location
            if prefix != "filesystem":
                raise FlywayError(
                    f"location {location!r}: only filesystem: locations are supported here"
                )
            folder = Path(path).expanduser()
            dirs.append(folder if folder.is_absolute() else self.base_dir / folder)
        return dirs


# Flyway settings the engine honours (see config_from_properties), and those that change
# nothing it applies or records (connection retries, reporting, clean, which it never runs).
HONOURED = {
    "url", "user", "password", "schemas", "defaultSchema", "table", "locations",
    "baselineOnMigrate", "baselineVersion", "baselineDescription", "installedBy", "encoding",
    "placeholderReplacement", "outOfOrder", "validateOnMigrate", "mixed", "createSchemas",
    "postgresql.transactional.lock", "skipDefaultCallbacks", "target", "ignoreMigrationPatterns",
}  # fmt: skip
HARMLESS = {
    "driver", "connectRetries", "connectRetriesInterval", "lockRetryCount", "cleanDisabled",
    "outputType", "color", "loggers", "reportEnabled", "reportFilename", "outputQueryResults",
    "failOnMissingLocations", "licenseKey", "workingDirectory", "environment",
    "jarDirs", "outputFile", "configFiles", "configFileEncoding", "kerberosConfigFile",
    "communityDBSupportEnabled", "outputProgress",
}  # fmt: skip
# Settings that change what Flyway applies or records: accepted only at Flyway's default value,
# since the engine does not implement them (a silently ignored one would apply the wrong thing).
DEFAULT_ONLY = {
    "sqlMigrationPrefix": "V",
    "repeatableSqlMigrationPrefix": "R",
    "sqlMigrationSeparator": "__",
    "sqlMigrationSuffixes": ".sql",
    "callbacks": "",
    "resolvers": "",
    "skipDefaultResolvers": "false",
    "group": "false",
    "cherryPick": "",
    "skipExecutingMigrations": "false",
    "placeholderPrefix": "${",
    "placeholderSuffix": "}",
    "placeholderSeparator": ":",
    "scriptPlaceholderPrefix": "FP__",
    "scriptPlaceholderSuffix": "__",
    "initSql": "",
    "cleanOnValidationError": "false",
    "validateMigrationNaming": "false",
    "detectEncoding": "false",
    "executeInTransaction": "true",
    "batch": "false",
    "stream": "false",
    "tablespace": "",
    "undoSqlMigrationPrefix": "U",
    "errorOverrides": "",
    "dryRunOutput": "",
}


# Flyway's FLYWAY_* environment variables: those of honoured settings are read, those of
# refused ones are refused like the settings.
ENV_KEYS = {_env_name(name): f"flyway.{name}" for name in HONOURED}
ENV_REFUSED = {_env_name(name): f"flyway.{name}" for name in DEFAULT_ONLY}


def check_settings(props: Mapping[str, str]) -> None:
    """Refuse any setting the engine would otherwise ignore, naming it."""
    for key, value in props.items():
        name = key.removeprefix("flyway.")
        if not key.startswith("flyway.") or name.startswith(("placeholders.", "jdbcProperties.")):
            continue
        if name in HONOURED or name in HARMLESS:
            continue
        if name in DEFAULT_ONLY:
            default = DEFAULT_ONLY[name]
            if value.strip().lower() == default.lower():
                continue
            raise FlywayError(
                f"{key}={value!r} is not supported by the native Flyway engine (only its default "
                f"{default!r}); remove it, or run real Flyway (FLYWAY_RUNNER=cli or docker)"
            )
        raise FlywayError(
            f"{key} is not a setting the native Flyway engine knows; remove it, or run real "
            "Flyway (FLYWAY_RUNNER=cli or docker)"
        )


def _patterns(value: str) -> tuple[tuple[str, str], ...]:
    """ValidatePattern.fromPattern for each of the comma-separated patterns."""
    patterns = []
    for pattern in _list(value):
        parts = pattern.split(":")
        if len(parts) != 2:
            raise FlywayError(
                f"Invalid pattern '{pattern}'. Pattern must be of the form "
                "<migration_type>:<migration_state>"
            )
        kind, state = (p.strip().lower() for p in parts)
        if kind not in ("*", "repeatable", "versioned"):
            raise FlywayError(
                f"Invalid migration type '{parts[0]}' in flyway.ignoreMigrationPatterns"
            )
        if state not in ("*", "missing", "pending", "ignored", "future"):
            raise FlywayError(
                f"Invalid migration state '{parts[1]}' in flyway.ignoreMigrationPatterns"
            )
        patterns.append((kind, state))
    return tuple(patterns)


def _target(value: str | None) -> str | None:
    """flyway.target: `latest` (the default) or a version; `current` and `next` are refused."""
    text = (value or "").strip()
    if text == "" or text.lower() == "latest":
        return None
    if text.lower() in ("current", "next"):
        raise FlywayError(
            f"flyway.target={text!r} is not supported by the native Flyway engine (a version or "
            "'latest' is); run real Flyway (FLYWAY_RUNNER=cli or docker) for it"
        )
    try:
        return Version.parse(text.replace("_", ".")).text
    except ValueError:
        raise FlywayError(f"flyway.target={text!r} is not a version") from None


def config_from_properties(props: Mapping[str, str], base_dir: Path) -> FlywayConfig:
    check_settings(props)
    placeholders = {
        k.removeprefix("flyway.placeholders.").lower(): v
        for k, v in props.items()
        if k.startswith("flyway.placeholders.")
    }
    baseline_version = props.get("flyway.baselineVersion", "1").strip() or "1"
    return FlywayConfig(
        url=props.get("flyway.url") or None,
        user=props.get("flyway.user") or None,
        password=props.get("flyway.password") or None,
        schemas=tuple(_list(props.get("flyway.schemas"))),
        default_schema=(props.get("flyway.defaultSchema") or "").strip() or None,
        table=(props.get("flyway.table") or DEFAULT_TABLE).strip(),
        locations=tuple(_list(props.get("flyway.locations"))) or ("filesystem:sql",),
        baseline_on_migrate=_bool(props, "flyway.baselineOnMigrate", False),
        baseline_version=baseline_version.replace("_", "."),
        baseline_description=props.get("flyway.baselineDescription")
        or DEFAULT_BASELINE_DESCRIPTION,
        installed_by=(props.get("flyway.installedBy") or "").strip() or None,
        encoding=(props.get("flyway.encoding") or "UTF-8").strip(),
        placeholders=placeholders,
        placeholder_replacement=_bool(props, "flyway.placeholderReplacement", True),
        out_of_order=_bool(props, "flyway.outOfOrder", False),
        validate_on_migrate=_bool(props, "flyway.validateOnMigrate", True),
        mixed=_bool(props, "flyway.mixed", False),
        create_schemas=_bool(props, "flyway.createSchemas", True),
        transactional_lock=_bool(props, "flyway.postgresql.transactional.lock", True),
        skip_default_callbacks=_bool(props, "flyway.skipDefaultCallbacks", False),
        target=_target(props.get("flyway.target")),
        ignore_migration_patterns=_patterns(
            props.get("flyway.ignoreMigrationPatterns", "*:future")
        ),
        base_dir=base_dir,
    )


def flyway_conf_lines(text: str) -> str:
    """ConfigUtils.loadConfigurationFromString's preparation before Properties.load (Flyway
    10.17.3): lines trimmed and every backslash doubled, so values are literal; a trailing
    backslash stays a continuation when the next line has content that is not a new
    `flyway.` setting."""
    lines = text.replace("\r\n", "\n").split("\n")
    out = []
    for i, raw in enumerate(lines):
        line = raw.strip(_JAVA_TRIM).replace("\\", "\\\\")
        if line.endswith("\\\\") and i < len(lines) - 1:
            following = lines[i + 1]
            is_setting = following.strip(_JAVA_TRIM).startswith("flyway.") and "=" in following
            if following and not is_setting:
                line = line[:-2] + "\\"
        out.append(line)
    return "\n".join(out) + "\n"


def read_conf_file(path: Path, env: Mapping[str, str]) -> dict[str, str]:
    """The settings in a flyway.conf, read as Flyway reads them, `${ENV}` filled in."""
    try:  # links followed as Flyway follows them (a ConfigMap's); a FIFO or device never blocks
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FlywayError(f"flyway conf {path}: not a regular file (a FIFO or device)")
            os.set_blocking(fd, True)
            text = handle.read().decode("utf-8")
    except OSError as exc:
        raise FlywayError(f"cannot read flyway conf {path}: {exc.strerror}") from None
    # ${ENV} is filled into the parsed values (Flyway fills it into the text first, so its
    # Properties.load would eat a backslash of a password set in the environment).
    return {k: substitute_env(v, env) for k, v in parse_properties(flyway_conf_lines(text)).items()}


def load_conf(
    path: Path | None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
    working_dir: Path | None = None,
) -> FlywayConfig:
    """Read `path` (None: defaults only), then FLYWAY_* env vars, then explicit overrides.
    Relative locations start at `working_dir` (Flyway's -workingDirectory), else the process's
    working directory: like the Flyway CLI, not the conf's folder."""
    env = dict(os.environ if env is None else env)
    props: dict[str, str] = {}
    base_dir = (working_dir or Path.cwd()).resolve()
    if path is not None:
        props = read_conf_file(path, env)
    for name, key in ENV_KEYS.items():
        if env.get(name):
            props[key] = env[name]
    for name, value in env.items():
        # Flyway's FLYWAY_<SETTING> for the settings refused above, so they are refused too.
        key = ENV_REFUSED.get(name)
        if key and value:
            props[key] = value
        elif name.startswith("FLYWAY_PLACEHOLDERS_") and len(name) > len("FLYWAY_PLACEHOLDERS_"):
            props[f"flyway.placeholders.{name.removeprefix('FLYWAY_PLACEHOLDERS_').lower()}"] = (
                value
            )
    props.update(overrides or {})
    return config_from_properties(props, base_dir)
