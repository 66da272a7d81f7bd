"""The one redaction rule (restore_assets/redaction.py): secrets masked, row-quoting lines of a
database error dropped, whatever the text around them."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from restore_assets.redaction import REDACTED, RedactingFilter, Redactor, first_line
from restore_assets.settings import load_settings
from restore_assets_tests.conftest import EXTERNAL_PASSWORD, run_cli

_SECRET = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() and "\n" not in s)
_TEXT = st.text(max_size=60)


@given(secrets=st.lists(_SECRET, min_size=1, max_size=3), parts=st.lists(_TEXT, max_size=5))
def test_no_secret_survives_whatever_surrounds_it(secrets, parts):
    # Each secret between arbitrary texts, once or several times, secrets overlapping included.
    text = "".join(part + secrets[i % len(secrets)] for i, part in enumerate(parts or [""]))
    redacted = Redactor(secrets)(text)
    for secret in secrets:
        if secret not in REDACTED:  # '*' or '**' are in the mask itself
            assert secret not in redacted


@given(before=_TEXT, after=_TEXT)
def test_a_password_containing_another_is_masked_whole(before, after):
    # Longest first: masking "abc" inside "abcdef" first would leave "def" showing.
    redacted = Redactor(["abc", "abcdef9"])(f"{before}[abcdef9]{after}")
    assert f"[{REDACTED}]" in redacted and "def9" not in redacted.replace(before + after, "")


@given(
    lines=st.lists(st.text(alphabet=st.characters(exclude_characters="\r\n"), max_size=30)),
    quoted=st.text(alphabet=st.characters(exclude_characters="\r\n"), max_size=30),
    kind=st.sampled_from(["DETAIL", "CONTEXT", "  DETAIL", "\tCONTEXT"]),
    where=st.integers(min_value=0, max_value=10),
)
def test_detail_and_context_lines_are_dropped_and_nothing_else(lines, quoted, kind, where):
    kept = [line for line in lines if not line.lstrip(" \t").startswith(("DETAIL:", "CONTEXT:"))]
    text = kept[:where] + [f"{kind}: {quoted}"] + kept[where:]
    assert Redactor()("".join(f"{line}\n" for line in text)) == "".join(f"{k}\n" for k in kept)
    assert Redactor()(f"first\n{kind}: {quoted}") == "first\n"  # last line, no newline


def test_a_database_error_keeps_its_message_and_loses_the_row():
    error = (
        'ERROR:  duplicate key value violates unique constraint "d_users_pkey"\n'
        "DETAIL:  Key (userid)=(1.3.6.1.4.1.9414.72.103:yamada) already exists.\n"
        'CONTEXT:  COPY d_users, line 3: "3\tyamada\tpw-s3cret"\n'
        "connecting with password pw-s3cret"
    )
    assert Redactor(["pw-s3cret"])(error) == (
        'ERROR:  duplicate key value violates unique constraint "d_users_pkey"\n'
        f"connecting with password {REDACTED}"
    )
    assert first_line(ValueError(error)).startswith("ERROR:  duplicate key")
    assert first_line(ValueError("")) == "ValueError"


def test_empty_secrets_mask_nothing():
    assert Redactor([None, ""])("a password-free line") == "a password-free line"


def test_the_settings_build_the_redactor_from_their_passwords():
    settings = load_settings(
        {"POSTGRES_HOST": "db", "POSTGRES_PASSWORD": "leg-pw", "SECRETS_ZIP_PASSWORD": "zip-pw"}
    )
    redact = settings.redactor
    assert redact("leg-pw zip-pw") == f"{REDACTED} {REDACTED}"


def test_the_logging_filter_redacts_message_and_arguments():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "login %s failed", ("pw1",), None)
    assert RedactingFilter(Redactor(["pw1"])).filter(record) is True
    assert record.getMessage() == f"login {REDACTED} failed"


# A new message path, end to end: a real run (CLI → Dagster job → embedded and external
# PostgreSQL) where a runbook function says the external target's password in a way no code
# redacts by hand. The boundaries alone must keep it out of everything that leaves the process.
_ROW = "DETAIL:  Key (userid)=(1.3.6.1.4.1.9414.72.103:yamada-taro) already exists."


def _new_message_path(case: str, monkeypatch) -> None:
    import restore_assets.assets.legacy as legacy_asset
    import restore_assets.assets.side_run as side_run
    from restore_assets.errors import DatabaseUnusable

    said = f"connecting with password {EXTERNAL_PASSWORD}"
    verify, restore = legacy_asset.verify_legacy, side_run.restore_and_record

    def verify_legacy(target, settings, evidence):
        if case == "restore_error":  # a stop of ours: RestoreError → Failure, exit 1
            raise DatabaseUnusable(f"{said}\n{_ROW}")
        if case == "unexpected":  # a bug: any exception → UnexpectedError, exit 1
            raise ValueError(f"{said}\n{_ROW}")
        verification = verify(target, settings, evidence)  # "said": logged, and in metadata
        verification.facts[said] = _ROW
        check = verification.check("row_counts")
        object.__setattr__(check, "detail", f"{check.detail}; {said}")
        evidence.write("note.log", said)
        return verification

    def restore_and_record(step, settings, target, files, evidence, log, *rest):
        log(said)
        return restore(step, settings, target, files, evidence, log, *rest)

    def table(rows):  # outside stops.recorded: the step's own boundary must catch it
        raise ValueError(f"{said}\n{_ROW}")

    monkeypatch.setattr(legacy_asset, "verify_legacy", verify_legacy)
    monkeypatch.setattr(side_run, "restore_and_record", restore_and_record)
    if case == "outside":
        monkeypatch.setattr(side_run, "table", table)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, verbose, code",
    [
        ("restore_error", False, 1),
        ("unexpected", True, 1),
        ("outside", True, 1),
        ("said", False, 0),
    ],
)
def test_a_new_message_path_cannot_leak_the_password(
    case, verbose, code, secrets_dir, artifacts_dir, external_legacy, monkeypatch
):
    from dagster import serialize_value

    from restore_assets.jobs import prepare_instance

    _new_message_path(case, monkeypatch)
    done = run_cli("run", "--only", "legacy", "--allow-reset", *(["--verbose"] * verbose))
    printed = done.stdout + done.stderr  # stderr: the console log of the in-process run
    assert done.returncode == code, printed
    assert f"connecting with password {REDACTED}" in printed  # the path was taken, and masked

    settings = load_settings()
    instance = prepare_instance(settings.paths)
    run = instance.get_runs(limit=1)[0]
    stored = serialize_value(list(instance.all_logs(run.run_id)))
    assert f"connecting with password {REDACTED}" in stored
    evidence = "".join(
        p.read_text(errors="replace") for p in artifacts_dir.rglob("*") if p.is_file()
    )
    assert evidence  # the run wrote its evidence
    for where, text in {"CLI": printed, "Dagster": stored, "evidence": evidence}.items():
        at = text.find(EXTERNAL_PASSWORD)
        assert at < 0, f"{where}: …{text[max(0, at - 600) : at + 100]}…"
        assert "yamada-taro" not in text, where  # the DETAIL line's row


def test_a_bug_in_a_command_prints_its_traceback_redacted(external_legacy, monkeypatch):
    """Not a RestoreError (a bug) in a command the CLI runs without Dagster: the traceback is
    still shown, and exit 1, but never the password it carries."""
    import restore_assets.runbook.status as status

    def status_lines(settings):
        raise ValueError(f"connecting with password {EXTERNAL_PASSWORD}")

    monkeypatch.setattr(status, "status_lines", status_lines)
    done = run_cli("status")
    assert done.returncode == 1, done
    assert "Traceback" in done.stderr and "in status_lines" in done.stderr
    said = f"ERROR: unexpected error (ValueError): connecting with password {REDACTED}"
    assert said in done.stderr
    assert EXTERNAL_PASSWORD not in done.stdout + done.stderr
