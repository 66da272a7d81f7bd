"""`make bench`'s own parts (never a timed test: it measures, these check what it writes)."""

from __future__ import annotations

import ast
import statistics
import sys
from pathlib import Path

from bench.report import write_report
from bench.run import measure


def sample(wall: float, **phases: float) -> dict:
    return {
        "wall": wall,
        "code": 0,
        "peak_tree_mb": 150.0,
        "peak_process_mb": 120.0,
        "phases": {"step legacy_restore": wall - 2, **phases},
    }


def results() -> dict:
    sizes = {}
    for mb, raw, project in (
        (100, [10.0, 11.0, 12.0], [13.0, 12.5, 14.0]),
        (500, [50.0, 52.0, 51.0], [55.0, 54.0, 56.0]),
    ):
        sizes[str(mb)] = {
            "seed_mb": float(mb),
            "raw": [sample(w) for w in raw],
            "project": [sample(w, **{"legacy psql": w - 3}) for w in project],
            "warm": sample(project[0] - 1),
        }
    runs = [sample(4.0), sample(5.0)]
    return {
        "quick": False,
        "seconds": 900.0,
        "machine": {"cpus": 2, "memory_gb": 24, "load_before": [0.5, 0.5, 0.5], "python": "3"},
        "sizes": sizes,
        "sensor": {"seed_mb": 500.0, "cold_s": 6.0, "cached_ms": {"median": 9.0}},
        "processes": {
            "seed_mb": 100.0,
            "both sides (run)": [sample(16.0), sample(17.0)],
            "legacy alone (run --only legacy)": [sample(13.0), sample(13.5)],
            "modernized alone (run --only modernized)": runs,
            "flyway info": runs,
            "flyway migrate": runs,
        },
        "demo": runs,
    }


def test_the_report_has_every_figure_and_derives_them_from_the_samples(tmp_path):
    data = results()
    path = write_report(data, tmp_path)
    text = path.read_text(encoding="utf-8")
    assert (tmp_path / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![benchmarks](benchmarks.png)" in text
    small, big = data["sizes"]["100"], data["sizes"]["500"]

    def med(samples):
        return statistics.median(s["wall"] for s in samples)

    overhead = med(small["project"]) - med(small["raw"])
    assert (
        f"| fixed overhead ≤ 1.5 s over raw psql at the smallest size | {overhead:.2f} s |" in text
    )
    slope = (med(big["project"]) - med(small["project"])) / (med(big["raw"]) - med(small["raw"]))
    assert f"{slope:.3f}×" in text
    both = med(data["processes"]["both sides (run)"])
    slower = med(data["processes"]["legacy alone (run --only legacy)"])
    assert f"| both sides ≤ 1.2× the slower side alone | {both / slower:.2f}× |" in text
    for row in ("sensor tick, cached", "`flyway info`", "peak RSS", "UI-launched chain"):
        assert row in text


def test_measure_sees_the_memory_of_the_whole_process_tree(tmp_path):
    """A child holding 80 MB: the sampled tree peak and largest process include it."""
    hold = "import time; block = bytearray(80_000_000); time.sleep(0.5)"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {hold!r}])"
    result, _ = measure([sys.executable, "-c", child], {}, tmp_path / "log")
    assert result.code == 0
    assert result.peak_process_mb >= 80
    assert result.peak_tree_mb >= result.peak_process_mb + 5  # the parent Python counts too


def test_the_product_package_never_imports_the_bench():
    """`bench/` drives the installed project from outside; `restore_assets` (what the wheel
    ships) must work without it."""
    package = Path(__file__).resolve().parents[1] / "restore_assets"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "bench"]
    assert offenders == []
