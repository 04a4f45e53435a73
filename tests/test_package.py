"""The package's shape: small modules, no import cycles (deferred and TYPE_CHECKING imports included),
typed store arguments, an instant --help."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "diffprobe"
MAX_LINES = 300


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """diffprobe modules that ``path`` imports anywhere: at module level, inside functions (deferred
    imports) and under TYPE_CHECKING. ``from pkg import sub`` names the module ``pkg.sub`` (not ``pkg``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in node.names}
            found.update(m for m in subs if m in known)
            if any(m not in known for m in subs):
                found.add(base)
    return {m for m in found if m in known and m != name}


def test_no_module_is_over_300_lines():
    long = {name: n for name, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by concept: {long}"


def test_no_import_cycle():
    mods = modules()
    graph = {name: imports(p, name, set(mods)) for name, p in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := dfs(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = dfs(m)
            assert cycle is None, " -> ".join(cycle)


def test_no_function_takes_an_untyped_store():
    bad = []
    for name, p in modules().items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                    if a.arg.startswith("store") and (a.annotation is None or ast.unparse(a.annotation) == "Any"):
                        bad.append(f"{name}.{node.name}({a.arg})")
    assert not bad, bad


def test_help_imports_no_heavy_library():
    code = "import sys, diffprobe.cli; print(sorted(m for m in ('torch', 'numpy', 'zarr', 'dask', 'h5py') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _lazy_packages() -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """{package: ({name: module} of its _EXPORTS, {name: module} of its TYPE_CHECKING imports)}."""
    out = {}
    for name, p in modules().items():
        if p.name != "__init__.py":
            continue
        tree = ast.parse(p.read_text())
        exports = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.AnnAssign) and ast.unparse(n.target) == "_EXPORTS"), None)
        if exports is None:
            continue
        typed = {}
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                for imp in node.body:
                    if isinstance(imp, ast.ImportFrom):
                        typed.update({a.name: imp.module for a in imp.names})
        out[name] = (exports, typed)
    return out


def test_every_lazy_export_resolves_and_its_two_lists_agree():
    import importlib

    from diffprobe.probes.registry import DENSE_PROBES, IMAGE_PROBES, PROBES

    packages = _lazy_packages()
    assert {"diffprobe", "diffprobe.probes", "diffprobe.store"} <= set(packages)
    registered = {str(reg.target(n)).partition(":")[2] for reg in (PROBES, DENSE_PROBES, IMAGE_PROBES) for n in reg.names()}
    for package, (exports, typed) in packages.items():
        mod = importlib.import_module(package)
        exports = dict(mod._EXPORTS)  # as run (diffprobe.probes adds its registered estimators)
        extra = set(exports.items()) - set(typed.items())
        assert set(typed.items()) <= set(exports.items()), f"{package}: TYPE_CHECKING imports not exported: {set(typed.items()) - set(exports.items())}"
        assert all(name in registered for name, _ in extra), f"{package}: exported but missing from TYPE_CHECKING: {extra}"
        for name in exports:
            assert getattr(mod, name) is getattr(importlib.import_module(exports[name]), name), f"{package}.{name}"
        assert set(exports) <= set(mod.__all__)


def test_every_estimator_is_importable_from_diffprobe_probes():
    import diffprobe.probes as probes
    from diffprobe.probes.registry import DENSE_PROBES, IMAGE_PROBES, PROBES

    for reg in (PROBES, DENSE_PROBES, IMAGE_PROBES):
        for name in reg.names():
            cls = reg.get(name)
            assert getattr(probes, cls.__name__) is cls, f"diffprobe.probes.{cls.__name__} ({name})"
