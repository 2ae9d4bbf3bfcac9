"""The heavy libraries are imported in one place, under one lock: transformers' lazy module is not thread-safe."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import threading
from pathlib import Path

from backend.config import Settings
from backend.services.model_service import ModelCache, ModelService
from backend.utils.libraries import LIBRARIES, ON_DEMAND, import_libraries, import_lock

BACKEND = Path(__file__).resolve().parents[2] / "backend"
HEAVY = ("transformers", "accelerate", "peft")  # lazy or lazily importing; torch is an ordinary package


def _heavy_imports() -> list[tuple[str, int, str, list[str], ast.AST | None]]:
    """Every ``import``/``from ... import`` of a heavy library in backend/: (file, line, module, names, function)."""
    found = []
    for path in sorted(BACKEND.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [(node.module, [alias.name for alias in node.names])]
            elif isinstance(node, ast.Import):
                modules = [(alias.name, []) for alias in node.names]
            else:
                continue
            function = parents.get(node)
            while function is not None and not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                function = parents.get(function)
            for module, names in modules:
                if module.split(".")[0] in HEAVY:
                    found.append((str(path.relative_to(BACKEND.parent)), node.lineno, module, names, function))
    return found


def test_every_name_imported_from_a_heavy_library_is_listed() -> None:
    listed: dict[str, set[str]] = {}
    for module, names in LIBRARIES + tuple(entry for group in ON_DEMAND.values() for entry in group):
        listed.setdefault(module, set()).update(names)
    imports = _heavy_imports()
    assert imports, "the scan should find the backend's transformers imports"
    missing = [
        f"{where}:{line}: from {module} import {name}"
        for where, line, module, names, _ in imports
        for name in names or [""]
        if module not in listed or (name and name not in listed[module])
    ]
    assert not missing, "add these to LIBRARIES in backend/utils/libraries.py:\n" + "\n".join(missing)


def test_heavy_imports_come_after_import_libraries_inside_functions() -> None:
    """Never at module level (the server must start without them), and only once the lock has done its work."""
    problems = []
    for where, line, module, _, function in _heavy_imports():
        if where == "backend/utils/libraries.py":
            continue
        if function is None:
            problems.append(f"{where}:{line}: {module} imported at module level")
            continue
        calls = [
            node.lineno
            for node in ast.walk(function)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "import_libraries"
        ]
        if not any(call <= line for call in calls):
            problems.append(f"{where}:{line}: {module} imported without calling import_libraries() first")
    assert not problems, "\n".join(problems)


RACE = """
import importlib, json, sys, threading
from backend.utils.libraries import LIBRARIES, import_libraries

barrier = threading.Barrier(4)
errors = []

def work():
    barrier.wait()
    try:
        import_libraries()
        from transformers import AutoModelForCausalLM, AutoTokenizer  # what a load imports next
        for module, names in LIBRARIES:
            for name in names:
                getattr(importlib.import_module(module), name)
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"errors": errors, "imported": sorted(m for m, _ in LIBRARIES if m in sys.modules)}))
"""


def test_import_libraries_from_four_threads_at_once_in_a_fresh_process() -> None:
    """Without the lock, plain ``from transformers import AutoModelForCausalLM`` in 4 threads fails in most."""
    out = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == []
    assert result["imported"] == sorted(m for m, _ in LIBRARIES)


def test_import_libraries_is_reentrant_under_the_lock() -> None:
    with import_lock(), import_lock():
        import_libraries()


def test_wait_for_warmup_waits_only_while_a_warmup_runs(tmp_path: Path) -> None:
    off = ModelService(Settings(home_dir=tmp_path / "off", warmup=False))
    off.wait_for_warmup()  # returns at once: warm-up is off
    never = ModelService(Settings(home_dir=tmp_path / "never", warmup=True))
    never.wait_for_warmup()  # returns at once: warm-up was never started
    assert never.warmup_state == "pending"

    cache = ModelCache()  # its own cache, whose loading slot keeps the warm-up from freezing this process's gc
    service = ModelService(Settings(home_dir=tmp_path / "on", warmup=True), cache=cache)
    waiter = threading.Thread(target=service.wait_for_warmup)
    with cache.loading_slot("a load"):
        with import_lock():  # the warm-up cannot get past the library lock while this test holds it
            warmup = service.start_warmup()
            assert warmup is not None and service.warmup_state == "running"
            waiter.start()
            waiter.join(0.2)
            assert waiter.is_alive(), "wait_for_warmup returned while the warm-up was still running"
        warmup.join(120)
    waiter.join(10)
    assert not waiter.is_alive() and service.warmup_state == "done"
