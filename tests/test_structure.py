"""The code's shape: no import cycles between the project's modules (at module level or inside functions)."""

import ast

from common.paths import REPO_ROOT

PACKAGES = ("common", "continual", "dataloader", "datasets", "hlop", "models", "pretrain", "benchmarks")


def project_imports() -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its file."""
    graph = {}
    for path in REPO_ROOT.rglob("*.py"):
        relative = path.relative_to(REPO_ROOT)
        if relative.parts[0] not in PACKAGES or any(part.startswith(".") for part in relative.parts):
            continue
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            targets |= {name for name in names if name.split(".")[0] in PACKAGES}
        graph[module] = targets
    return {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}


def test_no_module_imports_itself_through_others():
    graph = project_imports()
    assert "dataloader.scene" in graph and "dataloader.dataset" in graph["dataloader.scene"]

    def reaches(start, goal, seen):
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    cycles = [m for m in graph if reaches(m, m, set())]
    assert not cycles, f"import cycles through: {', '.join(sorted(cycles))}"


def test_functions_read_in_one_screen():
    """No function of the library or the scripts is longer than 60 lines (tests and benchmarks excepted)."""
    long = []
    for path in REPO_ROOT.rglob("*.py"):
        relative = path.relative_to(REPO_ROOT)
        if relative.parts[0] in ("tests", "benchmarks") or any(part.startswith(".") for part in relative.parts):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{relative}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, "functions over 60 lines: " + ", ".join(long)


def test_the_scripts_only_parse_flags_and_call_the_library():
    for script, most in (("spiking_train_multimodal_end.py", 120), ("spiking_pretrain_multimodal.py", 120)):
        lines = (REPO_ROOT / script).read_text().splitlines()
        assert len(lines) <= most, f"{script} has {len(lines)} lines"
