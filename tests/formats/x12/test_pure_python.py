"""formats/ stays free of Django: the sandbox clearinghouse imports it without the hub."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

FORMATS = Path(__file__).resolve().parents[3] / "formats"


def test_no_module_under_formats_imports_django():
    offenders = []
    for path in sorted(FORMATS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] in ("django", "rest_framework")]
    assert offenders == []


def test_importing_every_x12_module_loads_no_django():
    script = (
        "import pkgutil, importlib, sys\n"
        "import formats.x12\n"
        "for module in pkgutil.walk_packages(formats.x12.__path__, 'formats.x12.'):\n"
        "    importlib.import_module(module.name)\n"
        "print(sorted(name for name in sys.modules if name == 'django' or name.startswith('django.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=FORMATS.parent, capture_output=True, text=True, timeout=60, check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.strip() == "[]"
