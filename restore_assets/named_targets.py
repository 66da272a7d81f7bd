"""The targets (issue 12, issue 19): several Legacy/Modernized pairs — clinics, parity, staging —
from a `targets.yaml` whose path is `RESTORE_TARGETS`; without it, one target named `default`,
read from the environment. Either way there is one map of targets and one code path: every run
names its target (the Dagster partition), every target has its own Secrets root, run keys and
lock. Both RESTORE_TARGETS and the variables password_env names are read like every setting
(`.env` too, the environment winning): from the `Settings` they came with.

Each target is a whole `Settings`: the environment's, with that target's name, Secrets sub-root,
databases, Flyway conf and optional overrides. Everything downstream (intake, restore, Flyway,
gates, evidence) takes a `Settings`. Passwords are named by environment variable only, never
written in the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from restore_assets.errors import ConfigError, RestoreError
from restore_assets.pg.database import Database
from restore_assets.settings import (
    SIDES,
    DatabaseSettings,
    Settings,
    SyncTables,
    load_settings,
)

TARGETS_VARIABLE = "RESTORE_TARGETS"
# Whole name (fullmatch: `$` would let a trailing newline through): what a Dagster partition
# key, a folder and a run key can all carry.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class _Side(BaseModel):
    """One database of a target; no host = the embedded server."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    db: Annotated[str, Field(min_length=1, max_length=63)]
    user: Annotated[str, Field(min_length=1, max_length=63)] = "opendolphin"
    password_env: str | None = None
    sslmode: str | None = None
    sslrootcert: Path | None = None


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secrets_dir: Path
    legacy: _Side
    modernized: _Side
    flyway_conf: Path | None = None
    flyway_working_directory: Path | None = None  # where its conf's relative locations start
    legacy_expected_tables: list[str] | None = None
    modern_expected_tables: list[str] | None = None
    sync_tables: SyncTables | None = None  # the same rule as RESTORE_SYNC_TABLES
    facility_api_url: str | None = None


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    targets: dict[str, _Target]

    @field_validator("targets")
    @classmethod
    def _names(cls, targets: dict[str, _Target]) -> dict[str, _Target]:
        if not targets:
            raise ValueError("lists no target")
        for name in targets:
            if not _NAME.fullmatch(name):
                raise ValueError(
                    f"target name {name!r}: use lower-case letters, digits, '-' and '_' "
                    "(it names partitions, folders and run keys)"
                )
        return targets


def settings_for(target: str, targets: dict[str, Settings] | None = None) -> Settings:
    """The settings of one run's target (its partition): named in targets.yaml, or `default`
    without RESTORE_TARGETS."""
    targets = load_targets(load_settings()) if targets is None else targets
    if target not in targets:
        raise ConfigError(f"no target named {target!r} (known: {', '.join(targets)})")
    return targets[target]


def chosen_targets(base: Settings, target: str | None, every: bool) -> dict[str, Settings]:
    """What `run --target NAME` / `run --all` / plain `run` mean: the targets to run. Plain
    `run` needs no name without RESTORE_TARGETS; with it, a run never guesses."""
    targets = load_targets(base)
    if (target or every) and not labelled(base):
        raise ConfigError(f"--target/--all need {TARGETS_VARIABLE} (the path of a targets.yaml)")
    if target:
        return {target: settings_for(target, targets)}
    if every or not labelled(base):
        return targets
    raise ConfigError(
        f"{TARGETS_VARIABLE} lists {len(targets)} target(s) ({', '.join(targets)}): "
        "choose one (`run --target NAME`, or `run --all`)"
    )


def load_targets(base: Settings) -> dict[str, Settings]:
    """Every target as its own `Settings`: targets.yaml's, or `{"default": base}` when
    RESTORE_TARGETS is unset. Any problem: `ConfigError` with one line per bad field."""
    path = base.targets_file
    if path is None:
        return {base.target_name: base}
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"{TARGETS_VARIABLE}={str(path)!r}: cannot read it ({exc.strerror})"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    try:
        parsed = _File.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        raise ConfigError("\n".join(_explain(path, error) for error in exc.errors())) from None
    problems: list[str] = []
    named = {
        name: _settings(base, name, target, path.parent, problems)
        for name, target in parsed.targets.items()
    }
    problems += _shared_databases(named)
    if problems:
        raise ConfigError("\n".join(f"{path}: {p}" for p in problems))
    return named


