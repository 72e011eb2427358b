"""End-to-end decoding step of a random-weight fp16 model: FibQuant GPU cache against transformers' StaticCache (#17).

For every model shape and batch x context, both caches are filled with the same
random fp16 keys and values (the FibQuant cache encodes them on the GPU), one
decoding step (``q_len == 1``, static ``input_ids`` and ``position_ids``) is captured
in a CUDA graph for each cache in the same way, and the graphs are replayed:
milliseconds per step (CUDA events, median of ``--reps`` timed replays after
``--warm`` warm replays), tokens/s (batch / step time), allocated KV bytes and
the ratios. Every replay decodes the next position of its cache (both caches have
``--headroom`` spare slots). Eager (uncaptured) steps are timed too.

Results go to ``<out>/gpu_e2e.json`` after every case (partial results survive a
failure or the time budget); progress is printed with flush.

Usage (on a GPU machine, the package installed)::

    python research/gpu_e2e_bench.py --out OUT            # both shapes, 1x32k, 8x8k, 8x32k
    python research/gpu_e2e_bench.py --out OUT --smoke    # tiny shapes (also under NUMBA_ENABLE_CUDASIM=1, no graphs)
    python research/gpu_e2e_bench.py --out OUT --window 64   # the FibQuant cache with an fp16 window of 64 tokens
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import transformers

from fibquant_theory.kv.gpu_cache import GPUCodecCache, use_gpu_attention

#: Llama-architecture shapes: SmolLM2-135M, and Qwen2.5-1.5B's attention/MLP sizes (head_dim 128)
SHAPES = {
    "smollm2-135m": {"num_hidden_layers": 30, "hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3,
                     "head_dim": 64, "intermediate_size": 1536, "vocab_size": 49152},
    "qwen2.5-1.5b": {"num_hidden_layers": 28, "hidden_size": 1536, "num_attention_heads": 12, "num_key_value_heads": 2,
                     "head_dim": 128, "intermediate_size": 8960, "vocab_size": 151936},
}
SMOKE = {"tiny": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "num_key_value_heads": 1,
                  "head_dim": 16, "intermediate_size": 64, "vocab_size": 61}}
CASES = ((1, 32768), (8, 8192), (8, 32768))
#: FibQuant options per head_dim: k = 8, N = 256 (records of 16 + 8 (d / 8) bits), Hadamard rotation
def codec_options(d: int, smoke: bool) -> dict:
    if smoke:
        return {"block": 4, "codewords": 16, "rotation": "hadamard", "n_train": 4000, "n_heldout": 1000, "cache": False}
    return {"block": 8, "codewords": 256, "rotation": "hadamard"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_model(shape: dict, device: torch.device, dtype: torch.dtype) -> transformers.PreTrainedModel:
    cfg = transformers.LlamaConfig(**shape, max_position_embeddings=65536 + 4096)
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.LlamaForCausalLM(cfg)
    model = model.to(dtype).eval()
    return use_gpu_attention(model)


def static_cache(cfg, capacity: int):
    try:
        return transformers.StaticCache(config=cfg, max_cache_len=capacity)
    except TypeError:  # older signatures
        return transformers.StaticCache(cfg, max_batch_size=1, max_cache_len=capacity)


def fill(cache, cfg, batch: int, context: int, device, dtype) -> None:
    """Write the same random states (seeded per layer) into every layer of ``cache``."""
    kv, d = cfg.num_key_value_heads, cfg.head_dim
    positions = torch.arange(context, device=device)
    for i in range(cfg.num_hidden_layers):
        g = torch.Generator(device=device).manual_seed(1000 + i)
        k = torch.randn(batch, kv, context, d, device=device, dtype=torch.float32, generator=g).to(dtype)
        v = torch.randn(batch, kv, context, d, device=device, dtype=torch.float32, generator=g).to(dtype)
        cache.update(k, v, i, {"cache_position": positions})
        del k, v


def kv_bytes(cache) -> int:
    if hasattr(cache, "memory_bytes"):
        return int(cache.memory_bytes())
    total = 0
    for layer in cache.layers:
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if t is not None:
                total += t.numel() * t.element_size()
    return total


def step_fn(model, cache, batch: int, context: int, device):
    """One decoding step on static inputs (``cache_position`` given: no host read of a device length, older transformers)."""
    ids = torch.zeros(batch, 1, dtype=torch.long, device=device)
    pos = torch.full((batch, 1), context, dtype=torch.long, device=device)
    cpos = torch.full((1,), context, dtype=torch.long, device=device)

    def step():
        with torch.no_grad():
            return model(input_ids=ids, position_ids=pos, cache_position=cpos, past_key_values=cache, use_cache=True).logits
    return step


def time_case(model, cache, batch: int, context: int, device, args) -> dict:
    """Eager and CUDA-graph ms per step of one filled cache."""
    graphs = device.type == "cuda"
    step = step_fn(model, cache, batch, context, device)
    out: dict = {"kv_bytes": kv_bytes(cache)}
    sync = torch.cuda.synchronize if graphs else (lambda: None)
    if graphs:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):  # compile kernels, allocate workspaces
                step()
        torch.cuda.current_stream().wait_stream(s)
    eager = []
    for _ in range(args.eager):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        eager.append(1e3 * (time.perf_counter() - t0))
    out["eager_ms"] = statistics.median(eager) if eager else None
    if not graphs:
        return out
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        logits = step()
    for _ in range(args.warm):
        graph.replay()
    sync()
    times = []
    for _ in range(args.reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    out["ms"] = statistics.median(times)
    out["ms_min"] = min(times)
    out["tokens_per_s"] = batch / (out["ms"] / 1e3)
    out["logits_finite"] = bool(torch.isfinite(logits).all())
    del graph
    return out


def run(args) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    shapes = SMOKE if args.smoke else {k: SHAPES[k] for k in args.shapes}
    cases = ((2, 8),) if args.smoke else tuple(c for c in CASES if f"{c[0]}x{c[1]}" in args.cases)
    report = {"window": args.window, "torch": torch.__version__, "transformers": transformers.__version__, "device": str(device),
              "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None, "headroom": args.headroom,
              "reps": args.reps, "warm": args.warm, "results": [], "errors": []}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dest = out / "gpu_e2e.json"
    start = time.perf_counter()

    def save() -> None:
        dest.write_text(json.dumps(report, indent=1))

    for name, shape in shapes.items():
        if time.perf_counter() - start > args.budget:
            report["errors"].append(f"{name}: skipped, time budget {args.budget} s spent")
            save()
            continue
        log(f"shape {name}: building the model and the codebook")
        try:
            model = build_model(shape, device, dtype)
            cfg = model.config
            opts = {**codec_options(shape["head_dim"], args.smoke), "window": args.window}
            t0 = time.perf_counter()
            GPUCodecCache.from_method(cfg, 8, **opts)  # designs (or loads) the codebook once
            log(f"  model and codebook ready ({time.perf_counter() - t0:.1f} s for the codebook)")
        except Exception:
            report["errors"].append(f"{name}: {traceback.format_exc(limit=6)}")
            log(report["errors"][-1])
            save()
            continue
        for batch, context in cases:
            if time.perf_counter() - start > args.budget:
                report["errors"].append(f"{name} {batch}x{context}: skipped, time budget {args.budget} s spent")
                save()
                continue
            row = {"shape": name, "batch": batch, "context": context, "capacity": context + args.headroom, **shape}
            for kind in ("static", "fibquant"):
                cache = None
                try:
                    t0 = time.perf_counter()
                    capacity = context + args.headroom
                    cache = static_cache(cfg, capacity) if kind == "static" else GPUCodecCache.from_method(cfg, capacity, **opts)
                    fill(cache, cfg, batch, context, device, dtype)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    row[kind] = time_case(model, cache, batch, context, device, args)
                    row[kind]["setup_s"] = round(time.perf_counter() - t0, 2)
                    if kind == "fibquant" and device.type == "cuda":
                        cache.check_errors()
                    log(f"  {name} {batch}x{context} {kind}: {row[kind]}")
                except Exception:
                    row[kind] = {"error": traceback.format_exc(limit=8)}
                    log(f"  {name} {batch}x{context} {kind} FAILED:\n{row[kind]['error']}")
                del cache
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            s, f = row.get("static", {}), row.get("fibquant", {})
            if "ms" in s and "ms" in f:
                row["speedup"] = s["ms"] / f["ms"]
            if s.get("kv_bytes") and f.get("kv_bytes"):
                row["memory_ratio"] = s["kv_bytes"] / f["kv_bytes"]
            if s.get("eager_ms") and f.get("eager_ms"):
                row["eager_speedup"] = s["eager_ms"] / f["eager_ms"]
            report["results"].append(row)
            save()
            log(f"  {name} {batch}x{context}: speedup {row.get('speedup')}, memory ratio {row.get('memory_ratio')}")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report["elapsed_s"] = round(time.perf_counter() - start, 1)
    save()
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder of gpu_e2e.json")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--cases", nargs="+", default=[f"{b}x{t}" for b, t in CASES], help="BxT among 1x32768 8x8192 8x32768")
    p.add_argument("--headroom", type=int, default=64, help="spare slots past the context (warm-up and replays)")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warm", type=int, default=5)
    p.add_argument("--eager", type=int, default=3)
    p.add_argument("--budget", type=float, default=250.0, help="seconds after which no new shape or case starts")
    p.add_argument("--smoke", action="store_true", help="a tiny model (CPU under the simulator: no graphs)")
    p.add_argument("--window", type=int, default=0, help="fp16 window of the FibQuant cache (default 0)")
    args = p.parse_args(argv)
    if args.warm + args.reps + args.eager + 4 > args.headroom:
        p.error("--headroom must exceed the steps run per cache (warm + reps + eager + 4)")
    report = run(args)
    for row in report["results"]:
        s, f = row.get("static", {}), row.get("fibquant", {})
        print(f"{row['shape']:14s} {row['batch']}x{row['context']:<6d} static {s.get('ms', s.get('eager_ms'))} ms  "
              f"fibquant {f.get('ms', f.get('eager_ms'))} ms  speedup {row.get('speedup')}  memory {row.get('memory_ratio')}",
              flush=True)
    return 0 if not report["errors"] and all("error" not in r.get(k, {}) for r in report["results"] for k in ("static", "fibquant")) else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
