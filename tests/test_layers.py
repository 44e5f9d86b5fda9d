"""The layer rules of DESIGN.md, checked on the source (docs/architecture.md).

- no import cycle between geoemb modules (module-level imports);
- core packages import neither Hydra nor Lightning, anywhere in the file;
- ``HydraConfig`` appears only in the run layer;
- no module below the task layer imports ``geoemb.tasks``; wiring uses ``geoemb.run`` only for the
  ``RunContext`` (and the safe checkpoint loader it carries);
- every module imports cleanly in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "geoemb"
CORE = ("pooling", "probes", "compression", "retrieval", "metrics", "analysis", "inference",
        "zonal", "sources", "synthetic", "reporting", "utils", "explore", "errors")  # fmt: skip
WIRING = (
    "evaluation",
    "segmentation",
    "classification",
    "data",
    "callbacks",
    "corpus_predict",
    "parts",
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{a.name}" for a in node.names)
        elif isinstance(node, ast.If) and top_level_only:  # TYPE_CHECKING blocks don't run
            continue
    return found


def _family(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycles():
    mods = _modules()
    graph = {
        m: {i for i in _imports(p, m, top_level_only=True) if i in mods and i != m}
        for m, p in mods.items()
    }
    # a package's __init__ importing its own submodules is how packages work: drop parent edges
    for m in graph:
        graph[m] = {d for d in graph[m] if not m.startswith(d + ".")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_core_imports_neither_hydra_nor_lightning():
    bad = []
    for m, p in _modules().items():
        if _family(m) in CORE:
            for i in _imports(p, m, top_level_only=False):
                root = i.split(".")[0]
                if root in ("hydra", "lightning", "pytorch_lightning", "omegaconf"):
                    bad.append(f"{m} imports {i}")
    assert not bad, "\n".join(bad)


def test_hydra_runtime_only_in_run_layer():
    bad = [
        m for m, p in _modules().items() if "HydraConfig" in p.read_text() and _family(m) != "run"
    ]
    assert not bad, f"HydraConfig read outside geoemb.run: {bad}"


def test_nothing_below_tasks_imports_tasks():
    bad = []
    for m, p in _modules().items():
        if _family(m) in CORE + WIRING + ("run",):
            if any(i == "geoemb.tasks" or i.startswith("geoemb.tasks.") for i in
                   _imports(p, m, top_level_only=False)):  # fmt: skip
                bad.append(m)
    assert not bad, f"modules below the task layer import geoemb.tasks: {bad}"


def test_wiring_uses_run_layer_only_for_context_and_checkpoints():
    allowed = {"geoemb.run.context", "geoemb.run.checkpoints", "geoemb.run"}
    bad = []
    for m, p in _modules().items():
        if _family(m) in CORE + WIRING:
            for i in _imports(p, m, top_level_only=False):
                if i.startswith("geoemb.run") and not any(
                    i == a or i.startswith(a + ".") for a in allowed
                ):
                    bad.append(f"{m} imports {i}")
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(m for m in _modules() if not m.endswith("__main__"))
    code = (
        "import importlib, sys\n"
        f"names = {names!r}\n"
        "bad = []\n"
        "for n in names:\n"
        "    try:\n"
        "        importlib.import_module(n)\n"
        "    except Exception as e:\n"
        "        bad.append(f'{n}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]


def test_dask_worker_side_of_the_corpus_build_does_not_import_torch():
    """A Dask worker that writes corpus shards imports ``geoemb.retrieval.build_dask``; torch
    (seconds of CPU per worker, ~0.4 GB RSS) is only for the search side, loaded on first use."""
    code = (
        "import sys\n"
        "import geoemb.retrieval.build_dask, geoemb.retrieval.compact\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "import geoemb.retrieval as r\n"
        "assert callable(r.build_index) and 'hamming_numba' in r.BACKENDS\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
