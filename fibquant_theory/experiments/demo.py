"""The main job (`make demo`).

1. Rate–distortion on uniform unit vectors: TurboQuant-mse/-prod at b = 1..4 and
   FibQuant at matched rates, d in {64, 128} (table, CSV, figure).
2. The embedded real model (SmolLM2-135M, GPL-3 text, ctx 1024 / stride 512):
   perplexity, attention-output cosine and compression of fp16, FibQuant and
   TurboQuant KV caches (no fp16 window, no uncompressed layers), and a greedy
   generation with an fp16 and a FibQuant cache side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from fibquant_theory._table import format_table
from fibquant_theory.codecs.registry import make_codec
from fibquant_theory.config import DEMO_FAMILY_POINTS, DEMO_KV, DEMO_KV_TOKENS, DEMO_RD_POINTS
from fibquant_theory.experiments.rd import bound_lines, gaussian_reference, rate_distortion
from fibquant_theory.kv.report import flat_rows, write_csv

__all__ = ["scalar_rd_table", "fibquant_rd_table", "plot_rd", "write_csv", "run_demo", "run_kv_demo", "RD_COLUMNS"]

RD_COLUMNS = [
    "method", "d", "rate_bits", "mse", "mse_se", "gaussian_ref", "gap_db", "shannon_lb", "cap_lb", "ip_mse", "ip_bias",
]


def scalar_rd_table(
    dims: Sequence[int] = (64, 128),
    bits: Sequence[int] = (1, 2, 3, 4),
    methods: Sequence[str] = ("turboquant", "turboquant-prod"),
    n_samples: int = 100_000,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Rate–distortion rows for every ``(method, d, bits)``; see :func:`~fibquant_theory.experiments.rd.rate_distortion`.

    Parameters
    ----------
    dims : sequence of int
        Dimensions.
    bits : sequence of int
        Rates.
    methods : sequence of str
        Registered scalar methods.
    n_samples : int
        Unit vectors per point.
    seed : int
        Seed of the codecs and of the samples.
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of dict
        The rows of :func:`~fibquant_theory.experiments.rd.rate_distortion`.
    """
    grid = [(m, d, b) for m in methods for d in dims for b in bits]
    rows = []
    for method, d, b in tqdm(grid, desc="rate-distortion", disable=not progress):
        rows.append(rate_distortion(make_codec(method, d, bits=b, seed=seed), n_samples=n_samples, seed=seed))
    return rows


