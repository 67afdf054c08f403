"""The sandbox is a separate program: the hub's own code never imports it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HUB_PACKAGES = ("hub", "tenants", "canonical", "connectors", "reconciliation", "scheduling", "events", "formats")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__"):
            found.update(arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str))
    return found


def test_no_hub_module_imports_the_sandbox():
    offenders = []
    for package in HUB_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir() else []:
            for module in imported_modules(path):
                if module == "sandbox" or module.startswith("sandbox."):
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_the_check_sees_an_import_when_there_is_one(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("import os\nfrom sandbox.server import Sandbox\nimportlib.import_module('sandbox.build')\n")
    assert {"sandbox.server", "sandbox.build"} <= imported_modules(sample)
