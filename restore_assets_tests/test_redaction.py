"""The one redaction rule (restore_assets/redaction.py): secrets masked, row-quoting lines of a
database error dropped, whatever the text around them."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from restore_assets.redaction import REDACTED, RedactingFilter, Redactor, first_line
from restore_assets.settings import load_settings

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
