"""The operators' language: the Japanese catalog is complete and agrees with the code, the
language is chosen as the README says, and the CLI speaks it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from restore_assets import i18n
from restore_assets.errors import ConfigError
from restore_assets.settings import language_of, load_settings

PO = i18n.LOCALE_DIR / "ja" / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"


def _catalog():
    with PO.open("rb") as f:
        return read_po(f, locale="ja")


def _wrapped_in_code() -> set[str]:
    """Every message the code wraps, as `make messages` extracts them (Babel, babel.cfg)."""
    found = extract_from_dir(str(i18n.LOCALE_DIR.parent), method_map=[("**.py", "python")])
    return {m[2] if isinstance(m[2], str) else m[2][0] for m in found}


def test_every_wrapped_message_has_a_japanese_translation():
    catalog = {m.id if isinstance(m.id, str) else m.id[0]: m for m in _catalog() if m.id}
    missing = sorted(_wrapped_in_code() - set(catalog))
    assert not missing, f"not in {PO.name} (run make messages, then translate): {missing}"
    untranslated = sorted(i for i, m in catalog.items() if not m.string or m.fuzzy)
    assert not untranslated, f"untranslated or fuzzy: {untranslated}"


def test_placeholders_are_the_same_in_both_languages():
    import string

    def fields(text: str) -> list[str]:
        return sorted(name for _, name, _, _ in string.Formatter().parse(text) if name is not None)

    for message in _catalog():
        if message.id and isinstance(message.id, str):
            assert fields(message.string) == fields(message.id), message.id


def test_japanese_and_english_come_from_the_catalog():
    try:
        i18n.use("ja")
        assert i18n._("configuration error") == "設定エラー"
        assert i18n.language() == "ja"
        i18n.use("en")
        assert i18n._("configuration error") == "configuration error"
    finally:
        i18n.use("en")


def test_a_language_without_a_compiled_catalog_is_a_configuration_error():
    with pytest.raises(ConfigError, match="make catalogs"):
        i18n.use("fr")
    assert i18n.language() == "en"  # unchanged


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ("en", "default")),
        ({"LANG": "ja_JP.UTF-8"}, ("ja", "LANG=ja_JP.UTF-8")),
        ({"LANG": "ja_JP.UTF-8", "LC_ALL": "C.UTF-8"}, ("en", "LC_ALL=C.UTF-8")),
        ({"LANG": "C", "LC_MESSAGES": "ja_JP"}, ("ja", "LC_MESSAGES=ja_JP")),
        ({"LANG": "ja_JP.UTF-8", "RESTORE_LANG": "en"}, ("en", "RESTORE_LANG")),
        ({"RESTORE_LANG": "ja"}, ("ja", "RESTORE_LANG")),
    ],
)
def test_the_language_is_restore_lang_else_the_locale(env, expected):
    assert language_of(env) == expected
    settings = load_settings(env)
    assert (settings.lang, settings.lang_origin) == expected


def test_an_unknown_restore_lang_is_refused_by_name():
    with pytest.raises(ConfigError, match="RESTORE_LANG"):
        load_settings({"RESTORE_LANG": "de"})


def _python(*args: str, **env: str) -> subprocess.CompletedProcess:
    """This Python with `args`, in this environment without its locale and RESTORE_LANG, plus
    `env`."""
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    environ.pop("RESTORE_LANG", None)
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env={**environ, **env}, timeout=120
    )


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return _python("-m", "restore_assets.cli", *args, **env)


@pytest.mark.slow
def test_the_cli_speaks_the_operators_language():
    japanese = _cli("--help", LANG="ja_JP.UTF-8")
    assert japanese.returncode == 0, japanese.stderr
    assert "ベースラインダンプから復旧" in japanese.stdout
    assert "Restore OpenDolphin" not in japanese.stdout
    english = _cli("--help", LANG="ja_JP.UTF-8", RESTORE_LANG="en")
    assert "Restore OpenDolphin" in english.stdout
    refused = _cli("status", RESTORE_LANG="de")
    assert refused.returncode == 3
    assert "RESTORE_LANG" in refused.stderr


@pytest.mark.slow
def test_the_ui_describes_the_runbook_in_the_operators_language():
    """The asset and check descriptions the Dagster UI shows are chosen when the code location
    loads: Japanese under RESTORE_LANG=ja, with the runbook's gate names."""
    script = (
        "from restore_assets.definitions import defs\n"
        "from restore_assets.assets.gates import REPORT\n"
        "print([s.description for s in defs.get_assets_def(REPORT).check_specs])\n"
    )

    def described(**env: str) -> str:
        done = _python("-c", script, **env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    japanese = described(RESTORE_LANG="ja")
    assert "§6.1 DB 復旧完了" in japanese and "§6.2 監査ログ採取準備" in japanese
    assert "§6.1 DB restore complete" in described(RESTORE_LANG="en")
