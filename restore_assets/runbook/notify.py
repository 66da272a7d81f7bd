"""Runbook §0/§7: telling Ops/DBA (Slack `#ops-db` or a ticket) what the unattended restore
cannot say by itself — blocked, failed, crashed, still waiting, (optionally) passed.

The events are built here from what the run or the sensor knows, and `send` delivers each one
once: an incoming webhook (`POST {"text": …}`: Slack, Mattermost, Rocket.Chat) and mail
(smtplib; ticket systems ingest it). What was sent is kept in a small state file in the private
state dir (`notifications.json`), not in a sensor cursor: runs, the CLI and the sensor all send,
each in its own process, and none of them must repeat what another one said, across restarts.

A message that cannot be delivered never fails or holds up the restore: each channel is tried
a bounded number of times with a short timeout, at most `ROUNDS` times per event (a later tick
or run tries the channels still undelivered), and every attempt's outcome goes to
`notifications.log` in the evidence root. Text leaves only through the settings' redactor
(passwords, the webhook URL, the SMTP password); an event carries names, paths, reasons and run
ids, never a row.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import smtplib
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from http.client import HTTPException
from urllib.parse import urlsplit

from restore_assets.files import append_private
from restore_assets.runbook.baseline_files import SIDE_FILES, SecretFile
from restore_assets.runbook.evidence import evidence_root
from restore_assets.runbook.ops_request import ops_folder, ops_request, recorded_request
from restore_assets.settings import SIDES, Settings

log = logging.getLogger(__name__)

STATE_FILE = "notifications.json"
LOG_FILE = "notifications.log"  # in the evidence root, next to baseline_search.log
TIMEOUT_SECONDS = 5  # per attempt: a receiver that hangs costs at most this
ATTEMPTS = 2  # per channel and round
ROUNDS = 3  # per event: a later call tries the undelivered channels again, then gives up
KEEP_DAYS = 30  # sent events older than this are forgotten (the file stays small)
TAG = "[restore-assets]"


@dataclass(frozen=True)
class Event:
    """One thing to tell Ops. `content` is what makes two events the same one (a sensor that
    ticks every 30 s with the same missing files says it once)."""

    kind: str  # settings.NOTIFY_KINDS
    target: str
    subject: str
    body: str
    content: str

    @property
    def key(self) -> str:
        text = f"{self.kind}\n{self.target}\n{self.content}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    @property
    def text(self) -> str:
        return f"{self.subject}\n\n{self.body}"


def _subject(kind: str, target: str, what: str) -> str:
    return f"{TAG} {kind.upper()}: target {target}: {what}"


def blocked_event(
    settings: Settings, problems: Mapping[str, str], evidence: str | None = None
) -> Event:
    """Secrets missing or refused (`problems`: relpath -> why): the runbook §0 request to Ops
    (target, files, purpose Gate #40, deadline, evidence path), with its recorded tracking ID."""
    sides = [s for s in SIDES if any(rel in problems for rel in SIDE_FILES[s])]
    files = [
        SecretFile(rel, settings.paths.secrets_dir / rel, problems=[why])
        for rel, why in sorted(problems.items())
    ]
    body = ops_request(settings, sides, files, evidence)
    if (request := recorded_request(settings)) is not None:
        body += f"Already requested: {request.line()}\n"
    what = ", ".join(f"{rel} ({why})" for rel, why in sorted(problems.items()))
    return Event(
        "blocked",
        settings.target_name,
        _subject("blocked", settings.target_name, "Secrets not usable, nothing was touched"),
        body,
        content=f"{settings.paths.secrets_dir}\n{what}",  # another store is another story
    )


def waiting_event(
    settings: Settings, problems: Mapping[str, str], since: dt.datetime, now: dt.datetime
) -> Event:
    """The runbook's stall: Secrets missing for longer than RESTORE_NOTIFY_WAITING_HOURS."""
    hours = (now - since).total_seconds() / 3600
    blocked = blocked_event(settings, problems)
    what = f"Secrets missing since {since:%Y-%m-%d %H:%M} UTC ({hours:.0f} h)"
    return Event(
        "waiting",
        settings.target_name,
        _subject("waiting", settings.target_name, what),
        f"The restore is still waiting (Secrets 未取得): {what}.\n\n{blocked.body}",
        content=f"{since.isoformat()}\n{blocked.content}",
    )


def failed_event(
    settings: Settings, run_id: str, step: str, reason: str, evidence: str | None
) -> Event:
    """A step or a gate's sub-check failed: which, why, and where the evidence is."""
    return Event(
        "failed",
        settings.target_name,
        _subject("failed", settings.target_name, f"{step} failed (run {run_id[:8]})"),
        "\n".join(
            [
                f"Run: {run_id}",
                f"Failed: {step}",
                f"Reason: {reason}",
                f"Evidence: {evidence or '(none written)'}",
                "What to do: read the evidence's README.md and gate_report.md; once the cause "
                "is fixed, deliver the files again or `restore-assets run`.",
            ]
        )
        + "\n",
        content=run_id,
    )


def crashed_event(
    settings: Settings, run_id: str, job: str, reason: str, retry: str | None = None
) -> Event:
    """A run whose process died (SIGKILL, OOM, reboot), and whether it is being retried
    (`retry`: what was decided; None when the caller cannot know)."""
    retried = retry or (
        "not decided here: the Secrets sensor's next look says whether this content is "
        "requested again (its status in the UI, and baseline_search.log)"
    )
    return Event(
        "crashed",
        settings.target_name,
        _subject("crashed", settings.target_name, f"run {run_id[:8]} ({job}) died"),
        f"Run: {run_id} ({job})\nWhat happened: {reason}\nRetry: {retried}\n",
        content=run_id,
    )


def passed_event(settings: Settings, run_id: str, summary: str, evidence: str | None) -> Event:
    return Event(
        "passed",
        settings.target_name,
        _subject("passed", settings.target_name, f"gates passed (run {run_id[:8]})"),
        f"Run: {run_id}\nGates: {summary}\nEvidence: {evidence or '(none written)'}\n",
        content=run_id,
    )


@dataclass(frozen=True)
class Delivery:
    channel: str  # "webhook <host>" or "mail <host>"
    delivered: bool
    detail: str  # "HTTP 200", or why not


def channels(settings: Settings) -> dict[str, Callable[[Settings, Event], str]]:
    """The configured channels: name -> a function that delivers once (raising on failure)."""
    notify = settings.notify
    found: dict[str, Callable[[Settings, Event], str]] = {}
    if notify.webhook_url is not None:
        host = urlsplit(notify.webhook_url.get_secret_value()).hostname
        found[f"webhook {host}"] = _post_webhook
    if notify.email_to:
        found[f"mail {notify.smtp_host or '(RESTORE_SMTP_HOST unset)'}"] = _send_mail
    return found


def send(settings: Settings, event: Event, now: dt.datetime | None = None) -> list[Delivery]:
    """Deliver `event` once to every configured channel, unless RESTORE_NOTIFY_ON leaves its
    kind out or it was delivered before. Never raises for a receiver: the outcome is returned,
    logged and appended to `notifications.log`."""
    now = now or dt.datetime.now(dt.UTC)
    found = channels(settings)
    if event.kind not in settings.notify.on or not found:
        return []
    try:
        deliveries, round_ = _send_once(settings, event, found, now)
    except OSError as exc:  # the state file: unsure what was sent, so nothing is sent again
        log.error("notification %s not sent: %s", event.kind, settings.redactor(str(exc)))
        deliveries, round_ = [Delivery("state", False, f"state file: {exc}")], 0
    if deliveries:
        _record(settings, event, deliveries, round_, now)
    return deliveries


def _send_once(settings: Settings, event: Event, found, now: dt.datetime):
    with _sent_state(settings) as state:
        entry = state.setdefault(
            event.key, {"kind": event.kind, "target": event.target, "rounds": 0, "done": []}
        )
        todo = {name: fn for name, fn in found.items() if name not in entry["done"]}
        if not todo or entry["rounds"] >= ROUNDS:
            return [], entry["rounds"]
        entry["rounds"] += 1
        entry["at"] = now.isoformat(timespec="seconds")
        # Held while delivering (bounded: ATTEMPTS x TIMEOUT_SECONDS per channel), so a run and
        # the sensor never both send the same event.
        deliveries = [_deliver(settings, name, fn, event) for name, fn in todo.items()]
        entry["done"] += [d.channel for d in deliveries if d.delivered]
    return deliveries, entry["rounds"]


def tell_about_secrets(
    settings: Settings, problems: Mapping[str, str], since: str, now: dt.datetime
) -> None:
    """The sensor's look, for Ops: blocked once per content while files are missing or
    refused, still waiting once per stall past RESTORE_NOTIFY_WAITING_HOURS, and both
    forgotten once the files are there (`since` is "" then)."""
    if not problems:
        forget(settings, ("blocked", "waiting"))
        return
    send(settings, blocked_event(settings, problems), now)
    started = dt.datetime.fromisoformat(since)
    if now - started >= dt.timedelta(hours=settings.notify.waiting_hours):
        send(settings, waiting_event(settings, problems, started, now), now)


def forget(settings: Settings, kinds: Iterable[str]) -> None:
    """The cause is gone (the Secrets arrived): the next time it happens is told again."""
    if not channels(settings):
        return  # nothing was ever sent: no state to keep (and no folder made every tick)
    kinds = set(kinds)
    with _sent_state(settings) as state:  # raises OSError: the callers' guard logs it
        for key in [
            k
            for k, v in state.items()
            if v.get("kind") in kinds and v.get("target") == settings.target_name
        ]:
            del state[key]


def _deliver(settings: Settings, name: str, fn, event: Event) -> Delivery:
    redact = settings.redactor
    detail = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return Delivery(name, True, fn(settings, event))
        # URLError and ssl errors are OSErrors; a garbled HTTP answer is an HTTPException.
        except (OSError, HTTPException, smtplib.SMTPException, ValueError) as exc:
            detail = redact(f"{type(exc).__name__}: {exc}")
            log.warning("notification %s to %s, attempt %d: %s", event.kind, name, attempt, detail)
            if attempt < ATTEMPTS:
                time.sleep(attempt)
    return Delivery(name, False, detail)


def _post_webhook(settings: Settings, event: Event) -> str:
    url = settings.notify.webhook_url.get_secret_value()
    data = json.dumps({"text": settings.redactor(event.text)}).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
        return f"HTTP {response.status}"  # urlopen raises HTTPError for 4xx/5xx


def _send_mail(settings: Settings, event: Event) -> str:
    notify = settings.notify
    if not notify.smtp_host:
        raise ValueError("RESTORE_NOTIFY_EMAIL_TO is set but RESTORE_SMTP_HOST is not: set it")
    message = EmailMessage()
    message["Subject"] = settings.redactor(event.subject)
    message["From"] = notify.smtp_from
    message["To"] = ", ".join(notify.email_to)
    message.set_content(settings.redactor(event.body))
    _login_allowed(notify)
    with smtplib.SMTP(notify.smtp_host, notify.smtp_port, timeout=TIMEOUT_SECONDS) as smtp:
        if notify.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if notify.smtp_user:
            password = notify.smtp_password.get_secret_value() if notify.smtp_password else ""
            smtp.login(notify.smtp_user, password)
        refused = smtp.send_message(message)
    return f"accepted for {len(notify.email_to) - len(refused)} of {len(notify.email_to)}"


def _login_allowed(notify) -> None:
    """A password goes to the mail server only through STARTTLS, or to this very machine."""
    if notify.smtp_user and not notify.smtp_starttls and not _loopback(notify.smtp_host):
        raise ValueError(
            "RESTORE_SMTP_PASSWORD would cross the network in clear: set RESTORE_SMTP_STARTTLS="
            "true (or send through a relay on this machine)"
        )


def _loopback(host: str) -> bool:
    try:
        return all(
            info[4][0].startswith("127.") or info[4][0] == "::1"
            for info in socket.getaddrinfo(host, None)
        )
    except OSError:
        return False


@contextmanager
def _sent_state(settings: Settings) -> Iterator[dict[str, dict]]:
    """The state file, read and written under an exclusive lock (files.py: a private folder,
    a lock file that is this user's own, an atomic 0600 write)."""
    with ops_folder(settings) as folder:
        lock = folder.lock_file("notifications.lock")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with folder.open_read(STATE_FILE) as handle:
                    state = json.load(handle)
            except FileNotFoundError:
                state = {}
            except ValueError:
                state = {}  # unreadable: at worst an event is told once more
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) == before:
                return  # a tick that sent nothing writes nothing
            cutoff = (dt.datetime.now(dt.UTC) - dt.timedelta(days=KEEP_DAYS)).isoformat()
            kept = {k: v for k, v in state.items() if v.get("at", cutoff) >= cutoff}
            data = json.dumps(kept, indent=1, sort_keys=True).encode()
            folder.write(STATE_FILE, lambda out: out.write(data))
        finally:
            os.close(lock)


def _record(
    settings: Settings, event: Event, deliveries: list[Delivery], round_: int, now: dt.datetime
) -> None:
    """One line per channel in `notifications.log` (evidence root): what was told, to whom,
    and whether it got through. A log that cannot be written is logged, never raised."""
    lines = []
    for d in deliveries:
        outcome = "delivered" if d.delivered else f"NOT delivered (round {round_}/{ROUNDS})"
        lines.append(
            f"{now:%Y-%m-%dT%H:%M:%SZ} {event.kind} target={event.target} {d.channel}: "
            f"{outcome}: {d.detail} — {event.subject}"
        )
    text = settings.redactor("\n".join(lines) + "\n")
    for line in text.splitlines():
        (log.info if "NOT delivered" not in line else log.warning)("%s", line)
    try:
        root = evidence_root(settings)
        append_private(root / LOG_FILE, text, root=settings.paths.artifacts_dir)
    except OSError as exc:
        log.error("notifications.log could not be written: %s", exc)
