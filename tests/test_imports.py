"""The package's import graph has no cycle: every module's llm_ner imports, at module level and inside
functions (a lazy import can hide a cycle, not remove it), sorted topologically."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "llm_ner"


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module name -> the llm_ner modules it imports."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph = {}
    for module, (path, is_package) in modules.items():
        here = module if is_package else module.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = ".".join(filter(None, [base if node.level else "", node.module or ""]))
                # `from X import name` imports the submodule X.name where there is one
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != module}
        graph[module] = edges
    return graph


def test_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30 and graph["llm_ner.cli.main"]  # the walk found the package
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_the_data_layer_imports_only_errors():
    """Every other stage reads data; data reads nothing of llm-ner but its errors."""
    graph = import_graph()
    outside = {t for m, edges in graph.items() if m.split(".")[:2] == ["llm_ner", "data"] for t in edges}
    assert {t for t in outside if not t.startswith("llm_ner.data")} == {"llm_ner.errors"}


# Where the flags of the commands are declared: imported by the command line to build its parsers, so they
# must not import torch (`llm-ner --help` takes 0.7 s, not the 5 s of importing torch and transformers).
OPTIONS_MODULES = [
    "llm_ner.options",
    "llm_ner.extraction.options",
    "llm_ner.serving.options",
    "llm_ner.backends.openai",
    "llm_ner.baselines.config",
    "llm_ner.quickstart",
    "llm_ner.cli.main",
]


def test_the_options_modules_and_the_command_line_import_no_torch():
    import subprocess
    import sys

    code = (
        "import importlib, sys\n"
        f"for name in {OPTIONS_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "    heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules)\n"
        "    assert not heavy, (name, heavy)\n"
        "from llm_ner.cli.main import build_parser\n"
        "build_parser()\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
