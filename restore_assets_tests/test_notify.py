"""Notifications to Ops (issue 21 item 1): the events, sent once, delivered to real receivers on
127.0.0.1 (an HTTP server for the webhook, aiosmtpd for mail), never failing the caller."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from restore_assets.runbook import notify
from restore_assets.runbook.ops_request import record_request
from restore_assets.settings import LEGACY_SEED_FILE, MODERN_SCHEMA_FILE, load_settings
from restore_assets_tests.fixtures.receivers import WEBHOOK_TOKEN, closed_port_url

SMTP_PASSWORD = "Smtp-pw-8Yt-never-print"
DB_PASSWORD = "Db-pw-2Lm-never-print"


def _settings(tmp_path, webhook=None, mailbox=None, **extra):
    env = {
        "SECRETS_DIR": str(tmp_path / "Secrets"),
        "RESTORE_STATE_DIR": str(tmp_path / "state"),
        "RESTORE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "POSTGRES_HOST": "db.example.test",
        "POSTGRES_PASSWORD": DB_PASSWORD,
        "RESTORE_SMTP_PASSWORD": SMTP_PASSWORD,
    }
    if webhook is not None:
        env["RESTORE_NOTIFY_WEBHOOK_URL"] = webhook if isinstance(webhook, str) else webhook.url
    if mailbox is not None:
        env |= {
            "RESTORE_NOTIFY_EMAIL_TO": "ops-db@example.test, dba@example.test",
            "RESTORE_SMTP_HOST": "127.0.0.1",
            "RESTORE_SMTP_PORT": str(mailbox.port),
            "RESTORE_SMTP_STARTTLS": "false",
        }
    return load_settings({**env, **extra})


MISSING = {LEGACY_SEED_FILE: "missing", MODERN_SCHEMA_FILE: "mode 0644 (must be 0600)"}


def test_a_blocked_event_is_the_ops_request_and_is_sent_once(tmp_path, webhook, mailbox):
    settings = _settings(tmp_path, webhook, mailbox)
    event = notify.blocked_event(settings, MISSING, "artifacts/parity-manual/db-restore/X")
    first = notify.send(settings, event)
    assert [d.delivered for d in first] == [True, True]
    for _ in range(3):  # a sensor ticking every 30 s: the same content is not said again
        assert notify.send(settings, notify.blocked_event(settings, MISSING)) == []
    (text,) = webhook.texts
    (mail,) = mailbox.texts
    assert mailbox.messages[0]["To"] == "ops-db@example.test, dba@example.test"
    for said in (text, mail):
        assert "BLOCKED: target default" in said
        assert f"{LEGACY_SEED_FILE}  [Legacy seed" in said and "(missing)" in said
        assert "Gate #40" in said and "Deadline:" in said
        assert "artifacts/parity-manual/db-restore/X" in said
        assert DB_PASSWORD not in said and SMTP_PASSWORD not in said
    log = (tmp_path / "artifacts/parity-manual/db-restore/notifications.log").read_text()
    assert log.count("delivered") == 2 and "blocked target=default" in log
    assert WEBHOOK_TOKEN not in log  # the webhook is named by its host only
    state = tmp_path / "state" / "ops" / "notifications.json"
    assert state.stat().st_mode & 0o777 == 0o600


def test_what_was_sent_is_remembered_across_processes_and_forgotten_when_resolved(
    tmp_path, webhook
):
    settings = _settings(tmp_path, webhook)
    event = notify.blocked_event(settings, MISSING)
    notify.send(settings, event)
    again = _settings(tmp_path, webhook)  # a restarted daemon reads the same state file
    assert notify.send(again, notify.blocked_event(again, MISSING)) == []
    other = notify.blocked_event(again, {LEGACY_SEED_FILE: "missing"})  # new content: told
    assert [d.delivered for d in notify.send(again, other)] == [True]
    notify.forget(again, ["blocked"])  # the Secrets came; missing again later is news
    assert [d.delivered for d in notify.send(again, event)] == [True]
    assert len(webhook.texts) == 3


@pytest.mark.slow  # the pause between attempts (1 s) in each of the rounds
def test_an_undeliverable_webhook_is_bounded_recorded_and_retried_a_few_times(tmp_path):
    url = closed_port_url()
    settings = _settings(tmp_path, url)
    event = notify.failed_event(settings, "r" * 36, "legacy/schema", "psql failed", None)
    started = time.monotonic()
    (delivery,) = notify.send(settings, event)
    assert not delivery.delivered and "Connection refused" in delivery.detail
    assert time.monotonic() - started < notify.ATTEMPTS * (notify.TIMEOUT_SECONDS + 2)
    for _ in range(5):
        notify.send(settings, event)
    log = (tmp_path / "artifacts/parity-manual/db-restore/notifications.log").read_text()
    # bounded: ROUNDS rounds in all, each recorded, then it stops trying
    assert log.count("NOT delivered") == notify.ROUNDS
    assert f"round {notify.ROUNDS}/{notify.ROUNDS}" in log
    assert WEBHOOK_TOKEN not in log and url not in log


@pytest.mark.slow  # the pause between attempts
def test_an_http_500_is_not_delivered_and_a_later_round_delivers(tmp_path, webhook):
    settings = _settings(tmp_path, webhook)
    webhook.status = 500
    event = notify.crashed_event(settings, "c" * 36, "restore_all", "its process is gone")
    (delivery,) = notify.send(settings, event)
    assert not delivery.delivered and "500" in delivery.detail
    webhook.status = 200
    (delivery,) = notify.send(settings, event)
    assert delivery.delivered
    assert notify.send(settings, event) == []
    assert len(webhook.received) == notify.ATTEMPTS + 1  # two refused attempts, one accepted
    assert "CRASHED: target default: run cccccccc (restore_all) died" in webhook.texts[-1]
    assert "Retry:" in webhook.texts[-1]


def test_notify_on_chooses_the_kinds_and_passed_is_off_by_default(tmp_path, webhook):
    settings = _settings(tmp_path, webhook)
    passed = notify.passed_event(settings, "p" * 36, "db_restore OK", "ev")
    assert notify.send(settings, passed) == []
    only_passed = _settings(tmp_path, webhook, RESTORE_NOTIFY_ON="passed")
    assert [d.delivered for d in notify.send(only_passed, passed)] == [True]
    blocked = notify.blocked_event(only_passed, MISSING)
    assert notify.send(only_passed, blocked) == []
    assert len(webhook.texts) == 1 and "PASSED" in webhook.texts[0]


def test_no_channel_configured_sends_and_records_nothing(tmp_path):
    settings = _settings(tmp_path)
    assert notify.send(settings, notify.blocked_event(settings, MISSING)) == []
    now = dt.datetime.now(dt.UTC)
    notify.tell_about_secrets(settings, {}, "", now)  # what every tick does once files are there
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "state").exists()


def test_a_password_in_an_event_never_reaches_a_receiver(tmp_path, webhook, mailbox):
    settings = _settings(tmp_path, webhook, mailbox)
    reason = f"connection to server failed: password {DB_PASSWORD} / {SMTP_PASSWORD} rejected"
    notify.send(settings, notify.failed_event(settings, "f" * 36, "legacy/schema", reason, "ev"))
    for said in webhook.texts + mailbox.texts + [json.dumps([r["json"] for r in webhook.received])]:
        assert DB_PASSWORD not in said and SMTP_PASSWORD not in said and "********" in said


def test_smtp_login_without_starttls_to_another_host_is_refused_not_sent_in_clear(tmp_path):
    settings = _settings(
        tmp_path,
        RESTORE_NOTIFY_EMAIL_TO="ops@example.test",
        RESTORE_SMTP_HOST="192.0.2.1",  # TEST-NET: refused before any connection
        RESTORE_SMTP_STARTTLS="false",
        RESTORE_SMTP_USER="restore",
    )
    with pytest.raises(ValueError, match="in clear"):
        notify._login_allowed(settings.notify)


def test_waiting_names_since_when(tmp_path, webhook):
    settings = _settings(tmp_path, webhook)
    since = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    record_request(settings, "OPS-4711", now=since)
    event = notify.waiting_event(settings, MISSING, since, since + dt.timedelta(hours=30))
    notify.send(settings, event)
    (text,) = webhook.texts
    assert "WAITING" in text and "Secrets missing since 2026-12-01 09:00 UTC (30 h)" in text
    assert "Already requested: requested 2026-12-01 09:00 UTC, tracking ID OPS-4711" in text
