"""The operators' language: Japanese or English, by gettext.

A message is wrapped once where it is written — `_("…")`, `ngettext(…)`, or `N_("…")` for text
kept in a constant and translated where it is shown — and looked up in the catalog of the
process's language (`use`, from `Settings.lang`). The English text is the message id.

Catalogs: `restore_assets/locale/<lang>/LC_MESSAGES/restore_assets.po`, extracted and updated with
Babel (`make messages`) and compiled into `.mo` files by `make` (`make catalogs`).
"""

from __future__ import annotations

import gettext
from pathlib import Path

from restore_assets.errors import ConfigError

DOMAIN = "restore_assets"
LOCALE_DIR = Path(__file__).parent / "locale"
SOURCE_LANGUAGE = "en"  # the message ids are the English text
LANGUAGES = ("ja", "en")

_catalog: gettext.NullTranslations = gettext.NullTranslations()
_language = SOURCE_LANGUAGE


def use(language: str) -> None:
    """Every message from now on in `language`. A language without a compiled catalog is a
    configuration error, never a silent fallback to English."""
    global _catalog, _language
    if language == SOURCE_LANGUAGE:
        catalog = gettext.NullTranslations()
    else:
        try:
            catalog = gettext.translation(DOMAIN, LOCALE_DIR, languages=[language])
        except FileNotFoundError:
            mo = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.mo"
            raise ConfigError(
                f"RESTORE_LANG={language}: its catalog {mo} is not compiled; run `make catalogs` "
                "(or `make`), or set RESTORE_LANG=en"
            ) from None
    _catalog, _language = catalog, language


def language() -> str:
    """The language messages are in now."""
    return _language


def _(message: str) -> str:
    return _catalog.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _catalog.ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks `message` for the catalog without translating it yet (a constant)."""
    return message
