"""The layering rule: stages are siblings over one core.

No stage package (generation, training, evaluation, analysis, pipeline, studies) imports another
stage package's modules; the drivers (pipeline, studies) may call a stage through its public
entry, the package itself (``import ssd.generation``, ``from ssd.evaluation import
run_evaluation``), and the studies build on the pipeline's stage machinery (``stages.ensure``,
its report helpers). The core (every other module under ssd/) imports no stage at all. Checked on
the source (imports inside functions too), so a violation fails here whether or not a test
happens to execute it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

STAGES = ("generation", "training", "evaluation", "analysis", "pipeline", "studies")
DRIVERS = ("pipeline", "studies")
BUILDS_ON = {"studies": ("pipeline",)}   # a driver layer over another


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted module) of every absolute import, ``from ssd.x import y`` giving both
    ``ssd.x`` and ``ssd.x.y`` (y may be a submodule)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def layer_of(parts: tuple[str, ...]) -> str:
    """The stage a module of ``ssd`` belongs to, or "core"."""
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else "core"


def violations(root: Path) -> list[str]:
    found = []
    for path in sorted((root / "ssd").rglob("*.py")):
        module = path.relative_to(root).with_suffix("").parts
        mine = layer_of(module)
        reported: set[int] = set()  # one finding per import statement
        for line, name in imported_modules(ast.parse(path.read_text(), str(path))):
            parts = tuple(name.split("."))
            if parts[0] != "ssd" or line in reported:
                continue
            theirs = layer_of(parts)
            if theirs in ("core", mine, *BUILDS_ON.get(mine, ())):
                continue
            # ssd.<stage> itself, or a public name of it (an attribute, not a module).
            public = len(parts) == 2 or (len(parts) == 3 and not _is_module(root, parts))
            if mine in DRIVERS and public:
                continue
            found.append(f"{path.relative_to(root)}:{line}: {mine} imports {name}")
            reported.add(line)
    return found


def _is_module(root: Path, parts: tuple[str, ...]) -> bool:
    base = root.joinpath(*parts)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def test_no_stage_imports_another_stage_and_the_core_imports_no_stage():
    assert violations(REPO) == []


def test_the_check_finds_a_stage_reaching_into_another(tmp_path):
    """The rule itself: a stage importing another's module, a driver importing a stage's module
    and the core importing a stage are found; a driver using a stage's public entry is not."""
    for package in ("ssd/generation", "ssd/training", "ssd/pipeline"):
        (tmp_path / package).mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "ssd/__init__.py").write_text("")
    (tmp_path / "ssd/generation/run.py").write_text("x = 1\n")
    (tmp_path / "ssd/training/data.py").write_text(
        "def f():\n    from ssd.generation.run import x\n")
    (tmp_path / "ssd/pipeline/demo.py").write_text(
        "import ssd.generation\nfrom ssd.training import validate\n"
        "from ssd.generation import run\n")
    (tmp_path / "ssd/records.py").write_text("import ssd.training\n")
    assert violations(tmp_path) == [
        "ssd/pipeline/demo.py:3: pipeline imports ssd.generation.run",
        "ssd/records.py:1: core imports ssd.training",
        "ssd/training/data.py:2: training imports ssd.generation.run",
    ]
