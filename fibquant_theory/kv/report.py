"""Rows of the KV-cache evaluation as tables and CSV files (no torch needed).

:data:`KV_COLUMNS` are the columns of :func:`fibquant_theory.kv.evaluate.kv_eval`
rows in table order: the method, the rate options of every registered KV method
(:data:`~fibquant_theory.codecs.registry.SPECS`), then the measurements and settings.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fibquant_theory.codecs.registry import SPECS

__all__ = ["KV_COLUMNS", "flat_rows", "kv_columns", "write_csv"]

_RATE_COLUMNS = list(dict.fromkeys(o for spec in SPECS.values() if spec.kv for o in spec.rate_options))

#: Columns of a kv_eval row, in table order (the per-text ``ppl_fp:<text>``, ``ppl:<text>`` columns go after
#: ``compression``, see :func:`kv_columns`).
KV_COLUMNS = [
    "method", *_RATE_COLUMNS, *(f"value_{c}" for c in _RATE_COLUMNS), "nbits", "compression",
    "delta_ppl_pct", "delta_ppl_pct_std", "attn_cosine", "attn_cosine_std", "score_cosine", "attn_kl",
    "key_mse", "value_mse", "window", "fp_layers", "center", "norm_correction", "seeds",
]


def kv_columns(rows: Sequence[dict[str, Any]], label: bool = False) -> list[str]:
    """The columns of :data:`KV_COLUMNS` that some row has, with the per-text perplexities after ``compression``.

    Parameters
    ----------
    rows : sequence of dict
        Rows of :func:`~fibquant_theory.kv.evaluate.kv_eval`.
    label : bool
        Put ``label`` (the series name of :mod:`fibquant_theory.kv.pareto`) first instead of ``method``.

    Returns
    -------
    list of str
        Column names.
    """
    texts = list(dict.fromkeys(k.split(":", 1)[1] for r in rows for k in r if k.startswith("ppl:")))
    ppl = [c for t in texts for c in (f"ppl_fp:{t}", f"ppl:{t}")]
    cols = [c for c in KV_COLUMNS if any(c in r for r in rows)]
    at = cols.index("compression") + 1 if "compression" in cols else len(cols)
    cols = cols[:at] + ppl + cols[at:]
    return ["label", *cols[1:]] if label else cols


def flat_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows with their list values (e.g. ``fp_layers``) as strings, for tables and CSV files.

    Parameters
    ----------
    rows : sequence of dict
        Rows (e.g. of :func:`~fibquant_theory.kv.evaluate.kv_eval`).
    columns : sequence of str, optional
        Keep exactly these keys (``None`` where a row lacks one); default: every key of every row.

    Returns
    -------
    list of dict
        The flattened rows.
    """
    flat = [{k: (str(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows]
    if columns is None:
        return flat
    return [{c: r.get(c) for c in columns} for r in flat]


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` to a CSV file (columns from the first row); returns the path.

    Parameters
    ----------
    rows : sequence of dict
        At least one row; every row has the first row's keys.
    path : str or os.PathLike
        The file (missing parent folders are created).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
