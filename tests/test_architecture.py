"""The package's import graph, read from the source: every import statement, also those inside functions and
under `if TYPE_CHECKING:` (a late import still ties two modules together). The rules ARCHITECTURE.md states:
no cycles, layers that import one way (the doc's table), no kernel family importing another; and every module
and path the doc names exists.
"""
from __future__ import annotations

import ast
import importlib.util
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import REPO

ROOT = "tritonconv"
PACKAGE_DIR = Path(importlib.util.find_spec(ROOT).submodule_search_locations[0])


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({module_path(self.source)}:{self.line})"


def module_files(package_dir: Path = PACKAGE_DIR, root: str = ROOT) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package (a package is its __init__.py)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((root, *parts))] = path
    return modules


MODULES = module_files()


def module_path(module: str) -> str:
    return str(MODULES[module].relative_to(PACKAGE_DIR.parent))


def _known_prefix(name: str, modules) -> str | None:
    """The longest prefix of the dotted `name` that is one of `modules` (`tritonconv.x.attr` -> `tritonconv.x`)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imported_modules(module: str, path: Path, modules) -> list[Edge]:
    """The package modules `module` imports, wherever in the file the import statement is."""
    edges = [e for e in imports_in(ast.parse(path.read_text(), str(path)), module, path, modules) if e.target != module]
    return list(dict.fromkeys(edges))  # one edge per import statement


def imports_in(tree: ast.AST, module: str, path: Path, modules) -> list[Edge]:
    """The `modules` that the import statements of `tree` (the source of `module`, at `path`) name, itself included."""
    is_package = path.name == "__init__.py"
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from .pkg import name`: the submodule pkg.name where there is one, else pkg itself
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for name in names:
            target = _known_prefix(name, modules)
            if target is not None:
                edges.append(Edge(module, target, node.lineno))
    return edges


def import_graph(modules=MODULES) -> dict[str, list[Edge]]:
    return {module: imported_modules(module, path, modules) for module, path in modules.items()}


GRAPH = import_graph()


def cycles(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in graph.get(node, []):
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def within(module: str, *layers: str) -> bool:
    """Whether `module` is one of `layers` (dotted names under tritonconv) or inside one of them."""
    return any(module == f"{ROOT}.{layer}" or module.startswith(f"{ROOT}.{layer}.") for layer in layers)


def edges_into(sources, forbidden) -> list[str]:
    return [str(e) for m, edges in GRAPH.items() if sources(m) for e in edges if forbidden(e.target)]


# --- the graph reader itself ------------------------------------------------------------------------------------

def test_the_graph_reader_sees_late_relative_and_absolute_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .leaf import thing\n")
    (package / "sub" / "leaf.py").write_text("thing = 1\n")
    (package / "top.py").write_text("def f():\n    from .sub import leaf\n    import pkg.other\n")
    (package / "other.py").write_text(
        "from . import top\nfrom .sub import thing\nfrom pkg.sub.leaf import thing as t\nimport json\n")
    modules = module_files(package, "pkg")
    graph = {m: imported_modules(m, p, modules) for m, p in modules.items()}
    targets = {m: sorted({e.target for e in edges}) for m, edges in graph.items()}
    assert targets == {
        "pkg": [], "pkg.sub": ["pkg.sub.leaf"], "pkg.sub.leaf": [],
        "pkg.top": ["pkg.other", "pkg.sub.leaf"], "pkg.other": ["pkg.sub", "pkg.sub.leaf", "pkg.top"],
    }
    assert cycles(graph) == [["pkg.other", "pkg.top"]]


def test_the_real_graph_is_read():
    assert len(MODULES) > 30 and sum(len(edges) for edges in GRAPH.values()) > 100
    assert f"{ROOT}.kernels.base" in {e.target for e in GRAPH[f"{ROOT}.kernels"]}


# --- the rules ----------------------------------------------------------------------------------------------------

def test_no_import_cycles():
    found = cycles(GRAPH)
    detail = [str(e) for component in found for m in component for e in GRAPH[m] if e.target in component]
    assert not found, "import cycles:\n" + "\n".join(detail)


# Everything that uses kernels: the API, the custom op, dispatch, the cache, the search, benchmarks, the CLI.
ABOVE_KERNELS = ("dispatch", "cache", "functional", "ops", "search", "commands", "cli", "matmul", "nn", "convert",
                 "tune_model", "first_call", "benchmark", "compile", "compile_report")


# The public API and the command line: what calls dispatch.
API = ("functional", "ops", "matmul", "nn", "convert", "tune_model", "first_call", "commands", "cli")


def test_kernels_import_nothing_above_them():
    bad = edges_into(lambda m: within(m, "kernels"), lambda t: t == ROOT or within(t, *ABOVE_KERNELS))
    assert not bad, "kernels import a layer above them:\n" + "\n".join(bad)


def test_the_cache_imports_no_dispatch_or_api():
    bad = edges_into(lambda m: within(m, "cache"), lambda t: t == ROOT or within(t, "dispatch", *API))
    assert not bad, "the cache imports a layer above it:\n" + "\n".join(bad)


def test_dispatch_imports_no_api():
    """functional/matmul/nn/convert -> ops -> dispatch: dispatch is called by the API, never calls it."""
    bad = edges_into(lambda m: within(m, "dispatch"), lambda t: t == ROOT or within(t, *API))
    assert not bad, "dispatch imports the API above it:\n" + "\n".join(bad)


def test_the_custom_op_imports_no_api_module_above_it():
    """functional/matmul/nn/convert -> ops: the op calls dispatch, not the functions that call the op."""
    bad = edges_into(lambda m: within(m, "ops"), lambda t: t == ROOT or within(t, *(a for a in API if a != "ops")))
    assert not bad, "tritonconv.ops imports the API above it:\n" + "\n".join(bad)


def is_entry_point(module: str) -> bool:
    """The command line: tritonconv.cli, tritonconv.commands.*, and `python -m` entry points (`__main__`)."""
    return within(module, "commands", "cli") or module.rpartition(".")[2] == "__main__"


def test_only_the_cli_imports_commands():
    bad = edges_into(lambda m: not is_entry_point(m), lambda t: within(t, "commands"))
    assert not bad, "modules below the CLI import tritonconv.commands:\n" + "\n".join(bad)


def family_units() -> dict[str, str]:
    """Family name -> the direct child of tritonconv.kernels (a module or a package) that defines it."""
    from tritonconv.kernels import FAMILIES

    prefix = f"{ROOT}.kernels."
    units = {}
    for name, family in FAMILIES.items():
        module = type(family).__module__
        assert module.startswith(prefix), f"family {name} is defined outside tritonconv.kernels ({module})"
        units[name] = prefix + module[len(prefix):].split(".")[0]
    return units


def test_each_kernel_family_has_its_test_module():
    missing = [name for name in family_units() if not (REPO / "tests" / "kernels" / f"test_{name}.py").is_file()]
    assert not missing, f"no tests/kernels/test_<family>.py for {missing}"


def family_imports() -> dict[tuple[str, str], list[str]]:
    """(importer family, imported family) -> the import statements, for every import between two families."""
    units = family_units()
    found: dict[tuple[str, str], list[str]] = {}
    for name, unit in units.items():
        for module, edges in GRAPH.items():
            if module != unit and not module.startswith(unit + "."):
                continue
            for edge in edges:
                for other, other_unit in units.items():
                    if other_unit != unit and (edge.target == other_unit or edge.target.startswith(other_unit + ".")):
                        found.setdefault((name, other), []).append(str(edge))
    return found


def test_no_kernel_family_imports_another():
    assert len(family_units()) >= 4
    found = family_imports()
    assert not found, "kernel families import each other (shared code belongs in tritonconv.kernels.common):\n" + \
        "\n".join(e for edges in found.values() for e in edges)


def test_each_kernel_family_lives_in_a_module_named_after_it():
    """`tritonconv.kernels.<name>` holds family <name> (tests/kernels/test_<name>.py tests it)."""
    misnamed = {name: unit.rpartition(".")[2] for name, unit in family_units().items()
                if unit.rpartition(".")[2] != name}
    assert not misnamed, f"family -> module not named after it: {misnamed}"


@pytest.mark.parametrize("layer", ["kernels", "cache", "dispatch", "ops", "functional", "search", "commands"])
def test_every_layer_named_by_the_rules_exists(layer):
    """A renamed or moved layer must not make a rule pass by matching nothing."""
    assert any(within(m, layer) for m in MODULES), layer


# --- ARCHITECTURE.md stays true -----------------------------------------------------------------------------------

def named_in_architecture_doc() -> tuple[list[str], list[str]]:
    """The dotted tritonconv names and the repository paths ARCHITECTURE.md writes in `backticks`
    (placeholders such as `<family>` are left out)."""
    spans = re.findall(r"`([^`\n]+)`", (REPO / "ARCHITECTURE.md").read_text())
    dotted = sorted({s for s in spans if re.fullmatch(rf"{ROOT}(\.\w+)+", s)})
    paths = sorted({s.rstrip("/") for s in spans
                    if re.fullmatch(r"(tritonconv|tests|bench|docs|\.ci)/[\w./-]*", s) and "<" not in s})
    return dotted, paths


def test_every_module_and_name_the_architecture_doc_names_exists():
    import importlib

    dotted, paths = named_in_architecture_doc()
    assert len(dotted) >= 10 and len(paths) >= 5
    missing = [p for p in paths if not (REPO / p).exists()]
    for name in dotted:
        module = _known_prefix(name, MODULES)
        if module is None:
            missing.append(name)
            continue
        try:
            obj = importlib.import_module(module)
            for attribute in name[len(module) + 1:].split(".") if name != module else []:
                obj = getattr(obj, attribute)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, f"ARCHITECTURE.md names what does not exist: {missing}"


def test_the_architecture_doc_states_the_layers_this_file_enforces():
    text = (REPO / "ARCHITECTURE.md").read_text()
    assert "tests/test_architecture.py" in text
    for layer in ("kernels", "cache", "dispatch", "ops", "functional", "search", "commands"):
        assert f"tritonconv.{layer}" in text or f"tritonconv/{layer}" in text, layer


def doc_layers() -> list[tuple[str, list[str]]]:
    """The layers table of ARCHITECTURE.md, top first: (layer, [modules and packages under tritonconv])."""
    layers = []
    for name, cell in re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|", (REPO / "ARCHITECTURE.md").read_text(), re.M):
        names = [re.sub(r"\.py$", "", n).rstrip("/").replace("/", ".")
                 for n in re.findall(rf"`{ROOT}[./]([\w./]+)`", cell)]
        names = [n for n in names if any(within(m, n) for m in MODULES)]  # not public names (tritonconv.conv2d)
        if names:
            layers.append((name.strip(), names))
    return layers


def test_every_import_runs_down_the_layers_of_the_architecture_doc():
    layers = doc_layers()
    assert len(layers) >= 8, layers

    def rank(module: str) -> int | None:
        if module.rpartition(".")[2] == "__main__":
            return 0  # `python -m` entry points are the command line
        return next((i for i, (_, names) in enumerate(layers) if within(module, *names)), None)

    unplaced = sorted(m for m in MODULES if m != ROOT and rank(m) is None)
    assert not unplaced, f"modules in no layer of ARCHITECTURE.md's table: {unplaced}"
    upward = [f"{edge}: {layers[rank(edge.source)][0]} imports {layers[rank(edge.target)][0]}"
              for edges in GRAPH.values() for edge in edges
              if edge.target != ROOT and edge.source != ROOT and rank(edge.target) < rank(edge.source)]
    assert not upward, "imports against the layers of ARCHITECTURE.md:\n" + "\n".join(upward)


# --- the tests themselves -----------------------------------------------------------------------------------------

TEST_MODULES = module_files(REPO / "tests", "tests")


def embedded_scripts(tree: ast.AST) -> list[tuple[int, ast.AST]]:
    """The programs a file holds as strings (tests run them with `python -c`), parsed, each with its line."""
    scripts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "import " in node.value:
            try:
                scripts.append((node.lineno, ast.parse(textwrap.dedent(node.value))))
            except SyntaxError:
                continue  # prose, not a program
    return scripts


def imports_of_test_modules(modules, root: Path = REPO) -> list[str]:
    """Every import of a test module (`test_*.py`) by a test module, in its code or in a script it runs: a helper
    two test files share belongs in a helpers module (tests/helpers.py, tests/<package>/helpers.py) or a fixture."""
    def is_test(module: str) -> bool:
        return module.rpartition(".")[2].startswith("test_")

    found = []
    for module, path in modules.items():
        if not is_test(module):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for line, script in [(None, tree), *embedded_scripts(tree)]:
            for edge in imports_in(script, module, path, modules):
                if is_test(edge.target) and (edge.target != module or line is not None):
                    found.append(f"{path.relative_to(root)}:{line or edge.line} imports {edge.target}")
    return sorted(set(found))


def test_the_test_import_reader_sees_imports_in_code_and_in_scripts(tmp_path):
    """A planted import of one test module by another, in code and in a `python -c` script, is found; helpers
    modules and the standard library are not."""
    package = tmp_path / "tests"
    (package / "sub").mkdir(parents=True)
    for name in ("__init__.py", "helpers.py", "test_b.py", "sub/__init__.py", "sub/helpers.py"):
        (package / name).write_text("")
    (package / "test_a.py").write_text("import json\nfrom tests.helpers import x\nfrom .sub import helpers\n"
                                       "def test():\n    from tests.test_b import y\n")
    (package / "sub" / "test_c.py").write_text(
        'SCRIPT = """\n    import sys\n    import tests.sub.test_c as t\n"""\nPROSE = "import this, if you can."\n'
        "from ..test_b import z\n")
    found = imports_of_test_modules(module_files(package, "tests"), tmp_path)
    assert found == ["tests/sub/test_c.py:1 imports tests.sub.test_c", "tests/sub/test_c.py:6 imports tests.test_b",
                     "tests/test_a.py:5 imports tests.test_b"]


def test_no_test_module_imports_another():
    assert len(TEST_MODULES) > 40
    found = imports_of_test_modules(TEST_MODULES)
    assert not found, "test modules import test modules (move the shared code to a helpers module):\n" + "\n".join(found)


# Tests of the product as a whole rather than of one module (ARCHITECTURE.md names them): they stay at the top.
WHOLE_PRODUCT_TESTS = {"tests.test_architecture", "tests.test_bad_inputs", "tests.test_journey", "tests.test_models",
                       "tests.test_pytorch_material", "tests.test_readme", "tests.test_sweeps"}


def mirrored_source(test_module: str, repo: Path = REPO) -> Path | None:
    """What a test module tests: tests/<dirs>/test_<name>.py (or test_<name>_<topic>.py, one module's tests split
    by topic) mirrors tritonconv/<dirs>/<name>.py or the package tritonconv/<dirs>/<name>/, tests/<dirs>/
    test_<dirs' last>.py the package itself; tests/bench/ mirrors bench/ (its shared module is bench/_common.py).
    None where no such source exists."""
    *dirs, leaf = test_module.split(".")[1:]
    root = repo / ROOT
    if dirs[:1] == ["bench"]:
        root, dirs = repo / "bench", dirs[1:]
    base = root.joinpath(*dirs)
    words = leaf[len("test_"):].split("_")
    for end in range(len(words), 0, -1):
        name = "_".join(words[:end])
        for source in (base / f"{name}.py", base / f"_{name}.py", base / name / "__init__.py"):
            if source.is_file():
                return source
        if dirs and name == dirs[-1] and (base / "__init__.py").is_file():
            return base / "__init__.py"
    return None


def test_the_mirror_reader_finds_what_a_test_module_tests(tmp_path):
    for path in ("tritonconv/cache/__init__.py", "tritonconv/cache/entry.py", "tritonconv/compile/__init__.py",
                 "tritonconv/compile_report.py", "tritonconv/search/study.py", "bench/_common.py", "bench/int8.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    found = {m: mirrored_source(m, tmp_path) for m in (
        "tests.cache.test_cache", "tests.cache.test_cache_faults", "tests.cache.test_entry", "tests.test_compile_report",
        "tests.compile.test_compile_keys", "tests.search.test_study_faults", "tests.bench.test_common",
        "tests.bench.test_int8", "tests.test_fp8", "tests.test_bench_int8", "tests.kernels.test_cache")}
    assert {m: s and str(s.relative_to(tmp_path)) for m, s in found.items()} == {
        "tests.cache.test_cache": "tritonconv/cache/__init__.py", "tests.cache.test_cache_faults": "tritonconv/cache/__init__.py",
        "tests.cache.test_entry": "tritonconv/cache/entry.py", "tests.test_compile_report": "tritonconv/compile_report.py",
        "tests.compile.test_compile_keys": "tritonconv/compile/__init__.py",
        "tests.search.test_study_faults": "tritonconv/search/study.py", "tests.bench.test_common": "bench/_common.py",
        "tests.bench.test_int8": "bench/int8.py", "tests.test_fp8": None, "tests.test_bench_int8": None,
        "tests.kernels.test_cache": None,
    }


def test_every_test_module_mirrors_a_source_module_or_tests_the_whole_product():
    tests = [m for m in TEST_MODULES if m.rpartition(".")[2].startswith("test_")]
    assert len(tests) > 40 and WHOLE_PRODUCT_TESTS <= set(tests)
    unmirrored = [m for m in tests if m not in WHOLE_PRODUCT_TESTS and mirrored_source(m) is None]
    assert not unmirrored, f"test modules that mirror no source module (tests/<dirs>/test_<name>.py): {unmirrored}"


def test_the_architecture_doc_names_the_whole_product_tests():
    text = (REPO / "ARCHITECTURE.md").read_text()
    missing = [m for m in sorted(WHOLE_PRODUCT_TESTS) if f"`{m.replace('.', '/')}.py`" not in text]
    assert not missing, missing
