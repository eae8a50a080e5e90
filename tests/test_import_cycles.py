"""No import circle among the modules of gankit/ and jobs/.

The graph holds the imports a module runs while it is being imported: statements at module
level, in class bodies, and under module-level `if`/`try`/`with` (but not under
`if TYPE_CHECKING:`, which never runs). Imports inside functions are left out: they run when
the function is called, after every module has finished importing, so they cannot meet a
half-initialised module (they are the lazy imports of ray and optional packages, and a few
that this test does not judge).

Importing `a.b.c` also runs the `__init__` of `a` and `a.b`: the graph has an edge to each
package above the target that is not also above the importer (those already run first).
`from a.b import c` points at the module `a.b.c` when there is one, else at `a.b`.
"""
import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("gankit", "jobs")


def module_files() -> dict:
    """{dotted module name: file} of every module under PACKAGES."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def import_time_nodes(body: list):
    """The import statements among `body` that run when the module is imported."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.ClassDef):
            yield from import_time_nodes(node.body)
        elif isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                yield from import_time_nodes(node.body)
            yield from import_time_nodes(node.orelse)
        elif isinstance(node, (ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody"):
                yield from import_time_nodes(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                yield from import_time_nodes(handler.body)


def targets(node, name: str, is_package: bool, modules: dict) -> list:
    """The modules of ours an import statement in module `name` names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = name if is_package else name.rpartition(".")[0]
    for _ in range(max(node.level - 1, 0)):
        base = base.rpartition(".")[0]
    source = ".".join(p for p in (base if node.level else "", node.module or "") if p)
    return [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source
            for a in node.names]


def with_packages(target: str, importer: str) -> list:
    """`target` and each package above it whose __init__ importing it runs first."""
    parts = target.split(".")
    above = [".".join(parts[:i]) for i in range(1, len(parts))]
    mine = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 2)}
    return [p for p in above if p not in mine] + [target]


def import_graph() -> dict:
    modules = module_files()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        edges = set()
        for node in import_time_nodes(tree.body):
            for target in targets(node, name, path.name == "__init__.py", modules):
                edges.update(t for t in with_packages(target, name)
                             if t in modules and t != name)
        graph[name] = edges
    return graph


def cycles(graph: dict) -> list:
    """One cycle (a list of modules, first = last) per strongly connected component."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):                                   # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(path_within(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def path_within(graph: dict, component: set) -> list:
    """A cycle through the first module of `component`, by breadth-first search."""
    start = min(component)
    came = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(came[path[-1]])
                return path[::-1] + [start]
            if w not in came:
                came[w] = v
                queue.append(w)
    return sorted(component)


def test_no_import_cycle_among_gankit_and_jobs_modules():
    found = cycles(import_graph())
    assert not found, "import circles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_circle_through_a_package_init():
    """jobs.result -> jobs.runtime.cluster runs jobs/runtime/__init__.py first, which
    imports part_driver, which imports jobs.result: a circle (the one issue #26 named, from
    before jobs/result.py moved into jobs/runtime/)."""
    graph = {"jobs": set(),
             "jobs.result": set(with_packages("jobs.runtime.cluster", "jobs.result")),
             "jobs.runtime": {"jobs.runtime.cluster", "jobs.runtime.part_driver"},
             "jobs.runtime.cluster": set(), "jobs.runtime.part_driver": {"jobs.result"}}
    assert graph["jobs.result"] == {"jobs.runtime", "jobs.runtime.cluster"}
    assert cycles(graph) == [["jobs.result", "jobs.runtime", "jobs.runtime.part_driver",
                              "jobs.result"]]
    graph["jobs.result"] = set()
    assert cycles(graph) == []


def test_importing_jobs_loads_neither_torch_nor_ray():
    """`import jobs` (and the command line's module) stays light: a notebook or `gankit
    --help`'s first step does not pay torch's second of imports, nor start Ray."""
    code = ("import sys, jobs, jobs.commands.cli; "
            "print(sorted({'torch', 'ray'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.strip()
    assert out == "[]", out


def test_the_progress_counter_module_loads_neither_torch_nor_ray():
    """Each Ray job starts its progress counter (jobs.runtime.progress.Counter) as an actor
    of its own, whose process imports that module: through jobs.runtime's names, loaded on
    first use, it stays free of torch (seconds of a CPU beside the job's actors)."""
    code = ("import sys, jobs.runtime.progress; "
            "print(sorted({'torch', 'ray'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.strip()
    assert out == "[]", out
