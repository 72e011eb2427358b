"""The Markdown of the generated API pages (used by ``docs/hooks/fibquant_docs.py``).

* A **module** page is ``::: module`` (mkdocstrings renders it).
* A **package** page (a module with submodules) renders only the package's docstring
  and the names it defines itself, then *index tables*: its public names (``__all__``)
  with the module that defines each, and its submodules, every entry linking to the
  page where it is documented. The top-level ``fibquant_theory`` page re-exports about
  forty names; rendering them there again made it repeat every class of the reference.
* The page of :mod:`fibquant_theory.cli.main` also gets the ``--help`` of every
  subcommand, printed by the package's own argument parser at build time.

The tables are built from the same static (griffe) view of the sources as the rest of
the reference, so nothing is imported: the GPU package is indexed without numba-cuda.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["module_page", "summary_line", "resolve_export", "cli_subcommands_markdown"]


def summary_line(obj: Any) -> str:
    """The first paragraph of ``obj``'s docstring on one line, ready for a Markdown table cell.

    Parameters
    ----------
    obj : griffe.Object
        A module, class, function or attribute.

    Returns
    -------
    str
        The text up to the first blank line, whitespace collapsed and ``|`` escaped;
        ``""`` when ``obj`` has no docstring.
    """
    doc = getattr(obj, "docstring", None)
    if doc is None or not doc.value.strip():
        return ""
    first = doc.value.strip().split("\n\n", 1)[0]
    return " ".join(first.split()).replace("|", "\\|")


def _kind(obj: Any) -> str:
    kind = getattr(getattr(obj, "kind", None), "value", "object")
    if kind == "attribute":
        return "constant" if obj.name.isupper() else "attribute"
    return str(kind)


def resolve_export(package: Any, name: str) -> Any | None:
    """The object that the name ``name`` of ``package.__all__`` refers to.

    Parameters
    ----------
    package : griffe.Module
        A package loaded by griffe.
    name : str
        One of its exported names.

    Returns
    -------
    griffe.Object or None
        The target of the package's member ``name`` (an import is followed to the
        object it imports); for a name that the package only provides lazily (through a
        module ``__getattr__``), the object of that name defined in one of its
        submodules; ``None`` if neither exists.
    """
    member = package.members.get(name)
    if member is not None:
        try:
            return member.final_target if member.is_alias else member
        except Exception:  # noqa: BLE001 - an import griffe cannot follow (outside the package)
            return None
    for sub in package.modules.values():
        found = sub.members.get(name)
        if found is not None and not found.is_alias:
            return found
    return None


def _exports(package: Any) -> list[str]:
    names = package.exports
    if names is None:
        return []
    return [n if isinstance(n, str) else n.name for n in names]


def _public_home(loaded: Any, documented: Sequence[str], target: Any, name: str) -> str | None:
    """The documented module that exports ``name`` (its ``__all__``) as ``target``, the deepest first; or ``None``."""
    for path in sorted(documented, key=lambda p: -p.count(".")):
        if path == loaded.path or not path.startswith(loaded.path + "."):
            continue
        try:
            mod = loaded[path[len(loaded.path) + 1 :]]
        except KeyError:
            continue
        if name in _exports(mod) and getattr(resolve_export(mod, name), "path", None) == target.path:
            return path
    return None


def module_page(module: str, documented: Sequence[str], loaded: Any | None) -> str:
    """The Markdown source of the API page of ``module``.

    Parameters
    ----------
    module : str
        Dotted module name, one of ``documented``.
    documented : sequence of str
        Every module that has an API page (``extra.api_modules``).
    loaded : griffe.Module or None
        The package ``fibquant_theory`` loaded by griffe (with the extensions of
        ``mkdocs.yml``); ``None`` renders ``module`` as a plain module page.

    Returns
    -------
    str
        ``::: module`` for a module; for a package, the package with only the members
        that no other API page documents, then the index tables described in the
        module docstring.
    """
    children = [m for m in documented if m.startswith(module + ".") and "." not in m[len(module) + 1 :]]
    if loaded is None or not children:
        return f"::: {module}\n"
    package = loaded if module == loaded.path else loaded[module[len(loaded.path) + 1 :]]
    rows: list[str] = []
    own: list[str] = []
    for name in _exports(package):
        target = resolve_export(package, name)
        home = target.module.path if target is not None else None
        anchor = target.path if target is not None else None
        if target is not None and home not in documented:  # defined in a private module: its public re-export
            home = _public_home(loaded, documented, target, name)
            anchor = f"{home}.{name}" if home is not None else None
        if target is None or home is None or home == module:
            own.append(name)
            continue
        link = f"[`{name}`][{anchor}]" if target.docstring is not None else f"`{name}`"
        short = home[len(loaded.path) + 1 :] if home.startswith(loaded.path + ".") else home
        rows.append(f"| {link} | {_kind(target)} | [`{short}`][{home}] | {summary_line(target)} |")
    options = "    options:\n      show_submodules: false\n"
    members = [n for n in own if not n.startswith("_") and n in package.members]
    options += f"      members: [{', '.join(members)}]\n" if members else "      members: false\n"
    parts = [f"::: {module}\n{options}"]
    if rows:
        parts.append(
            f"## Public names\n\nThe names exported by `{module}` (its `__all__`), each documented "
            "on the page of the module that defines it.\n\n"
            "| name | kind | defined in | summary |\n| --- | --- | --- | --- |\n" + "\n".join(rows) + "\n"
        )
    mods = [
        f"| [`{c.rsplit('.', 1)[1]}`][{c}] | {summary_line(package.modules.get(c.rsplit('.', 1)[1]))} |" for c in children
    ]
    parts.append("## Modules\n\n| module | summary |\n| --- | --- |\n" + "\n".join(mods) + "\n")
    return "\n".join(parts)


@contextlib.contextmanager
def _columns(width: int) -> Iterator[None]:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:  # argparse keeps the subcommands in its _SubParsersAction
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            out += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return out


def cli_subcommands_markdown(parser: argparse.ArgumentParser, width: int = 96) -> str:
    """Every subcommand of ``parser`` with its one-line help and its full ``--help`` text.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``fibquant`` parser (``fibquant_theory.cli.main.build_parser()``).
    width : int, default 96
        Line width of the ``--help`` texts.

    Returns
    -------
    str
        Markdown: a table of the subcommands, then one section per subcommand.
    """
    subs = _subparsers(parser)
    if not subs:
        raise ValueError("the parser has no subcommands")
    lines = [
        "## Subcommands",
        "",
        f"Generated from `build_parser()` when the site is built: `{parser.prog}` has {len(subs)} subcommands.",
        "",
        "| subcommand | what it does |",
        "| --- | --- |",
    ]
    lines += [f"| [`{parser.prog} {name}`](#{parser.prog}-{name}) | {text} |" for name, text, _ in subs]
    with _columns(width):
        for name, text, sub in subs:
            lines += ["", f"### `{parser.prog} {name}` {{ #{parser.prog}-{name} }}", "", text + ".", "", "```text"]
            lines += [sub.format_help().rstrip(), "```"]
    return "\n".join(lines) + "\n"
