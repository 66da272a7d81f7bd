"""The console logger of the code location: a person reading a terminal sees the runbook's own
progress lines (`legacy_restore: psql: reset public + 2 file(s)…`), not Dagster's event stream
and stack traces; `verbose` brings Dagster's full colored console log back."""

from __future__ import annotations

import logging
import sys

from dagster import Field, InitLoggerContext, colored_console_logger, logger

_UPSTREAM_STOPPED = "Dependencies for step"
# Where Dagster puts a log record's step, event and original message (1.x). Without it (another
# Dagster) every line is still printed, only without its step.
_DAGSTER_META = "dagster_meta"


class _BriefHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, _DAGSTER_META, None) or {}
        message = meta.get("orig_message", record.getMessage())
        if meta.get("dagster_event") is not None or message.startswith(_UPSTREAM_STOPPED):
            return  # framework events and skips: the CLI prints its own summary of them
        step = meta.get("step_key") or meta.get("resource_name") or "run"
        print(f"  {step}: {message}", file=sys.stderr)


@logger(
    config_schema={
        "log_level": Field(str, default_value="INFO", is_required=False),
        "verbose": Field(bool, default_value=False, is_required=False),
        "name": Field(str, default_value="dagster", is_required=False),
    },
    description="Runbook progress lines only (verbose: Dagster's colored console log).",
)
def brief_console_logger(init_context: InitLoggerContext) -> logging.Logger:
    config = init_context.logger_config
    if config["verbose"]:  # Dagster's own colored console logger (it reads log_level and name)
        return colored_console_logger.logger_fn(init_context)
    log = logging.getLogger("restore_assets.console")
    log.setLevel(config["log_level"])
    log.propagate = False
    if not any(isinstance(h, _BriefHandler) for h in log.handlers):
        log.addHandler(_BriefHandler())
    return log
