"""The runbook core: one module per runbook section, no Dagster.

Each step is a plain function taking typed inputs (settings, targets, paths) and returning a typed
result that carries what the evidence and the Dagster metadata need. The assets, the CLI and the
tests all call these; nothing here imports Dagster (a test proves it).
"""
