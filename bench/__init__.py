"""`make bench` (`python -m bench`): the benchmark tooling, kept out of the product package.

`run` measures the project against raw psql (whole processes, process-tree memory, phases),
`ui` times the chain launched as the UI launches it, `report` writes docs/benchmarks.md and its
plot. Nothing in `restore_assets` imports this package, and the wheel does not ship it; it drives
the installed project from outside, as a user would.
"""
