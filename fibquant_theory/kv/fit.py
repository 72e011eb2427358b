r"""Does a real KV cache look like the spherical-Beta source? The statistics of ``fibquant kv-fit``.

FibQuant stores a cached vector :math:`x\in\mathbb{R}^d` (one head's key or value) as
its norm and the unit direction :math:`u = x/\|x\|` rotated by one shared Haar-random
orthogonal matrix :math:`\Pi`; the rotated vector :math:`y = \Pi u` is cut into
:math:`d/k` blocks :math:`y_b` of :math:`k` coordinates. The codebook is designed for
the law of a block of a *uniform* unit vector, whose squared radius is

.. math::

    \|y_b\|^2 \sim \mathrm{Beta}\!\left(\tfrac k2, \tfrac{d-k}2\right)

(:class:`~fibquant_theory.theory.source.SphericalBeta`). This module measures how far
the keys and values a model writes to its cache are from that premise, layer by layer:

* ``mean_energy_fraction``: per head, :math:`n\|\bar x\|^2/\sum_t\|x_t\|^2` with
  :math:`\bar x` the mean over the :math:`n` tokens, the share of the energy in the
  common offset (0 for centred data, 1 for a constant vector); mean and max over heads.
* ``outlier_channel_ratio``: per head, the largest channel RMS over the median channel
  RMS; max over heads.
* Kolmogorov–Smirnov distances of :math:`\|y_b\|^2` to the Beta law, per block position
  :math:`b` (all heads and tokens; ``ks_block_*`` lists them, ``ks_block_max_*`` is the
  largest) and pooled over the positions (``ks_pooled_*``), for the raw vectors and for
  the centred ones (each head's mean over tokens removed before normalising).
* The same KS distances for as many i.i.d. uniform unit vectors through the same
  rotation (``*_uniform``): what the premise predicts at this sample size.

The rotation is :class:`~fibquant_theory.theory.rotation.DenseRotation` ``(d, seed)``,
the matrix a FibQuant or TurboQuant codec of seed ``seed`` uses (drawn from
``numpy.random.default_rng(seed)``). The uniform sample of layer ``l`` and role ``r``
is drawn from ``numpy.random.default_rng([seed, l, r, tag])``, a fixed non-zero ``tag``
keeping it apart from the rotation's stream, so a row depends on ``seed`` only and every
layer and role gets its own reference sample.
Nothing here needs torch except :func:`capture_kv` and :func:`kv_fit`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fibquant_theory._validation import check_finite_rows, check_int
from fibquant_theory.kv.report import flat_rows, write_csv
from fibquant_theory.theory.rotation import DenseRotation, Rotation
from fibquant_theory.theory.source import SphericalBeta, sample_unit_vectors

__all__ = [
    "FIT_COLUMNS",
    "ROLES",
    "STAT_COLUMNS",
    "capture_kv",
    "fit_vectors",
    "kv_fit",
    "ks_statistic",
    "plot_fit",
    "summarize_fit",
    "write_fit",
]

#: The two roles of a cached vector, in row order (a role's index seeds its uniform sample).
ROLES = ("key", "value")

#: Last word of the uniform samples' seed entropy. ``default_rng`` pads short entropy with zeros, so
#: without it ``[seed, 0, 0]`` would be ``seed`` itself: the stream the rotation matrix is drawn from.
_UNIFORM_TAG = 0x554E4946

#: The per-layer statistics (the numeric columns that :func:`summarize_fit` summarises).
STAT_COLUMNS = [
    "mean_energy_fraction", "mean_energy_fraction_max", "outlier_channel_ratio",
    "ks_pooled_raw", "ks_pooled_centred", "ks_block_max_raw", "ks_block_max_centred",
    "ks_pooled_uniform", "ks_block_max_uniform",
]

#: Columns of a :func:`kv_fit` row, in order (the ``ks_block_*`` lists have one entry per block position).
FIT_COLUMNS = [
    "layer", "role", "heads", "head_dim", "tokens", *STAT_COLUMNS, "block", "seed",
    "ks_block_raw", "ks_block_centred", "ks_block_uniform",
]


def _check_block(block: object, d: int) -> int:
    """``block`` as an int with ``1 <= block < d`` dividing ``d``; ``ValueError`` otherwise."""
    k = check_int(block, "block", minimum=1)
    if k >= d or d % k:
        raise ValueError(
            f"block must divide head_dim and be smaller than it: got block={k} for head_dim={d} "
            f"(divisors: {[j for j in range(1, d) if d % j == 0]})"
        )
    return k


def ks_statistic(samples: object, cdf: Any) -> np.ndarray:
    r"""Kolmogorov–Smirnov distance :math:`\sup_s|F_n(s)-F(s)|` of samples to a continuous law, along the last axis.

    Parameters
    ----------
    samples : array_like, shape (..., n)
        ``n >= 1`` samples per row (finite).
    cdf : callable
        The law's CDF, applied elementwise to an array.

    Returns
    -------
    numpy.ndarray, shape (...)
        The distances, in ``[0, 1]`` (a 0-d array for 1-d ``samples``).
    """
    s = np.sort(np.asarray(samples, dtype=np.float64), axis=-1)
    n = s.shape[-1]
    if n < 1:
        raise ValueError("ks_statistic needs at least one sample per row")
    if not np.isfinite(s).all():
        raise ValueError("ks_statistic: samples contain NaN or Inf")
    f = np.asarray(cdf(s), dtype=np.float64)
    i = np.arange(1, n + 1, dtype=np.float64)
    return np.maximum(np.max(i / n - f, axis=-1), np.max(f - (i - 1) / n, axis=-1))


def _block_energies(x: np.ndarray, rotation: Rotation, k: int) -> np.ndarray:
    """``||(Pi x/||x||)_b||^2`` of the non-zero rows of ``x (N, d)``: shape ``(N', d/k)``."""
    norms = np.sqrt(np.sum(x * x, axis=1))
    keep = norms > 0
    y = rotation.forward(x[keep] / norms[keep, None])
    return np.sum(y.reshape(y.shape[0], x.shape[1] // k, k) ** 2, axis=2)


def _ks_pair(energies: np.ndarray, cdf: Any) -> tuple[float, float, list[float]]:
    """(pooled KS, max over positions, per-position KS) of block energies ``(N, m)``; NaN for ``N == 0``."""
    if energies.shape[0] == 0:
        return math.nan, math.nan, [math.nan] * energies.shape[1]
    per_block = ks_statistic(energies.T, cdf)
    return float(ks_statistic(energies.reshape(-1), cdf)), float(per_block.max()), [float(v) for v in per_block]


def fit_vectors(
    x: object,
    *,
    block: int = 8,
    seed: int = 0,
    rotation: Rotation | None = None,
    uniform_seed: int | Sequence[int] | None = None,
    name: str = "x",
) -> dict[str, Any]:
    """The kv-fit statistics of one layer's keys (or values).

    Parameters
    ----------
    x : array_like, shape (..., tokens, d)
        The cached vectors; each index of the leading axes (e.g. ``(batch, heads)``)
        is one head, centred with its own mean. ``tokens >= 2``, ``d >= 2``, finite.
    block : int
        Block size ``k``, ``1 <= k < d``, dividing ``d`` (default 8).
    seed : int
        Seed of the rotation :class:`~fibquant_theory.theory.rotation.DenseRotation` ``(d, seed)``
        (when ``rotation`` is not given) and, without ``uniform_seed``, of the uniform sample.
    rotation : Rotation, optional
        The shared rotation (dimension ``d``); pass one to reuse it across layers.
    uniform_seed : int or sequence of int, optional
        Seed of the uniform reference sample (default ``seed``): it is drawn from
        ``numpy.random.default_rng([*uniform_seed, tag])`` with a fixed non-zero ``tag``,
        a stream apart from the rotation's ``default_rng(seed)``.
    name : str
        How error messages name ``x``.

    Returns
    -------
    dict
        ``heads``, ``head_dim``, ``tokens``, the :data:`STAT_COLUMNS`, ``block``,
        ``seed`` and the per-position lists ``ks_block_raw``, ``ks_block_centred``,
        ``ks_block_uniform`` (length ``d/k``). Zero vectors have no direction and are
        left out of the KS statistics (a head with no energy gives NaN for its
        energy fraction and outlier ratio; a zero median channel RMS gives ``inf``).

    Raises
    ------
    ValueError
        Fewer than 2 tokens, ``d < 2``, NaN or Inf in ``x``, a bad ``block`` or a
        rotation of another dimension.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have shape (..., tokens, d), got {arr.shape}")
    n, d = arr.shape[-2:]
    if n < 2 or d < 2:
        raise ValueError(f"{name} needs at least 2 tokens and d >= 2, got shape {arr.shape}")
    k = _check_block(block, d)
    seed = check_int(seed, "seed", minimum=0)
    x3 = arr.reshape(-1, n, d)
    if x3.shape[0] == 0:
        raise ValueError(f"{name} holds no head (shape {arr.shape})")
    check_finite_rows(x3, name)
    rotation = DenseRotation(d, seed) if rotation is None else rotation
    if rotation.d != d:
        raise ValueError(f"the rotation has dimension {rotation.d}, but {name} has d={d}")
    heads = x3.shape[0]

    with np.errstate(divide="ignore", invalid="ignore"):
        energy = np.sum(x3 * x3, axis=(1, 2))
        mean = x3.mean(axis=1)  # (heads, d)
        fraction = n * np.sum(mean * mean, axis=1) / energy
        rms = np.sqrt(np.mean(x3 * x3, axis=1))  # (heads, d)
        ratio = np.max(rms, axis=1) / np.median(rms, axis=1)

    def nan_stat(values: np.ndarray, how: Any) -> float:
        ok = values[~np.isnan(values)]
        return float(how(ok)) if ok.size else math.nan

    cdf = SphericalBeta(d, k).radius2.cdf
    raw = _ks_pair(_block_energies(x3.reshape(-1, d), rotation, k), cdf)
    centred = _ks_pair(_block_energies((x3 - mean[:, None, :]).reshape(-1, d), rotation, k), cdf)
    entropy = [seed] if uniform_seed is None else np.atleast_1d(uniform_seed).tolist()
    rng = np.random.default_rng([*entropy, _UNIFORM_TAG])
    uniform = _ks_pair(_block_energies(sample_unit_vectors(heads * n, d, rng), rotation, k), cdf)
    return {
        "heads": heads,
        "head_dim": d,
        "tokens": n,
        "mean_energy_fraction": nan_stat(fraction, np.mean),
        "mean_energy_fraction_max": nan_stat(fraction, np.max),
        "outlier_channel_ratio": nan_stat(ratio, np.max),
        "ks_pooled_raw": raw[0],
        "ks_pooled_centred": centred[0],
        "ks_block_max_raw": raw[1],
        "ks_block_max_centred": centred[1],
        "ks_pooled_uniform": uniform[0],
        "ks_block_max_uniform": uniform[1],
        "block": k,
        "seed": seed,
        "ks_block_raw": raw[2],
        "ks_block_centred": centred[2],
        "ks_block_uniform": uniform[2],
    }


def _check_ids(ids: Any) -> Any:
    """``ids`` as a ``(1, n)`` integer torch tensor with ``n >= 2``."""
    import torch

    if not isinstance(ids, torch.Tensor):
        ids = torch.as_tensor(np.asarray(ids))
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"ids must be integer token ids, got dtype {ids.dtype}")
    if ids.ndim != 2 or ids.shape[0] != 1 or ids.shape[1] < 2:
        raise ValueError(f"ids must have shape (1, n) with n >= 2, got {tuple(ids.shape)}")
    return ids


def capture_kv(model: Any, ids: Any, chunk: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The keys and values every layer of ``model`` writes to its cache for ``ids``, all tokens kept.

    The forward pass gets a ``transformers`` ``DynamicCache()`` built without a config,
    so every layer is a full ``DynamicLayer``: sliding-window layers keep every token
    too (their attention still uses the window, through the mask). Keys are as the cache
    stores them (after the key norm, if any, and RoPE).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM (e.g. Llama, Gemma3, Qwen2), in eval mode.
    ids : torch.Tensor, shape (1, n)
        Integer token ids, ``n >= 2``.
    chunk : int, optional
        Feed the tokens ``chunk`` at a time through the growing cache (default: all at once).

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        Per layer, ``(keys, values)`` as float64 NumPy arrays on the CPU, each of shape
        ``(1, kv_heads, n, head_dim)``.

    Raises
    ------
    ValueError
        Bad ``ids`` or ``chunk``.
    RuntimeError
        The model did not fill the cache with all ``n`` tokens of every layer (e.g. it
        replaced the cache by its own).
    """
    import inspect

    import torch
    from transformers.cache_utils import DynamicCache

    ids = _check_ids(ids)
    n = int(ids.shape[1])
    step = n if chunk is None else check_int(chunk, "chunk", minimum=1)
    device = getattr(model, "device", None)
    if device is not None:
        ids = ids.to(device)
    cache = DynamicCache()
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    with torch.no_grad():
        for start in range(0, n, step):
            model(ids[:, start : start + step], cache=cache, use_cache=True, **extra)
    layers = list(getattr(cache, "layers", []))
    if not layers:
        raise RuntimeError(f"{type(model).__name__} wrote nothing to the DynamicCache it was given")
    out = []
    for i, layer in enumerate(layers):
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if keys is None or values is None or keys.ndim != 4 or keys.shape[-2] != n or values.shape[-2] != n:
            shape = None if keys is None else tuple(keys.shape)
            raise RuntimeError(f"layer {i} of the cache does not hold all {n} tokens (keys of shape {shape})")
        out.append(tuple(t.detach().to("cpu", torch.float64).numpy() for t in (keys, values)))
    return out


def kv_fit(
    model: Any, ids: Any, *, block: int = 8, seed: int = 0, chunk: int | None = None, progress: bool = False
) -> list[dict[str, Any]]:
    """The kv-fit statistics of every layer's keys and values on the tokens ``ids``.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM in eval mode (see :func:`capture_kv`).
    ids : torch.Tensor, shape (1, n)
        Integer token ids, ``n >= 2``.
    block : int
        Block size ``k``: ``1 <= k < head_dim``, dividing ``head_dim`` (default 8).
    seed : int
        Seed of the shared rotation and of the uniform reference samples (default 0).
    chunk : int, optional
        Tokens per forward pass (default: all at once).
    progress : bool
        Show a progress bar over the layers.

    Returns
    -------
    list of dict
        One row per ``(layer, role)``, keys before values, with the :data:`FIT_COLUMNS`
        (see :func:`fit_vectors`).

    Raises
    ------
    ValueError
        Bad ``ids``, ``block`` or ``seed``, or NaN / Inf in the captured keys or values.
    """
    from tqdm.auto import tqdm

    ids = _check_ids(ids)
    seed = check_int(seed, "seed", minimum=0)
    config = getattr(model, "config", None)
    if config is not None:
        from fibquant_theory.kv.cache import head_dim_of

        _check_block(block, head_dim_of(config))  # fail before the forward pass
    captured = capture_kv(model, ids, chunk=chunk)
    rotations: dict[int, Rotation] = {}
    rows = []
    for layer, kv in enumerate(tqdm(captured, desc="kv-fit", unit="layer", disable=not progress)):
        for r, (role, x) in enumerate(zip(ROLES, kv)):
            d = x.shape[-1]
            _check_block(block, d)
            if d not in rotations:
                rotations[d] = DenseRotation(d, seed)
            stats = fit_vectors(
                x, block=block, seed=seed, rotation=rotations[d], uniform_seed=[seed, layer, r],
                name=f"the {role} cache of layer {layer}",
            )
            rows.append({"layer": layer, "role": role, **stats})
    return rows


def summarize_fit(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Model-level summary of :func:`kv_fit` rows: per role, the mean and max over layers of each statistic.

    Parameters
    ----------
    rows : sequence of dict
        At least one row, each with ``layer``, ``role``, ``tokens`` and the :data:`STAT_COLUMNS`.

    Returns
    -------
    dict
        ``{"layers": L, "tokens": n, "block": k, role: {statistic: {"mean", "max", "max_layer"}}}``
        for every role present; NaN values are skipped (all NaN gives NaN and ``max_layer`` ``None``).
    """
    if not rows:
        raise ValueError("summarize_fit needs at least one row")
    missing = [c for c in ("layer", "role", *STAT_COLUMNS) if c not in rows[0]]
    if missing:
        raise ValueError(f"the rows lack the columns {missing}")
    summary: dict[str, Any] = {
        "layers": len({r["layer"] for r in rows}),
        "tokens": rows[0].get("tokens"),
        "block": rows[0].get("block"),
    }
    for role in dict.fromkeys(r["role"] for r in rows):
        mine = [r for r in rows if r["role"] == role]
        entry = {}
        for stat in STAT_COLUMNS:
            pairs = [(float(r[stat]), r["layer"]) for r in mine if not math.isnan(float(r[stat]))]
            if pairs:
                top = max(pairs, key=lambda p: p[0])
                entry[stat] = {"mean": sum(v for v, _ in pairs) / len(pairs), "max": top[0], "max_layer": top[1]}
            else:
                entry[stat] = {"mean": math.nan, "max": math.nan, "max_layer": None}
        summary[role] = entry
    return summary


def plot_fit(rows: Sequence[dict[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """A 2×2 figure of :func:`kv_fit` rows against the layer index; returns the path of the PNG.

    Top: the largest per-position KS distance (raw, centred, uniform reference) for
    keys (left) and values (right), log scale. Bottom left: the mean-energy fraction
    (mean and max over heads) of keys and values; bottom right: the outlier channel ratio.

    Parameters
    ----------
    rows : sequence of dict
        Rows of :func:`kv_fit` (at least one).
    path : str or os.PathLike
        The PNG file (missing parent folders are created).
    title : str, optional
        The figure's title (default: block size and tokens).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("plot_fit needs at least one row")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    series = (("ks_block_max_raw", "raw", "o-"), ("ks_block_max_centred", "centred", "s-"),
              ("ks_block_max_uniform", "uniform reference", "k--"))
    colours = {"key": "tab:blue", "value": "tab:orange"}
    for ax, role in zip(axes[0], ROLES):
        mine = [r for r in rows if r["role"] == role]
        for column, label, style in series:
            ax.plot([r["layer"] for r in mine], [max(float(r[column]), 1e-4) for r in mine], style, ms=4, label=label)
        ax.set_yscale("log")
        ax.set_title(f"{role}s: largest KS distance over block positions")
        ax.set_ylabel(r"KS of $\|y_b\|^2$ vs Beta$(k/2,(d-k)/2)$")
    for role in ROLES:
        mine = [r for r in rows if r["role"] == role]
        layers = [r["layer"] for r in mine]
        c = colours[role]
        energy = [r["mean_energy_fraction"] for r in mine]
        axes[1, 0].plot(layers, energy, "o-", color=c, ms=4, label=f"{role}s, mean over heads")
        energy_max = [r["mean_energy_fraction_max"] for r in mine]
        axes[1, 0].plot(layers, energy_max, ":", color=c, label=f"{role}s, max over heads")
        axes[1, 1].plot(layers, [r["outlier_channel_ratio"] for r in mine], "o-", color=c, ms=4, label=f"{role}s")
    axes[1, 0].set_ylim(0, 1)
    axes[1, 0].set_title("energy in the per-head mean")
    axes[1, 0].set_ylabel(r"$n\|\bar x\|^2/\sum_t\|x_t\|^2$")
    axes[1, 1].set_yscale("log")
    axes[1, 1].set_title("outlier channels (max over heads)")
    axes[1, 1].set_ylabel("max / median channel RMS")
    for ax in axes.flat:
        ax.set_xlabel("layer")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        _tidy_axes(ax)
    if title is None:
        title = f"kv-fit: blocks of k={rows[0].get('block')}, {rows[0].get('tokens')} tokens"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _tidy_axes(ax: Any) -> None:
    """Integer layer ticks; plain-number labels on a log y axis (minor ones: all under a decade, else 2 and 5)."""
    from matplotlib import ticker

    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    if ax.get_yscale() == "log":
        lo, hi = ax.get_ylim()
        wanted = None if hi < 10 * lo else (2, 5) if hi < 1000 * lo else ()

        def minor(v: float, _: Any) -> str:
            mantissa = round(v / 10 ** math.floor(math.log10(v) + 1e-9))
            return f"{v:g}" if wanted is None or mantissa in wanted else ""

        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.FuncFormatter(minor))


def write_fit(
    rows: Sequence[dict[str, Any]], out_dir: str | Path, stem: str, title: str | None = None
) -> tuple[Path, Path]:
    """Write :func:`kv_fit` rows to ``<out_dir>/<stem>.csv`` and their figure to ``<out_dir>/<stem>.png``.

    Parameters
    ----------
    rows : sequence of dict
        Rows of :func:`kv_fit` (the per-position lists become strings in the CSV).
    out_dir : str or os.PathLike
        Output folder (created if missing).
    stem : str
        File name without suffix, e.g. ``"kv_fit_smollm2-135m"``.
    title : str, optional
        The figure's title (see :func:`plot_fit`).

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The CSV and PNG paths.
    """
    if not stem or "/" in stem or "\\" in stem:
        raise ValueError(f"stem must be a plain file name, got {stem!r}")
    out = Path(out_dir)
    csv_path = write_csv(flat_rows(rows), out / f"{stem}.csv")
    return csv_path, plot_fit(rows, out / f"{stem}.png", title=title)
