"""The package's layers: ``sb3_qsm.common`` is the ground floor and imports nothing above it."""

import ast
import pathlib

import sb3_qsm

PACKAGE = pathlib.Path(sb3_qsm.__file__).parent


def _imported_modules(source: str, package: str) -> set[str]:
    """
    :param source: Python source code
    :param package: The package the code belongs to (for relative imports)
    :return: Every module it imports, at any depth, and every ``module.name`` it imports from one
    """
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            modules |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return modules


def test_common_imports_nothing_above_it():
    files = sorted((PACKAGE / "common").glob("*.py"))
    assert len(files) >= 5
    for path in files:
        ours = {module for module in _imported_modules(path.read_text(), "sb3_qsm.common") if module.startswith("sb3_qsm")}
        above = {module for module in ours if not module.startswith("sb3_qsm.common")}
        assert not above, f"{path.name} imports {sorted(above)}"


def test_the_import_reader_sees_imports_of_every_kind():
    """The check above would pass on code it cannot read: it reads absolute, nested and relative imports."""
    source = "import os\ndef f():\n    from sb3_qsm.qsm import QSM\nfrom ..convert import convert_to_qsm\n"
    modules = _imported_modules(source, "sb3_qsm.common")
    assert {"os", "sb3_qsm.qsm", "sb3_qsm.qsm.QSM", "sb3_qsm.convert", "sb3_qsm.convert.convert_to_qsm"} <= modules


def test_nothing_edits_the_import_path():
    """Tests, docs, examples and the package import what is installed; none of them edits the import path."""
    root = PACKAGE.parent
    needle = "sys." + "path"  # spelled apart, so that this file does not find itself
    files = [path for folder in ("sb3_qsm", "tests", "docs", "examples") for path in (root / folder).rglob("*.py")]
    assert len(files) > 30
    offenders = [str(path.relative_to(root)) for path in files if "_build" not in path.parts and needle in path.read_text()]
    assert not offenders
