"""docs/architecture.md's table of layers is true to the code: every module of the package is in it, each row's
imports are exactly the modules it imports (inside functions too; a sub-package counts as one module), and every
import points to a lower layer (so there is no cycle). Read with `ast`, nothing is imported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "emoreg_hf"
ROW = re.compile(r"^\| (\d+) \| `([\w/]+)` \| [^|]+ \| ([^|]+) \|$")


def unit(module: str) -> str:
    """`data.sources` -> `data/`; `run_dir` -> `run_dir`: how the table names a module."""
    head = module.split(".")[0]
    return f"{head}/" if (PACKAGE / head).is_dir() else head


def imported(path: Path, module: str) -> set[str]:
    """The package's modules `module` imports, as `unit` names them."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif (node.module or "").startswith("emoreg_hf"):
                target = node.module.removeprefix("emoreg_hf").lstrip(".")
            else:
                continue
            names = [f"{target}.{a.name}".lstrip(".") for a in node.names] if not target else [target]
            found.update(name for name in names if name)
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("emoreg_hf.") for a in node.names if a.name.startswith("emoreg_hf.")
            )
    heads = {name.split(".")[0] for name in found}
    modules = {
        h for h in heads if (PACKAGE / h).is_dir() or (PACKAGE / f"{h}.py").is_file()
    }  # not __version__
    return {unit(name) for name in found if name.split(".")[0] in modules} - {unit(module)}


def code_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts == ("__init__",):
            continue  # the package's public API: it re-exports from everywhere
        module = ".".join(p for p in parts if p != "__init__")
        graph.setdefault(unit(module), set()).update(imported(path, module))
    return graph


def documented() -> dict[str, tuple[int, set[str]]]:
    rows = {}
    for line in (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            layer, name, imports = match.groups()
            rows[name] = (int(layer), set(re.findall(r"`([\w/]+)`", imports)))
    return rows


def test_the_documented_layers_are_the_code_and_every_import_points_down():
    code, docs = code_graph(), documented()
    assert set(docs) == set(code), (
        f"modules not in the table: {set(code) - set(docs)}; gone: {set(docs) - set(code)}"
    )
    wrong = {
        m: (sorted(code[m] - docs[m][1]), sorted(docs[m][1] - code[m])) for m in code if code[m] != docs[m][1]
    }
    assert not wrong, f"imports the table misses / draws but the code lacks: {wrong}"
    upward = [
        f"{m} (layer {docs[m][0]}) -> {t} (layer {docs[t][0]})"
        for m in code
        for t in code[m]
        if docs[t][0] >= docs[m][0]
    ]
    assert not upward, f"imports that do not point to a lower layer: {upward}"
