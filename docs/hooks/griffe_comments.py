"""Griffe extension: ``#:`` comments as the docstrings of the attributes they document.

The package documents its module constants and class attributes the Sphinx way, with
``#:`` comment lines just above the assignment (or one ``#:`` comment at the end of
its line)::

    #: Short name -> module of the proof checks, in the order they run.
    PROOF_MODULES: dict[str, str] = {...}

Griffe only reads docstrings written as a string literal *after* an assignment, so
without this extension every such attribute is undocumented and mkdocstrings leaves it
out of the reference. For each attribute griffe loads without a docstring, this
extension reads the source lines above it (and its own line) and, if they are ``#:``
comments, makes them its docstring. Declared in ``mkdocs.yml`` under the mkdocstrings
python handler's ``extensions``, before ``griffe_rst.py`` (which then converts it).
"""

from __future__ import annotations

import ast
import re
from typing import Any

from griffe import Attribute, Docstring, Extension

__all__ = ["SphinxCommentDocstrings", "comment_docstring"]

_TRAILING = re.compile(r"#:\s?(.*)$")


def comment_docstring(lines: list[str], lineno: int) -> str | None:
    """The ``#:`` comment that documents the assignment starting on line ``lineno``, if any.

    Parameters
    ----------
    lines : list of str
        The source lines of the file (without line ends).
    lineno : int
        1-based line number of the assignment.

    Returns
    -------
    str or None
        The text of the ``#:`` lines just above the assignment (the ``#:`` and one
        space removed, lines joined with newlines), or else of a ``#:`` comment at the
        end of the assignment's line; ``None`` if there is neither.
    """
    above: list[str] = []
    i = lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        text = lines[i].lstrip()[2:]
        above.append(text[1:] if text.startswith(" ") else text)
        i -= 1
    if above:
        return "\n".join(reversed(above)).strip() or None
    if 0 < lineno <= len(lines):
        m = _TRAILING.search(lines[lineno - 1])
        if m and m.group(1).strip():
            return m.group(1).strip()
    return None


class SphinxCommentDocstrings(Extension):
    """Give every undocumented attribute the text of its ``#:`` comment (see the module docstring)."""

    def on_instance(self, *, node: ast.AST | Any, obj: Any, agent: Any, **kwargs: Any) -> None:  # noqa: D102 - griffe hook
        # ``on_instance`` (not ``on_attribute_instance``): it runs first, before the
        # reStructuredText extension listed after this one converts the docstring.
        attr = obj
        if not isinstance(attr, Attribute) or attr.docstring is not None or attr.lineno is None:
            return
        try:
            lines = attr.lines_collection[attr.filepath]  # type: ignore[index]
        except (KeyError, TypeError, AttributeError):
            return
        text = comment_docstring(list(lines), attr.lineno)
        if text:
            attr.docstring = Docstring(text, lineno=attr.lineno, parent=attr)
