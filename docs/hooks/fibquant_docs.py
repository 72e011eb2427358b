"""MkDocs hook of the FibQuant site (declared under ``hooks:`` in ``mkdocs.yml``).

* ``on_pre_build`` (once per process): runs ``docs/hooks/docs_assets.py``, which writes the
  figures and tables of the site into the git-ignored ``docs/generated/`` with the
  package's own ``fibquant`` commands. Set ``FIBQUANT_DOCS_SKIP_ASSETS=1`` to reuse the
  files already there (fast ``mkdocs serve`` restarts) and ``FIBQUANT_DOCS_SAMPLES`` to
  change the unit vectors per rate–distortion point (default 20000).
* ``on_config``: appends the "API reference" section to the navigation, one page per
  module listed in ``extra.api_modules``, grouped by subpackage.
* ``on_files``: adds those API pages (``::: module``, rendered by mkdocstrings) and
  the MathJax 3 files of the installed ``django-static-mathjax`` package under
  ``assets/mathjax/`` (no CDN: the built site renders math offline).
"""

from __future__ import annotations

import importlib.util
import os
from importlib import resources
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

__all__ = ["on_config", "on_pre_build", "on_files", "api_page_path", "mathjax_root", "IFRAME_WORKER_SHIM"]

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "docs" / "generated"
_ASSETS_DONE = False

#: Parts of MathJax's es5 tree needed by ``tex-chtml.js`` (the rest are other bundles).
_MATHJAX_PARTS = ("tex-chtml.js", "input", "output/chtml", "ui", "a11y", "sre", "adaptors")


def api_page_path(module: str) -> str:
    """Path of the generated API page of ``module`` inside the site, e.g. ``api/theory/source.md``.

    The package itself is ``api/index.md``; a module ``fibquant_theory.a.b`` is ``api/a/b.md``.
    """
    parts = module.split(".")[1:]
    return "api/" + ("/".join(parts) if parts else "index") + ".md"


def mathjax_root() -> Path:
    """The ``es5`` folder of MathJax 3 shipped by the ``django-static-mathjax`` package."""
    try:
        root = Path(str(resources.files("mathjax"))) / "static" / "mathjax" / "es5"
    except ModuleNotFoundError:
        root = None
    if root is None or not (root / "tex-chtml.js").is_file():
        raise PluginError(
            "MathJax not found: install the docs extra (`pip install -e '.[docs]'`, "
            "which brings `django-static-mathjax`, the MathJax 3 files as a Python package)"
        )
    return root


def _api_modules(config: MkDocsConfig) -> list[str]:
    modules = config.extra.get("api_modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise PluginError("extra.api_modules in mkdocs.yml must be a list of module names")
    paths = [api_page_path(m) for m in modules]
    if len(set(paths)) != len(paths):
        raise PluginError(f"extra.api_modules: two modules map to the same page: {paths}")
    return modules


#: The iframe-worker shim served from the site, in place of the CDN copy that Material's offline plugin adds.
IFRAME_WORKER_SHIM = "javascripts/iframe-worker-shim.js"


@event_priority(-100)  # after the plugins' own on_config (the offline plugin's adds the shim)
def on_config(config: MkDocsConfig, **kwargs: Any) -> MkDocsConfig:
    """Append the "API reference" section (one entry per module) to the navigation.

    Also replaces the offline plugin's CDN address of the iframe-worker shim by
    :data:`IFRAME_WORKER_SHIM` (the site must load nothing from the network).
    """
    polyfills = config.extra.get("polyfills") or []
    config.extra["polyfills"] = [IFRAME_WORKER_SHIM if "iframe-worker" in str(p) else p for p in polyfills]
    modules = _api_modules(config)
    if modules and config.nav is not None:
        # One menu group per subpackage ("codebooks" > "overview", "design", ...); pages keep the full name.
        section: list[dict[str, Any]] = []
        groups: dict[str, list[dict[str, str]]] = {}
        for module in modules:
            parts = module.split(".")[1:]
            if not parts or (len(parts) == 1 and not any(m.startswith(module + ".") for m in modules)):
                section.append({parts[0] if parts else module: api_page_path(module)})
                continue
            if parts[0] not in groups:
                groups[parts[0]] = []
                section.append({parts[0]: groups[parts[0]]})
            title = ".".join(parts[1:]) or "overview"
            groups[parts[0]].append({title: api_page_path(module)})
        config.nav = [item for item in config.nav if not (isinstance(item, dict) and "API reference" in item)]
        config.nav.append({"API reference": section})
    return config


def _load_hook_module(name: str) -> Any:
    """Import ``docs/hooks/<name>.py`` (the hooks folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"fibquant_docs_{name}", ROOT / "docs" / "hooks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _griffe_package(config: MkDocsConfig, modules: list[str]) -> Any:
    """``fibquant_theory`` loaded by griffe with the python handler's extensions (static: nothing is imported)."""
    import griffe

    try:
        handler = config.plugins["mkdocstrings"].config["handlers"]["python"]
        extensions = handler.get("options", {}).get("extensions", [])
    except (KeyError, AttributeError):
        extensions = []
    top = modules[0].split(".")[0] if modules else "fibquant_theory"
    return griffe.load(
        top,
        search_paths=[str(ROOT)],
        extensions=griffe.load_extensions(*[str(ROOT / e) if isinstance(e, str) else e for e in extensions]),
        docstring_parser="numpy",
        resolve_aliases=False,
    )


def on_pre_build(config: MkDocsConfig, **kwargs: Any) -> None:
    """Generate ``docs/generated/`` with the package's commands (once per process)."""
    global _ASSETS_DONE
    if _ASSETS_DONE:
        return
    if os.environ.get("FIBQUANT_DOCS_SKIP_ASSETS") == "1" and (GENERATED / "rd_scalar_table.md").is_file():
        _ASSETS_DONE = True
        return
    spec = importlib.util.spec_from_file_location("fibquant_docs_assets", ROOT / "docs" / "hooks" / "docs_assets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.generate(GENERATED, samples=int(os.environ.get("FIBQUANT_DOCS_SAMPLES", "20000")))
    except (RuntimeError, ValueError) as exc:
        raise PluginError(f"generating the documentation figures failed: {exc}") from exc
    _ASSETS_DONE = True


def on_files(files: Files, config: MkDocsConfig, **kwargs: Any) -> Files:
    """Add the generated API pages and the MathJax assets to the build."""
    modules = _api_modules(config)
    pages = _load_hook_module("api_pages")
    loaded = _griffe_package(config, modules)
    for module in modules:
        content = pages.module_page(module, modules, loaded)
        if module == "fibquant_theory.cli.main":
            from fibquant_theory.cli.main import build_parser

            content += "\n" + pages.cli_subcommands_markdown(build_parser())
        files.append(File.generated(config, api_page_path(module), content=content))
    root = mathjax_root()
    for part in _MATHJAX_PARTS:
        path = root / part
        sources = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for src in sources:
            rel = src.relative_to(root).as_posix()
            files.append(File.generated(config, f"assets/mathjax/{rel}", abs_src_path=str(src)))
    return files
