"""Differential tests: each Flyway edge applied by real Flyway 10.17.3 (fetched with Maven, one
JVM for the session) and by the engine, on two databases of the password cluster; history rows,
schemas and outcomes must agree. docs/flyway.md lists each edge with the test that proves it."""

from __future__ import annotations

import pytest

from restore_assets_tests.flyway_twin import Twin
from restore_assets_tests.real_flyway import OracleUnavailable, RealFlyway


@pytest.fixture(scope="session")
def real_flyway():
    try:
        oracle = RealFlyway()
    except OracleUnavailable as exc:
        pytest.fail(f"real Flyway is needed for the differential tests: {exc}")
    yield oracle
    oracle.close()


@pytest.fixture
def twin(real_flyway, password_cluster, tmp_path, request):
    label = request.node.name.lower().replace("[", "_").replace("]", "").replace("-", "_")
    return Twin(real_flyway, password_cluster, tmp_path / "sql", label[:30])


def write(folder, name, data: bytes | str):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_line_endings(twin, newline):
    """A `--` comment ends at \\r as well as \\n (Parser.readSingleLineComment), so a CR-only
    file runs every statement."""
    lines = [
        "-- first comment",
        "CREATE TABLE t1 (id int); -- trailing comment",
        "-- another",
        "CREATE TABLE t2 (id int);",
        "INSERT INTO t1 VALUES (1);",
        "/* block",
        "   comment */ CREATE TABLE t3 (note text DEFAULT 'a;b');",
    ]
    write(twin.folder, "V1__line_endings.sql", newline.join(lines) + newline)
    write(twin.folder, "V2__bom.sql", "\ufeff-- bom" + newline + "CREATE TABLE t4 (id int);")
    twin.step("migrate")
    rows = twin.assert_same()
    assert [r[1] for r in rows] == ["1", "2"]
    with twin.connect(twin.ours) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename ~ '^t[0-9]'")
        assert tables.fetchone()[0] == 4
    twin.real_accepts_ours()