def labelled(settings: Settings) -> bool:
    """Whether this target's output, evidence and log lines carry its name: targets of a
    targets.yaml do; the environment's `default` prints and files exactly as it always has."""
    return settings.targets_file is not None


def _explain(path: Path, error) -> str:
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden" and error["loc"][-1] == "password":
        return (
            f"{path}: {where}: passwords are never written in the file; name the environment "
            "variable that holds it with password_env"
        )
    if error["type"] == "extra_forbidden":
        return f"{path}: {where}: unknown field"
    return f"{path}: {where}: {error['msg']}"


def _settings(
    base: Settings,
    name: str,
    target: _Target,
    folder: Path,
    problems: list[str],
) -> Settings:
    def side(side: str) -> DatabaseSettings:
        spec: _Side = getattr(target, side)
        password = None
        if spec.password_env:
            password = base.variables.get(spec.password_env)
            if not password:
                problems.append(
                    f"targets.{name}.{side}.password_env: {spec.password_env} is not set"
                )
        elif spec.host:
            problems.append(
                f"targets.{name}.{side}: an external server needs password_env (the name of "
                "the environment variable holding its password)"
            )
        return DatabaseSettings(
            side=side,
            host=spec.host,
            port=spec.port,
            dbname=spec.db,
            user=spec.user,
            password=password,
            sslmode=spec.sslmode or getattr(base, side).sslmode,
            sslrootcert=spec.sslrootcert or getattr(base, side).sslrootcert,
            origin=f"targets.yaml targets.{name}.{side}",
        )

    secrets_dir = target.secrets_dir.expanduser()
    flyway: dict[str, object] = {}
    # Paths relative to targets.yaml's folder.
    for field, usable, problem in (
        ("flyway_conf", Path.is_file, "does not exist"),
        ("flyway_working_directory", Path.is_dir, "is not a folder"),
    ):
        if (path := getattr(target, field)) is not None:
            path = path.expanduser()
            path = path if path.is_absolute() else folder / path
            if not usable(path):
                problems.append(f"targets.{name}.{field}: {path} {problem}")
            flyway[field.removeprefix("flyway_")] = path
    checks = {
        field: tuple(value) if isinstance(value, list) else value
        for field in (
            "legacy_expected_tables",
            "modern_expected_tables",
            "sync_tables",
            "facility_api_url",
        )
        if (value := getattr(target, field)) is not None
    }
    return base.with_overrides(
        target_name=name,
        paths={"secrets_dir": base.paths.secrets_dir / secrets_dir},  # an absolute one wins
        legacy=side("legacy"),
        modernized=side("modernized"),
        flyway=flyway,
        checks=checks,
    )


def refuse_a_database_of_another_target(db: Database, settings: Settings) -> None:
    """Before a run touches `db`: refuse it when another target's database is the same one by
    the servers' own word (`Database.identity`) — `127.0.0.1` and `localhost`, or two names of
    one host, pass the text check of `load_targets`. A server that cannot be reached now has no
    identity to compare and is passed over, as an embedded server never created."""
    mine = db.identity() if labelled(settings) else None  # `default`: the only target
    if mine is None:
        return
    for name, other in load_targets(settings).items():
        for side in SIDES:
            if (name, side) == (settings.target_name, db.side):
                continue
            theirs = Database(getattr(other, side), other.pg, create_missing=False)
            try:
                same = theirs.identity() == mine
            except RestoreError:
                continue
            if same:
                raise ConfigError(
                    f"targets.{settings.target_name}.{db.side} ({db.describe()}) and "
                    f"targets.{name}.{side} ({theirs.describe()}) are the same database (same "
                    "server, same database oid): two targets restoring into one database would "
                    "drop each other's work"
                )


def _shared_databases(named: dict[str, Settings]) -> list[str]:
    """Two targets restoring into one database would drop each other's work (by their text;
    `refuse_a_database_of_another_target` asks the servers)."""
    seen: dict[tuple, str] = {}
    problems = []
    for name, settings in named.items():
        for side in SIDES:
            t: DatabaseSettings = getattr(settings, side)
            key = (t.host, t.port if t.host else None, t.dbname)
            owner = seen.setdefault(key, f"{name}.{side}")
            if owner != f"{name}.{side}":
                problems.append(f"targets.{name}.{side} and targets.{owner} are the same database")
    return problems
