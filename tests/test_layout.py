"""The house rules, checked on the source: no import cycles, arrows pointing down (the runtime never imports a
heavy stage), variant names spelled in one module, small modules and functions, no global state on import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bertdeploy import variants

PACKAGE = Path(__file__).resolve().parents[1] / "bertdeploy"
LIGHT = (
    "bertdeploy.runtime",
    "bertdeploy.package",
    "bertdeploy.serve",
    "bertdeploy.bundle",
    "bertdeploy.outputs",
    "bertdeploy.variants",
    "bertdeploy.errors",
    "bertdeploy.machine",
)
HEAVY = ("bertdeploy.training", "bertdeploy.exporter", "bertdeploy.benchmark", "bertdeploy.cli")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Every bertdeploy module imported anywhere in the file (module level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("bertdeploy") and name != me and name in MODULES:
                out.add(name)
    return out


GRAPH = {m: _imports(p) for m, p in MODULES.items()}


def _parents(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_no_import_cycles():
    """A package's ``__init__`` re-exporting its submodules is not an edge back from them (Python runs the parent
    first by definition), so edges into a module's own parents are ignored."""
    graph = {m: {d for d in deps if d not in _parents(m)} for m, deps in GRAPH.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d) :] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_runtime_never_imports_a_heavy_stage():
    for m, deps in GRAPH.items():
        if m.startswith(LIGHT):
            bad = sorted(d for d in deps if d.startswith(HEAVY))
            assert not bad, f"{m} imports {bad}"


def test_variant_names_are_spelled_in_the_variant_table_only():
    """No string constant outside variants.py is a variant name (docstrings and examples aside). "fp32" is also a
    torch dtype and "fp16" a precision, so only the names that are nothing else are checked."""
    names = set(variants.NAMES) - set(variants.PRECISIONS)
    offenders = []
    for m, path in MODULES.items():
        if m == "bertdeploy.variants":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value!r}")
    assert not offenders, "\n".join(offenders)


def test_modules_and_functions_are_small():
    too_long = []
    for m, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{m}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{m}.{node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)


def test_no_global_state_changed_by_library_code():
    """No ``matplotlib.use`` / pyplot (the object API instead), no ``logging.basicConfig`` and no logger level set
    outside a function that restores it (``quiet_logs``, ``_ray_data_settings``)."""
    offenders = []
    for m, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(x.startswith("matplotlib.pyplot") for x in mods):
                    offenders.append(f"{m}:{node.lineno}: imports pyplot")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                call = ast.unparse(node.func)
                if call in ("matplotlib.use", "logging.basicConfig"):
                    offenders.append(f"{m}:{node.lineno}: {call}")
        for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            body = ast.unparse(fn)
            if ".setLevel(" in body and "finally" not in body:
                offenders.append(f"{m}.{fn.name}: sets a log level without restoring it")
    assert not offenders, "\n".join(offenders)


def test_every_public_name_resolves():
    import bertdeploy

    for name in bertdeploy.__all__:
        assert getattr(bertdeploy, name) is not None, name


def test_no_machine_paths_in_the_repository():
    """Committed files name paths as a user's checkout has them (``runs/``, ``../shared/``), never this machine's."""
    import subprocess

    root = PACKAGE.parent
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    marker = "/" + "work" + "/"
    hits = []
    for name in filter(None, files.decode().split("\0")):
        path = root / name
        if path.suffix in {".png", ".onnx", ".safetensors", ".whl"} or not path.is_file():
            continue
        if marker in path.read_text(errors="ignore"):
            hits.append(name)
    assert not hits, f"machine paths ({marker}) in: {hits}"
