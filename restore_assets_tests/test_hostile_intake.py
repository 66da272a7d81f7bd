"""Intake's memory whatever a Secrets writer puts on one line (issue 20, third round, class 9):
a COPY row of any length was already counted as it came; a statement line (or a row starting
with `\\N`) was still held whole, several times over, on every status, plan, run and tick."""

from __future__ import annotations

import pytest

from restore_assets.runbook.baseline_files import LONGEST_LINE
from restore_assets.settings import LEGACY_SCHEMA_FILE, LEGACY_SEED_FILE
from restore_assets_tests.test_hostile_local import peak_of_reading

LONG = 128 << 20  # bytes on one line: eight times the longest line held


@pytest.mark.slow
def test_a_statement_line_longer_than_the_bound_is_refused_in_bounded_memory(
    demo_secrets, tmp_path
):
    """A 128 MiB `COMMENT ON … IS '…'` on one line in the Legacy schema: refused by the scan,
    naming its line, and read within 64 MiB of the process before the read."""
    from restore_assets.errors import UnsafeScriptError
    from restore_assets.runbook.baseline_files import read_dump

    schema = (demo_secrets / LEGACY_SCHEMA_FILE).read_bytes()
    at = schema.index(b"\nCREATE TABLE ") + 1
    line_number = schema[:at].count(b"\n") + 1
    comment = b"COMMENT ON SCHEMA public IS '" + b"x" * LONG + b"';\n"
    dump = tmp_path / "schema.sql"
    dump.write_bytes(schema[:at] + comment + schema[at:])
    grown_kib, complete, refused = peak_of_reading(dump)
    assert grown_kib < 64 << 10, f"peak grew by {grown_kib >> 10} MiB"
    assert complete == "True"  # read to its footer, past the line
    assert refused.startswith(f"[{line_number}, 'a line of more than 16 MiB"), refused
    with pytest.raises(UnsafeScriptError, match=rf"schema.sql:{line_number}: refused a line"):
        read_dump(dump).scan.raise_if_refused("schema.sql")
    assert LONG > LONGEST_LINE


@pytest.mark.slow
def test_a_copy_row_starting_with_a_null_is_counted_as_it_comes(demo_secrets, tmp_path):
    """A 128 MiB seed row whose first column is NULL (`\\N`): a row, never the end of the data,
    counted as its bytes come (it was held whole); the seed stays usable."""
    seed = (demo_secrets / LEGACY_SEED_FILE).read_bytes()
    copy = seed.index(b" FROM stdin;\n") + len(b" FROM stdin;\n")
    dump = tmp_path / "seed.sql"
    dump.write_bytes(seed[:copy] + b"\\N\t" + b"9" * LONG + b"\n" + seed[copy:])
    grown_kib, complete, refused = peak_of_reading(dump)
    assert grown_kib < 64 << 10, f"peak grew by {grown_kib >> 10} MiB"
    assert complete == "True" and refused.strip() == "[]"
