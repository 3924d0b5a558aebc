"""No module imports a higher layer (lazy imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mpe_ssl"

#: the floors, lowest first; a module may import its own floor and the ones below
LAYERS = [
    ("errors", "grid", "atomic", "distributed", "configs", "runs", "weights", "chunks"),
    ("batch", "formats", "notes"),
    ("audio",),
    ("decode", "onnx_model"),  # transcription without torch: salience -> files, the ONNX Runtime engine
    ("data",),
    ("transforms", "models"),
    ("losses", "metrics"),
    ("systems",),
    ("pretrained",),  # the packaged model; imports the systems only to export a checkpoint
    ("callbacks",),
    ("transcribe", "transcribe_cli", "onnx_export", "separate", "pseudo_label"),
    ("cli", "demo"),
    ("__main__",),
]
FLOOR = {name: floor for floor, names in enumerate(LAYERS) for name in names}


def _unit(module: str) -> str:
    """``mpe_ssl.audio.hcqt`` -> ``audio``."""
    return module.split(".")[1] if module.count(".") else module


def test_every_module_has_a_floor_and_imports_none_above_it():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        unit = relative.parts[1].removesuffix(".py") if len(relative.parts) > 1 else "__init__"
        if unit == "__init__":
            continue
        assert unit in FLOOR, f"{relative}: not in any layer of tests/test_layers.py"
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name.startswith("mpe_ssl.") and FLOOR[_unit(name)] > FLOOR[unit]:
                    problems.append(f"{'/'.join(relative.parts)} ({unit}) imports {name}")
    assert not problems, "\n".join(problems)
