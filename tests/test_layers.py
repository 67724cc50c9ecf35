"""Imports point one way: every module's imports are parsed and checked against DESIGN.md's layer table.

A package may import packages of lower layers only; packages that share a layer may not import each
other; nothing inside the package imports the package root `steerlab`. The table lives here, once.
Layer 0 is ordered inside itself (errors, then paths, progress, stats and schedule, then report), since
every module raises SteerlabError and the report writes through the atomic writers.

KNOWN lists wrong-way imports still tolerated; issue 17 removed the 21 that existed when this test landed,
so it is empty. It is a ratchet: a new wrong-way import fails, and so does a KNOWN entry that no longer occurs.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "steerlab"

LAYERS: dict[str, float] = {
    "errors": 0,
    "paths": 0.1,
    "progress": 0.1,
    "report": 0.2,
    "stats": 0.1,
    "schedule": 0.1,
    "models": 1,
    "data": 1,
    "llm": 2,
    "store": 3,
    "judges": 4,
    "sae": 5,
    "interventions": 6,
    "engine": 7,
    "training": 8,
    "distributed": 8,
    "testing": 8,
    "vectors": 9,
    "esr": 9,
    "circuits": 9,
    "persona": 9,
    "serve": 9,
    "demo": 10,
    "cli": 11,
    "__main__": 12,
}
# (module, imported package) pairs still pointing the wrong way; see the module docstring.
KNOWN: set[tuple[str, str]] = set()  # empty: every import points down
ROOT = "__init__"  # the package root: it re-exports the public API and is imported by no module inside the package


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.name != "__init__.py" else ROOT


def _imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level steerlab package) for every `import steerlab...` / `from steerlab... import` in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "steerlab":
                names = [f"steerlab.{a.name}" for a in node.names]
            else:
                names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}:{node.lineno}: relative import; write the absolute steerlab.* path")
        for name in names:
            parts = name.split(".")
            if parts[0] != "steerlab":
                continue
            target = parts[1] if len(parts) > 1 else ROOT
            if target not in LAYERS and (SRC / target).is_dir() is False and not (SRC / f"{target}.py").is_file():
                target = ROOT  # `from steerlab import generate`: a name of the root, not a module
            found.append((node.lineno, target))
    return found


def violations() -> list[tuple[str, str, str]]:
    """(module, imported package, message) for every import against the table."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        own = _package_of(path)
        if own == ROOT:
            continue
        assert own in LAYERS, f"{path.relative_to(SRC)}: package '{own}' has no layer; add it to LAYERS and DESIGN.md"
        for line, target in _imported_packages(path):
            module = str(path.relative_to(SRC.parent))
            where = f"{module}:{line}"
            if target == own:
                continue
            if target == ROOT:
                out.append(
                    (module, target, f"{where}: imports the package root `steerlab` (import the submodule instead)")
                )
            elif target not in LAYERS:
                out.append((module, target, f"{where}: imports steerlab.{target}, which has no layer"))
            elif LAYERS[target] > LAYERS[own]:
                out.append(
                    (
                        module,
                        target,
                        f"{where}: {own} (layer {LAYERS[own]}) imports {target} (layer {LAYERS[target]}), a higher layer",
                    )
                )
            elif LAYERS[target] == LAYERS[own]:
                out.append(
                    (module, target, f"{where}: {own} imports {target}, a sibling of the same layer {LAYERS[own]}")
                )
    return out


def test_every_package_has_a_layer():
    packages = {
        p.name.removesuffix(".py")
        for p in SRC.iterdir()
        if (p.is_dir() and (p / "__init__.py").is_file()) or p.suffix == ".py"
    }
    missing = sorted(packages - set(LAYERS) - {ROOT})
    assert not missing, f"packages without a layer: {missing}"


def test_imports_point_down():
    found = violations()
    new = [msg for module, target, msg in found if (module, target) not in KNOWN]
    assert not new, f"{len(new)} imports against DESIGN.md's layer table:\n" + "\n".join(new)


def test_known_exceptions_are_still_real():
    gone = KNOWN - {(module, target) for module, target, _ in violations()}
    assert not gone, f"these wrong-way imports are gone; delete them from KNOWN: {sorted(gone)}"


def test_the_checker_sees_a_planted_violation(tmp_path, monkeypatch):
    """Known positive: a store module importing the engine and the package root is caught."""
    pkg = tmp_path / "steerlab"
    (pkg / "store").mkdir(parents=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "store" / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "store" / "bad.py").write_text(
        "import steerlab\nfrom steerlab.engine.generate import generate\n", encoding="utf-8"
    )
    monkeypatch.setitem(globals(), "SRC", pkg)
    messages = [msg for _, _, msg in violations()]
    assert any("package root" in m for m in messages) and any(
        "store (layer 3) imports engine" in m for m in messages
    ), messages