def plot_rd(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Plot MSE against rate (log scale) per method and dimension, with the reference and the bounds; returns the path.

    Besides the measured points: the Gaussian reference :math:`2^{-2b}` (not a bound) and,
    per dimension, the two lower bounds of
    :func:`~fibquant_theory.experiments.rd.lower_bounds`: the Shannon lower bound of the
    smallest-bound block size among the rows' ``slb_block`` (1 when absent) and the cap bound.

    Parameters
    ----------
    rows : sequence of dict
        Rows of :func:`scalar_rd_table` or :func:`fibquant_rd_table`.
    path : str or pathlib.Path
        PNG file to write (its folder is created).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["d"]), []).append(r)
    for (method, d), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["rate_bits"])
        ax.errorbar(
            [r["rate_bits"] for r in rs],
            [r["mse"] for r in rs],
            yerr=[2 * r["mse_se"] for r in rs],
            # The curves of the two dimensions nearly coincide: large open circles on solid
            # lines for the smallest d, small filled squares on dashed lines over them.
            marker="o" if d == min(r["d"] for r in rows) else "s",
            ms=8 if d == min(r["d"] for r in rows) else 4,
            mfc="none" if d == min(r["d"] for r in rows) else None,
            ls="-" if d == min(r["d"] for r in rows) else "--",
            capsize=2,
            label=f"{method}, d={d}",
        )
    rates = sorted({r["rate_bits"] for r in rows})
    if rates:
        grid = [rates[0] + (rates[-1] - rates[0]) * i / 100 for i in range(101)]
        dims = sorted({int(r["d"]) for r in rows})
        for i, d in enumerate(dims):
            lines = bound_lines(d, grid, {int(r.get("slb_block", 1)) for r in rows if int(r["d"]) == d})
            shade = str(0.15 + 0.4 * i / max(1, len(dims) - 1))
            ax.plot(grid, lines["shannon_lb"], ls=":", color=shade, lw=1.2, label=f"Shannon lower bound, d={d}")
            ax.plot(grid, lines["cap_lb"], ls="-.", color=shade, lw=1.2, label=f"cap lower bound, d={d}")
        ref = [gaussian_reference(b) for b in grid]
        ax.plot(grid, ref, "k--", lw=1, label=r"Gaussian reference $2^{-2b}$ (not a bound)")
    ax.set_yscale("log")
    ax.set_xlabel("rate b (bits per coordinate)")
    ax.set_ylabel(r"$E\|u-\hat u\|^2$ (unit vectors)")
    ax.set_title("Rate–distortion on uniform unit vectors")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fibquant_rd_table(
    dims: Sequence[int] = (64, 128),
    points: Sequence[tuple[int, int] | tuple[int, int, str]] = DEMO_RD_POINTS + DEMO_FAMILY_POINTS,
    n_samples: int = 100_000,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Rate–distortion rows of FibQuant codecs (designed codebooks, cached on disk).

    ``points`` are ``(k, N)`` (the shells design) or ``(k, N, family)``; a row's
    ``method`` is ``fibquant k=K`` for the shells design and ``fibquant-FAMILY k=K N=N``
    otherwise (the structured families beside the shells design at the same ``(k, N)``
    are listed as ``fibquant-shells k=K N=N``).

    Parameters
    ----------
    dims : sequence of int
        Dimensions (a point is skipped where ``k`` does not divide ``d``).
    points : sequence of tuple
        ``(k, N)`` or ``(k, N, family)``.
    n_samples : int
        Unit vectors per point.
    seed : int
        Seed of the codecs, of the designs and of the samples.
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of dict
        The rows of :func:`~fibquant_theory.experiments.rd.rate_distortion`, ``method`` renamed as above.
    """
    grid = [(d, *point) for d in dims for point in points if d % point[0] == 0]
    rows = []
    for d, k, n, *family in tqdm(grid, desc="fibquant rate-distortion", disable=not progress):
        options = {"block": k, "codewords": n, "seed": seed}
        name = f"fibquant k={k}"
        if family:
            options["family"] = family[0]
            name = f"fibquant-{family[0]} k={k} N={n}"
        row = rate_distortion(make_codec("fibquant", d, **options), n_samples=n_samples, seed=seed)
        rows.append({**row, "method": name})
    return rows


def run_kv_demo(out: Path, max_tokens: int | None = None, progress: bool = True) -> str:
    """The KV-cache part of the demo on the embedded model, under the evaluation protocol; writes ``kv_demo.csv``.

    Every method of :data:`~fibquant_theory.config.DEMO_KV` on both registered
    texts (``max_tokens`` each, default :data:`~fibquant_theory.config.DEMO_KV_TOKENS`),
    with the default :class:`~fibquant_theory.kv.evaluate.Protocol`; then greedy
    and beam-search generation with an fp16 and a FibQuant cache. Returns the report.

    Parameters
    ----------
    out : pathlib.Path
        Output folder.
    max_tokens : int, optional
        Tokens of each text.
    progress : bool
        Show progress bars.

    Returns
    -------
    str
        The KV-cache part of the report.
    """
    from fibquant_theory.kv.cache import CodecCache
    from fibquant_theory.kv.evaluate import Protocol, greedy_generate, kv_eval, load_model, perplexity, tokenize
    from fibquant_theory.kv.models import TEXTS, text_path
    from fibquant_theory.kv.report import kv_columns

    model, tok = load_model()
    n_tokens = max_tokens or DEMO_KV_TOKENS
    texts = {name: tokenize(tok, text_path(name).read_text(), n_tokens) for name in TEXTS}
    protocol = Protocol()
    ppl_fp = {name: perplexity(model, ids, lambda: None, protocol.ctx, protocol.stride, protocol.chunk)[0]
              for name, ids in texts.items()}
    rows = []
    for method, opts in tqdm(DEMO_KV, desc="kv-cache methods", disable=not progress):
        rows.append(kv_eval(method, model, texts, protocol=protocol, ppl_fp=ppl_fp, progress=progress, **opts))
    columns = kv_columns(rows)
    flat = flat_rows(rows, columns)
    csv_path = write_csv(flat, out / "kv_demo.csv")
    prompt = "The GNU General Public License is"
    lines = []
    for beams in (1, 3):
        fp_text = greedy_generate(model, tok, prompt, None, 32, beams)
        cache = CodecCache.from_method(model.config, "fibquant", block=2, codewords=256, center="key")
        fq_text = greedy_generate(model, tok, prompt, cache, 32, beams)
        search = "greedy" if beams == 1 else f"beam search ({beams} beams)"
        lines.append(f"{search}, prompt {prompt!r}:\n  fp16 cache    : {fp_text!r}\n"
                     f"  FibQuant k=2 N=256, key-centred ({cache.compression_ratio():.2f}x smaller cache): {fq_text!r}")
    sizes = ", ".join(f"{name} {ids.shape[1]} tokens" for name, ids in texts.items())
    header = f"SmolLM2-135M on {sizes}; {protocol.describe()}; no fp16 window, no fp layers"
    table = format_table(flat, [c for c in columns if c not in ("window", "fp_layers")])
    return f"{header}\n{table}\n\n" + "\n".join(lines) + f"\n\nwrote {csv_path}"


def run_demo(
    out: str | Path = "build/demo",
    n_samples: int = 100_000,
    seed: int = 0,
    progress: bool = True,
    fibquant: bool = True,
    kv: bool = True,
    kv_tokens: int | None = None,
) -> str:
    """Run the main job; return the text report.

    Writes ``rd_scalar.csv``/``rd_scalar.png`` (TurboQuant only) and, with
    ``fibquant``, ``rd_fibquant.csv``/``rd_vs_fibquant.png``; with ``kv``, ``kv_demo.csv``.

    Parameters
    ----------
    out : str or pathlib.Path
        Output folder.
    n_samples : int
        Unit vectors per rate–distortion point.
    seed : int
        Seed of everything.
    progress : bool
        Show progress bars.
    fibquant : bool
        Also measure FibQuant.
    kv : bool
        Also run the KV-cache part.
    kv_tokens : int, optional
        Tokens of each text in the KV part.

    Returns
    -------
    str
        The report that ``fibquant demo`` prints.
    """
    out = Path(out)
    rows = scalar_rd_table(n_samples=n_samples, seed=seed, progress=progress)
    files = [write_csv(rows, out / "rd_scalar.csv"), plot_rd(rows, out / "rd_scalar.png")]
    if fibquant:
        fq_rows = fibquant_rd_table(n_samples=n_samples, seed=seed, progress=progress)
        files += [write_csv(fq_rows, out / "rd_fibquant.csv"), plot_rd(rows + fq_rows, out / "rd_vs_fibquant.png")]
        rows = rows + fq_rows
    report = f"Rate–distortion on uniform unit vectors ({n_samples} per point)\n{format_table(rows, RD_COLUMNS)}\n\nwrote " + ", ".join(map(str, files))
    if kv:
        report += "\n\n" + run_kv_demo(out, kv_tokens, progress)
    return report
