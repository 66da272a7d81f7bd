"""Flyway settings the engine cannot honour are refused by name, from flyway.conf and from
Flyway's FLYWAY_* environment variables alike; FLYWAY_PLACEHOLDERS_* are honoured."""

from __future__ import annotations

import pytest

from restore_assets.flyway import FlywayError
from restore_assets.flyway.conf import load_conf


def test_conf_settings_are_refused_by_name(tmp_path):
    conf = tmp_path / "flyway.conf"
    conf.write_text("flyway.url=jdbc:postgresql://h/db\nflyway.callbacks=com.example.Audit\n")
    with pytest.raises(FlywayError, match=r"flyway\.callbacks='com\.example\.Audit'"):
        load_conf(conf, env={})
    conf.write_text("flyway.url=jdbc:postgresql://h/db\nflyway.cleanDisabled=false\n")
    assert load_conf(conf, env={}).url == "jdbc:postgresql://h/db"  # harmless: never cleans


def test_environment_settings_are_refused_or_honoured():
    with pytest.raises(FlywayError, match=r"flyway\.target='next'"):
        load_conf(None, env={"FLYWAY_TARGET": "next"})
    assert load_conf(None, env={"FLYWAY_TARGET": "5_1"}).target == "5.1"
    assert load_conf(None, env={"FLYWAY_SKIP_DEFAULT_CALLBACKS": "true"}).skip_default_callbacks
    with pytest.raises(FlywayError, match=r"flyway\.sqlMigrationPrefix"):
        load_conf(None, env={"FLYWAY_SQL_MIGRATION_PREFIX": "M"})
    config = load_conf(None, env={"FLYWAY_PLACEHOLDERS_APP_NAME": "dolphin"})
    assert config.placeholders == {"app_name": "dolphin"}
    assert load_conf(None, env={"FLYWAY_TARGET": "latest"}).target is None
