"""Griffe extension: the subpackages that setuptools installs from other folders.

``pyproject.toml`` maps ``fibquant_theory.gpu`` to the top-level ``gpu/`` folder and
``fibquant_theory.proofs`` to ``proofs/`` (``[tool.setuptools.package-dir]``). Griffe's
static finder only looks under ``fibquant_theory/``, so when it loads the package this
extension loads each mapped folder from source and attaches it as the submodule it is
installed as. Declared in ``mkdocs.yml`` under the mkdocstrings python handler's
``extensions``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from griffe import Extension, GriffeLoader, Module

__all__ = ["PackageDirs", "package_dirs"]

ROOT = Path(__file__).resolve().parents[2]


def package_dirs(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, Path]:
    """``dotted name -> folder`` for every package-dir entry that is not the package's own folder.

    Parameters
    ----------
    pyproject : pathlib.Path
        The project's ``pyproject.toml``.

    Returns
    -------
    dict of str to pathlib.Path
        E.g. ``{"fibquant_theory.gpu": ROOT / "gpu"}``.
    """
    text = pyproject.read_text()
    section = re.search(r"^\[tool\.setuptools\.package-dir\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if section is None:
        return {}
    out = {}
    for name, folder in re.findall(r'^\s*"([\w.]+)"\s*=\s*"([^"]+)"', section.group(1), re.M):
        if "." in name and folder != name.replace(".", "/"):
            out[name] = pyproject.parent / folder
    return out


class PackageDirs(Extension):
    """Attach the package-dir mapped folders to their parent package (see the module docstring)."""

    def on_package(self, *, pkg: Module, loader: GriffeLoader, **kwargs: Any) -> None:  # noqa: D102 - griffe hook
        for dotted, folder in package_dirs().items():
            parent, _, name = dotted.rpartition(".")
            if parent != pkg.path or name in pkg.members or not (folder / "__init__.py").is_file():
                continue
            module = loader.load(folder, submodules=True)
            if isinstance(module, Module):
                module.name = name
                pkg.set_member(name, module)
