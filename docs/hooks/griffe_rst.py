r"""Griffe extension: the reStructuredText bits of the package's numpydoc docstrings, as Markdown.

The docstrings are written for numpydoc/Sphinx; mkdocstrings renders Markdown. Before
parsing, every docstring is rewritten:

* ``:math:`x``` becomes ``\(x\)`` (typeset by MathJax through ``pymdownx.arithmatex``);
* a ``.. math::`` directive with its indented body (or with the expression on its own
  line, ``.. math:: x``) becomes a ``$$ … $$`` block;
* the cross-reference roles ``:func:``, ``:class:``, ``:meth:``, ``:mod:``, ``:attr:``,
  ``:data:``, ``:obj:``, ``:exc:``, ``:const:`` become inline code (``~a.b.c`` shows
  ``c``, ``text <target>`` shows ``text``).

Declared in ``mkdocs.yml`` under the mkdocstrings python handler's ``extensions``.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

__all__ = ["RstToMarkdown", "rst_to_markdown"]

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_XREF_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const):`([^`]+)`")
_MATH_DIRECTIVE = re.compile(r"^(\s*)\.\. math::[ \t]*(.*?)\s*$")


def _xref(match: re.Match[str]) -> str:
    target = match.group(1).strip()
    explicit = re.fullmatch(r"(.*?)\s*<([^>]+)>", target)
    if explicit:
        shown = explicit.group(1)
    elif target.startswith("~"):
        shown = target[1:].split(".")[-1]
    else:
        shown = target
    return f"`{shown}`"


def _math_blocks(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _MATH_DIRECTIVE.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent = m.group(1)
        # ``.. math:: expr`` (the expression on the directive's line) or an indented body below it.
        body: list[str] = [indent + "    " + m.group(2)] if m.group(2) else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        cut = min((len(b) - len(b.lstrip()) for b in body if b.strip()), default=0)
        if out and out[-1].strip():
            out.append("")
        out.append(f"{indent}$$")
        out.extend(f"{indent}{b[cut:]}" if b.strip() else "" for b in body)
        out.append(f"{indent}$$")
        if i < len(lines) and lines[i].strip():
            out.append("")
    return "\n".join(out)


def rst_to_markdown(text: str) -> str:
    """Rewrite the reStructuredText roles and math directives of a docstring as Markdown.

    Parameters
    ----------
    text : str
        A docstring (already dedented).

    Returns
    -------
    str
        The docstring with ``:math:`` roles as ``\\(…\\)``, ``.. math::`` blocks as
        ``$$…$$`` and cross-reference roles as inline code.
    """
    text = _math_blocks(text)
    text = _MATH_ROLE.sub(lambda m: "\\(" + m.group(1) + "\\)", text)
    return _XREF_ROLE.sub(_xref, text)


class RstToMarkdown(Extension):
    """Apply :func:`rst_to_markdown` to every docstring griffe loads."""

    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:  # noqa: D102 - griffe hook
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
