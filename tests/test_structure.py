"""The package's shape: data flows one way, modules stay readable, library code leaves global state alone."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gato_min"

# envs/data -> tokenize -> embed + positions -> sequence -> model -> train / agent -> tools.
# A module may import from its own floor and the floors below it, never from above.
FLOORS = [
    ["files", "settings", "statistics", "plotting", "distributed", "stored", "observations", "data.episodes"],
    ["envs"],
    [
        "data.formats",
        "data.policies",
        "data.atari_policies",
        "data.collect",
        "data.reference",
        "data.training_set",
        "data.state_copy",
        "render",
    ],
    ["tokenize"],
    ["config"],
    ["positions", "embed", "batch"],
    ["sequence", "sampling", "codec"],
    ["model"],
    ["optim", "task_data", "runs"],
    ["train"],
    ["launch", "agent", "evaluate", "peers"],
    [
        "tools.bench_busy",
        "tools.bench_learn",
        "tools.benchmarks",
        "tools.bench_pixels",
        "tools.bench_scale",
        "tools.demo",
        "tools.generalist",
        "tools.generalist_report",
        "tools.experts",
        "tools.text_model",
        "tools.tokenize_demo",
        "tools.cli_assets",
        "tools.cli_bench",
        "tools.cli_generalist",
        "tools.cli",
    ],
]
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}
EXEMPT = {"__init__", "__main__", "data.__init__", "tools.__init__"}


def modules():
    return {".".join(path.relative_to(PACKAGE).with_suffix("").parts): path for path in PACKAGE.rglob("*.py")}


def imported(path: Path) -> set[str]:
    """The gato_min modules a file imports (`from gato_min import x` counts as module x)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gato_min"):
            base = node.module.removeprefix("gato_min").lstrip(".")
            if base:
                names.add(base)
            else:
                names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name.removeprefix("gato_min.") for a in node.names if a.name.startswith("gato_min."))
    return names


def test_every_module_has_a_floor():
    assert set(modules()) - EXEMPT == set(FLOOR), "add new modules to FLOORS (and keep the data flow one way)"


@pytest.mark.parametrize("name", sorted(FLOOR))
def test_no_module_imports_from_above_its_floor(name):
    above = {other for other in imported(modules()[name]) if FLOOR.get(other, -1) > FLOOR[name]}
    assert not above, f"gato_min.{name} (floor {FLOOR[name]}) imports {sorted(above)} from above it"


def test_teaching_modules_never_import_the_maintainer_tools():
    for name in FLOOR:
        if not name.startswith("tools."):
            assert not {m for m in imported(modules()[name]) if m.startswith("tools")}, name


def test_acting_and_benchmarks_never_import_the_training_loop():
    for name in ("agent", "codec", "evaluate", "runs", "tools.benchmarks"):
        assert "train" not in imported(modules()[name]) and "launch" not in imported(modules()[name]), name


def test_every_module_reads_in_one_sitting():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert max(lengths.values()) <= 400, sorted(lengths.items(), key=lambda item: -item[1])[:3]


def test_one_timestep_layout_and_one_batch_builder():
    """Only gato_min.sequence lays tokens out: it alone builds a Batch from tokens, places the
    separator or defines what a timestep holds (gato_min.batch only cuts and joins built ones)."""
    for name, path in modules().items():
        source = path.read_text()
        if name == "sequence":
            assert source.count("class TimestepLayout") == 1 and source.count("def build_batch") == 1
            continue
        if name == "batch":
            assert all(call.startswith("Batch(**") for call in re.findall(r"\bBatch\(\S*", source)), (
                "batch builds a Batch"
            )
        else:
            assert not re.search(r"\bBatch\(", source), f"{name} builds a Batch itself"
        assert "separator_id," not in source and "separator_id)" not in source, f"{name} places separators itself"
        assert "class TimestepLayout" not in source and "def task_layout" not in source, name


def test_library_code_leaves_global_state_alone():
    """No backend switches in library code (the caller's notebook keeps its inline figures);
    thread counts are only set where they are given back."""
    for name, path in modules().items():
        source = path.read_text()
        assert "matplotlib.use(" not in source, f"{name} switches the matplotlib backend"
        if "set_num_threads(" in source and not name.startswith("tools.cli"):
            assert "get_num_threads()" in source, f"{name} sets torch's thread count without giving it back"
