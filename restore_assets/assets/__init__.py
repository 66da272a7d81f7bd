"""The Dagster assets. Their descriptions are the runbook as the UI shows it, in the operators'
language: chosen here, before any asset is defined (RESTORE_LANG, else the locale)."""

from restore_assets import i18n
from restore_assets.settings import process_language

i18n.use(process_language())
