"""Write the docs' GPU tables (docs/results/gpu/*.json) from one `gpu.bench --json` result file.

Usage: python research/gpu_results_to_docs.py research/results/h200-bench-<date>.json [--date YYYY-MM-DD]
       [--e2e research/results/h200-e2e-<date>.json] [--ceiling research/results/h200-write-ceiling-<date>.json]

``--e2e`` adds the end-to-end decoding-step table (``research/gpu_e2e_bench.py``, issue #17) and
``--ceiling`` the decode against a copy and a pure write (``research/gpu_write_ceiling.py``).

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


def e2e_rows(data: dict) -> list[dict]:
    """One row per model shape and batch x context of a ``gpu_e2e_bench.py`` result: graph ms, tokens/s, KV MiB, ratios."""
    rows = []
    for r in data["results"]:
        s, f = r["static"], r["fibquant"]
        rows.append({"model shape": r["shape"], "B x T": f"{r['batch']}x{r['context'] // 1024}k",
                     "StaticCache fp16 ms": _round(s["ms"]), "FibQuant ms": _round(f["ms"]),
                     "speedup (tokens/s)": _round(r["speedup"]), "FibQuant tokens/s": _round(f["tokens_per_s"]),
                     "KV MiB fp16": _round(s["kv_bytes"] / 2**20), "KV MiB FibQuant": _round(f["kv_bytes"] / 2**20),
                     "memory ratio": _round(r["memory_ratio"]), "eager ms fp16": _round(s["eager_ms"]),
                     "eager ms FibQuant": _round(f["eager_ms"])})
    return rows


def write_doc(path: Path, title: str, date: str, machine: str, command: str, source: Path, rows: list[dict]) -> None:
    doc = {"title": title, "machine": machine, "date": date, "command": command,
           "source": str(source.resolve().relative_to(ROOT)), "rows": rows}
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({len(rows)} rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path)
    parser.add_argument("--date", default=None, help="date of the run (default: taken from the file name)")
    parser.add_argument("--machine", default="one NVIDIA H200")
    parser.add_argument("--e2e", type=Path, default=None, help="a research/gpu_e2e_bench.py result (gpu_e2e.json)")
    parser.add_argument("--ceiling", type=Path, default=None, help="a research/gpu_write_ceiling.py result")
    args = parser.parse_args()
    data = json.loads(args.result.read_text())
    date = args.date or re.search(r"\d{4}-\d{2}-\d{2}", args.result.name).group(0)
    out = ROOT / "docs" / "results" / "gpu"
    out.mkdir(parents=True, exist_ok=True)
    for order, (section, (title, cols)) in enumerate(TABLES.items(), start=1):
        rows = [{RENAME.get(c, c): _round(r[c]) for c in cols if c in r} for r in data[section]]
        if not rows:
            raise SystemExit(f"{args.result}: no {section} rows")
        write_doc(out / f"{order}-{section}.json", title, date, args.machine,
                  "python -m fibquant_theory.gpu.bench --tune decode --json", args.result, rows)
    if args.e2e is not None:
        write_doc(out / "4-e2e.json", "One decoding step of a random-weight fp16 Llama, CUDA graph: FibQuant GPU cache "
                  "(k=8, N=256, Hadamard) against transformers' StaticCache fp16", date, args.machine,
                  "python research/gpu_e2e_bench.py --out OUT", args.e2e, e2e_rows(json.loads(args.e2e.read_text())))
    if args.ceiling is not None:
        rows = [{c: _round(v) for c, v in r.items()} for r in json.loads(args.ceiling.read_text())["rows"]]
        write_doc(out / "5-write-ceiling.json", "Decode against a copy and a pure write (fill_) of its fp16 output, "
                  "same size, same run (GB/s = bytes read + written)", date, args.machine,
                  "python research/gpu_write_ceiling.py --out OUT", args.ceiling, rows)


if __name__ == "__main__":
    main()
