"""Write the docs' GPU tables (docs/results/gpu/*.json) from one `gpu.bench --json` result file.

Usage: python research/gpu_results_to_docs.py research/results/h200-bench-<date>.json [--date YYYY-MM-DD]

Keeps the columns a reader compares (graph-replay times and same-run ratios) and rounds
them for display; the full result file stays in research/results/.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = {
    "decode": ("Decode (4 194 304 vectors, fp16 out; bandwidth = records read + fp16 written)",
               ["d", "k", "N", "rotation", "bytes/vec", "graph ms", "GB/s", "copy GB/s", "% of copy", "variant"]),
    "encode": ("Encode (4 194 304 fp16 vectors, Hadamard rotation)",
               ["d", "k", "N", "search", "precision", "ms", "blocks/s"]),
    "attention": ("Decode-attention from the codes against fp16 SDPA (one query per head)",
                  ["d", "k", "N", "BxHxT", "sdpa graph ms", "codes graph ms", "graph speedup", "bytes ratio",
                   "host us", "host us (numba launch)", "sdpa host us", "speedup"]),
}


#: Column names as the docs show them (the bench's own names otherwise).
RENAME = {"speedup": "eager speedup", "host us": "host µs", "host us (numba launch)": "host µs (numba launch)",
          "sdpa host us": "SDPA host µs", "sdpa graph ms": "SDPA graph ms"}


def _round(value: object) -> object:
    if isinstance(value, float):
        return float(f"{value:.4g}") if abs(value) < 1e5 else float(f"{value:.3e}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path)
    parser.add_argument("--date", default=None, help="date of the run (default: taken from the file name)")
    parser.add_argument("--machine", default="one NVIDIA H200")
    args = parser.parse_args()
    data = json.loads(args.result.read_text())
    date = args.date or re.search(r"\d{4}-\d{2}-\d{2}", args.result.name).group(0)
    out = ROOT / "docs" / "results" / "gpu"
    out.mkdir(parents=True, exist_ok=True)
    for order, (section, (title, cols)) in enumerate(TABLES.items(), start=1):
        rows = [{RENAME.get(c, c): _round(r[c]) for c in cols if c in r} for r in data[section]]
        if not rows:
            raise SystemExit(f"{args.result}: no {section} rows")
        doc = {"title": title, "machine": args.machine, "date": date,
               "command": "python -m fibquant_theory.gpu.bench --tune decode --json", "source": str(args.result.resolve().relative_to(ROOT)),
               "rows": rows}
        path = out / f"{order}-{section}.json"
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {path.relative_to(ROOT)} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
