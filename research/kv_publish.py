"""Copy the results of ``make kv-sweep`` into ``docs/results/kv`` (the page "KV caches on real models").

Reads the cached points of ``build/kv-sweep/points/<model>/`` (no model is loaded, nothing is
evaluated again), writes ``kv_pareto_<model>.csv`` and ``.png`` with the package's own
functions, and copies the ``kv_fit_<model>`` CSV and PNG files and the ``kv-generate`` outputs::

    .venv/bin/python research/kv_publish.py [--sweep build/kv-sweep] [--out docs/results/kv]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from fibquant_theory.kv.pareto import csv_rows, plot_pareto
from fibquant_theory.kv.report import write_csv

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="build/kv-sweep")
    ap.add_argument("--out", default="docs/results/kv")
    args = ap.parse_args()
    sweep, out = Path(args.sweep), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for folder in sorted((sweep / "points").iterdir()):
        rows = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
        rows = [r for r in rows if isinstance(r, dict) and "method" in r]
        order = {"fp": 0}
        rows.sort(key=lambda r: (order.get(r["method"], 1), r.get("label", r["method"]), r["compression"]))
        write_csv(csv_rows(rows), out / f"kv_pareto_{folder.name}.csv")
        r = next(r for r in rows if r["method"] == "fibquant")
        protocol = (f"windows of {r['ctx']} tokens (stride {r['stride']}), prefill in chunks of {r['chunk']}, "
                    f"{r['seeds']} rotation seeds, texts {', '.join(r['tokens'])} ({max(r['tokens'].values())} tokens each)")
        plot_pareto(rows, out / f"kv_pareto_{folder.name}.png", title=f"{folder.name}: {protocol}")
        print(f"{folder.name}: {len(rows)} points")
    for pattern in ("kv_fit_*.csv", "kv_fit_*.png", "gen-*.json", "times.txt", "sub1bit-*.json", "metric-*.json"):
        for path in sweep.glob(pattern):
            shutil.copy(path, out / path.name)


if __name__ == "__main__":
    main()
