"""Intake's one pass over a dump (`read_dump`): counting COPY rows in bulk must give exactly the
facts that looking at every line gives, wherever the read chunks happen to cut."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from restore_assets.runbook import baseline_files
from restore_assets.runbook.baseline_files import DumpReader, read_dump

HEADER = [
    b"--\n",
    b"-- PostgreSQL database dump\n",
    b"--\n",
    b"\\restrict k\n",
    b"-- Dumped from database version 18.6\n",
    b"-- Dumped by pg_dump version 18.6\n",
]
LINES = [  # what a dump, damaged or hostile, may hold; rows may look like any of it
    b"COPY public.t (a, b) FROM stdin;\n",
    b"1\t\xe5\xb1\xb1\xe7\x94\xb0 \xe5\xa4\xaa\xe9\x83\x8e\n",  # multi-byte UTF-8
    b"2\t\\N\n",
    b"\\.\n",
    b"\\.\r\n",
    b"\\.x\n",
    b"\\\\.\n",
    b"\n",
    b"   \n",
    b"\xff\xfe broken utf-8\n",
    b"-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: -\n",
    b"-- Name: t; Type: TABLE; Schema: public; Owner: -\n",
    b"-- PostgreSQL database dump complete\n",
    b"--\n",
    b"\\unrestrict k\n",
    b"\\! touch /tmp/pwned\n",
    b"SELECT 1;\n",
    b"CREATE SCHEMA s;\n",
    b"COMMIT;\n",
    b"SELECT 'open string\n",
]


def line_by_line(data: bytes):
    reader = DumpReader()
    reader.digest.update(data)
    for line in _split(data):
        reader.line(line)
    return reader.facts()


def _split(data: bytes) -> list[bytes]:
    """Lines as psql (and a binary file) splits them: at `\\n` only."""
    parts = data.split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


FOOTER, ROW = LINES[12], LINES[1]


@settings(max_examples=300, deadline=None)
# COPY rows running to the end of the file: a row after the footer undoes it, a footer after
# the last row counts, `--` rows count as entries (psql reads them as data all the same).
@example(
    body=[ROW, FOOTER, ROW], header_lines=40, copy_first=True, chunk=16, cut_last_newline=False
)
@example(
    body=[ROW, FOOTER, LINES[7]],
    header_lines=40,
    copy_first=True,
    chunk=1 << 20,
    cut_last_newline=True,
)
@example(
    body=[ROW, LINES[10], LINES[11]],
    header_lines=40,
    copy_first=True,
    chunk=64,
    cut_last_newline=False,
)
@given(
    body=st.lists(st.sampled_from(LINES), max_size=80),
    header_lines=st.sampled_from([0, 33, 34, 40]),
    copy_first=st.booleans(),
    chunk=st.sampled_from([1, 3, 16, 64, 1 << 20]),
    cut_last_newline=st.booleans(),
)
def test_bulk_rows_give_the_same_facts_as_every_line(
    tmp_path_factory, body, header_lines, copy_first, chunk, cut_last_newline
):
    padding = [b"-- filler\n"] * header_lines  # COPY rows inside or past the 40 header lines
    copy = [LINES[0]] if copy_first else []
    data = b"".join(HEADER + padding + copy + body)
    if cut_last_newline and data.endswith(b"\n"):
        data = data[:-1]
    path = tmp_path_factory.mktemp("dump") / "x.sql"
    path.write_bytes(data)
    original = baseline_files._CHUNK
    baseline_files._CHUNK = chunk
    try:
        assert read_dump(path) == line_by_line(data)
    finally:
        baseline_files._CHUNK = original


def test_the_demo_seed_is_read_in_bulk_with_the_same_facts(demo_secrets):
    from restore_assets.settings import LEGACY_SEED_FILE

    path = demo_secrets / LEGACY_SEED_FILE
    facts = read_dump(path)
    assert facts == line_by_line(path.read_bytes())
    assert facts.complete and facts.data_entries > 0 and facts.meta_commands == 2
    assert facts.copy_rows["public.d_patient"] == 60  # DEMO_PATIENTS
    assert facts.copy_rows["public.d_users"] == 12


def test_copy_rows_are_counted_per_table_wherever_the_chunks_cut(tmp_path):
    """Rows of each COPY block, summed per table as the dump names it (quoted names too): rows
    read one by one, in bulk, and a row longer than a chunk all count once; `\\.` never."""
    long_row = b"3\t" + b"x" * 100 + b"\n"
    data = b"".join(
        [
            *HEADER,
            b'COPY "My Schema"."odd.name (x)" (a) FROM stdin;\n',
            b"\\.\n",
            LINES[0],
            ROW,
            LINES[2],
            long_row,
            b"\\.\n",
            *([b"-- filler\n"] * 40),
            LINES[0],
            ROW,
            b"\\.\n",
            FOOTER,
        ]
    )
    path = tmp_path / "seed.sql"
    path.write_bytes(data)
    original = baseline_files._CHUNK
    for chunk in (1, 16, 1 << 20):
        baseline_files._CHUNK = chunk
        try:
            facts = read_dump(path)
            assert facts.copy_rows == {'"My Schema"."odd.name (x)"': 0, "public.t": 4}
            assert facts.copy_lines == [
                [7, 8, '"My Schema"."odd.name (x)"'],
                [9, 13, "public.t"],
                [54, 56, "public.t"],
            ]
        finally:
            baseline_files._CHUNK = original
