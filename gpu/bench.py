r"""GPU benchmark of the FibQuant kernels: ``python -m fibquant_theory.gpu.bench``.

Prints one table per measurement, every figure against a baseline measured in
the same run on the same GPU:

(a) decode effective bandwidth (packed bytes read + fp16 bytes written, over
    the kernel time) against a device-to-device copy (``torch`` ``copy_``,
    bytes read + written);
(b) encode throughput (vectors/s and blocks/s), fp16 input, exhaustive and
    two-stage search, float32 and float64 arithmetic;
(c) decode-attention from codes (one query per head) against
    ``torch.nn.functional.scaled_dot_product_attention`` on fp16 K/V of the same
    shape, for batch x heads x context in ``{1x32x32k, 8x32x8k, 1x32x128k}``.

Settings: ``d = 128, k = 8, N = 256`` (2 bits/coordinate before the norm,
18-byte records) and the sub-one-bit ``d = 64, k = 32, N = 128`` (30-bit
records), both with the randomized Hadamard rotation (the dense rotation is
also timed for decode). Times are medians of CUDA-event timings after warm-up;
the attention kernels are also timed as CUDA-graph replays, which removes the
Python launch overhead from both sides. Needs a CUDA GPU and PyTorch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .options import GPUOptions

__all__ = ["main", "run_benchmarks"]

SETTINGS = ((128, 8, 256), (64, 32, 128))
# (batch, query heads, key/value heads, context): multi-head, and grouped-query as real models have
ATTENTION_SHAPES = ((1, 32, 32, 32 * 1024), (8, 32, 32, 8 * 1024), (1, 32, 32, 128 * 1024), (1, 32, 8, 32 * 1024))


def _timer(torch: Any) -> Callable[..., float]:
    def median_ms(fn: Callable[[], Any], reps: int = 20, warmup: int = 3, inner: int = 1) -> float:
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            s = torch.cuda.Event(enable_timing=True)
            e = torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(inner):
                fn()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) / inner)
        return statistics.median(times)

    return median_ms


def _graph_ms(torch: Any, fn: Callable[[], Any], median_ms: Callable[..., float], replays: int = 20) -> float | None:
    """Median time of one call replayed from a CUDA graph of ``replays`` calls (None if capture fails)."""
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                fn()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(replays):
                fn()
        return median_ms(g.replay, reps=10, warmup=2) / replays
    except Exception as exc:  # pragma: no cover - depends on the driver
        print(f"  (graph capture failed: {type(exc).__name__}: {exc})", file=sys.stderr)
        return None


def _host_us(torch: Any, fn: Callable[[], Any], calls: int = 200) -> float:
    """Host time of one call in microseconds: ``calls`` back-to-back calls queued without synchronising (median of 5)."""
    import time

    fn()
    torch.cuda.synchronize()
    per = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        per.append((time.perf_counter() - t0) / calls * 1e6)
        torch.cuda.synchronize()
    return statistics.median(per)


def _emit(rows: dict[str, list[dict[str, Any]]], table: str, row: dict[str, Any]) -> None:
    rows[table].append(row)
    print(f"[{table}] " + json.dumps(row), file=sys.stderr, flush=True)


def run_benchmarks(
    quick: bool = False, progress: bool = True, only: Sequence[str] = ("decode", "encode", "attention"),
    tune: bool | Sequence[str] = False,
) -> dict[str, list[dict[str, Any]]]:
    """Run the benchmarks named in ``only`` on the current CUDA device; returns the table rows.

    ``tune`` (True, or a subset of ``("decode", "attention")``) also times a few
    variants of those kernels and keeps the fastest: for the Hadamard decode, the
    column layout's columns per lane and prefetch and the chunked layout; for
    attention, (records in flight, register cap, blocks per SM, chunk) on the
    first shape. Every decode variant's output is compared with the default's
    (``same bits``) and must be within fp16 rounding of it to be kept.
    """
    tune_set = {"decode", "attention"} if tune is True else set(tune or ())
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from fibquant_theory.codebooks.design import design_codebook
    from fibquant_theory.codecs.fibquant import FibQuantCodec

    from .codec import GPUFibQuantCodec

    median_ms = _timer(torch)
    dev = torch.device("cuda")
    torch.manual_seed(0)
    rows: dict[str, list[dict[str, Any]]] = {"decode": [], "encode": [], "attention": []}
    n_dec = (1 << 20) if quick else (1 << 22)
    shapes = ATTENTION_SHAPES[:1] if quick else ATTENTION_SHAPES

    # ---- copy baseline: bytes read + written
    buf = torch.empty(512 << 20, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(buf)
    buf.random_(0, 255)
    copy_ms = median_ms(lambda dst=dst, buf=buf: dst.copy_(buf))
    copy_gbs = 2 * buf.numel() / copy_ms / 1e6
    del buf, dst

    steps = len(SETTINGS) * (3 + len(shapes))
    bar = tqdm(total=steps, desc="gpu bench", disable=not progress)
    for d, k, n_cw in SETTINGS:
        cb = design_codebook(d, k, n_cw, seed=0)
        for rot in ("hadamard", "haar") if "decode" in only else ():
            codec = FibQuantCodec(cb, seed=0, rotation=rot, packing="fixed")
            g = GPUFibQuantCodec(codec)
            x = torch.randn(n_dec, d, device=dev, dtype=torch.float16)
            payload = g.encode(x)
            nbytes = payload.numel() + n_dec * d * 2
            out = g.decode(payload, n_dec, check=True)  # warm + validate once
            if "decode" in tune_set and rot == "hadamard":
                best = None
                for variant in _decode_variants(d, k, n_cw):
                    gv = GPUFibQuantCodec(codec, options=replace(GPUOptions(), **variant))
                    try:
                        got = gv.decode(payload, n_dec, check=True)
                    except ValueError as exc:  # a layout that does not fit this setting
                        print(f"  decode variant {variant}: {exc}", file=sys.stderr)
                        continue
                    same = bool(torch.equal(got, out))
                    close = bool(torch.allclose(got.float(), out.float(), rtol=2.0**-10, atol=1e-6 * float(out.abs().max())))
                    vt = _graph_ms(
                        torch, lambda gv=gv, payload=payload: gv.decode(payload, n_dec, check=False), median_ms,
                        replays=5,
                    )
                    print(f"  decode variant {variant}: {vt} ms, same bits: {same}, within fp16 rounding: {close}", file=sys.stderr)
                    if vt is not None and close and (best is None or vt < best[0]):
                        best = (vt, gv)
                    del got
                if best is not None:
                    g = best[1]
            ms = median_ms(lambda g=g, payload=payload: g.decode(payload, n_dec, check=False))
            graph = _graph_ms(
                torch, lambda g=g, payload=payload: g.decode(payload, n_dec, check=False), median_ms, replays=5
            )
            gbs = nbytes / (graph or ms) / 1e6
            rel = float((out.float() - x.float()).norm() / x.float().norm())
            _emit(rows, "decode", {
                "d": d, "k": k, "N": n_cw, "rotation": rot, "vectors": n_dec, "bytes/vec": round(nbytes / n_dec, 2),
                "ms": ms, "graph ms": graph, "GB/s": gbs, "copy GB/s": copy_gbs, "% of copy": 100 * gbs / copy_gbs, "rel err": rel,
                "variant": _decode_name(g),
            })
            del x, payload, out
            bar.update()
        # ---- encode
        for encoder in ("exhaustive", "two-stage") if "encode" in only else ():
            for prec in ("float32", "float64"):
                codec = FibQuantCodec(cb, seed=0, rotation="hadamard", encoder=encoder, packing="fixed")
                try:
                    g = GPUFibQuantCodec(codec, precision=prec)
                except ValueError as exc:  # e.g. a float64 codebook over the shared-memory budget
                    rows["encode"].append({"d": d, "k": k, "N": n_cw, "search": encoder, "precision": prec, "note": str(exc)})
                    continue
                n_enc = n_dec
                x = torch.randn(n_enc, d, device=dev, dtype=torch.float16)
                g.encode(x, check=True)
                ms = median_ms(lambda g=g, x=x: g.encode(x, check=False), reps=10)
                graph = _graph_ms(torch, lambda g=g, x=x: g.encode(x, check=False), median_ms, replays=3)
                ms = graph or ms
                _emit(rows, "encode", {
                    "d": d, "k": k, "N": n_cw, "search": encoder, "precision": prec, "vectors": n_enc, "ms": ms,
                    "vectors/s": n_enc / ms * 1e3, "blocks/s": n_enc * (d // k) / ms * 1e3,
                })
                del x
            bar.update()
        # ---- decode-attention from codes vs fp16 SDPA
        codec = FibQuantCodec(cb, seed=0, rotation="hadamard", packing="fixed")
        g = GPUFibQuantCodec(codec)
        # (records in flight, register cap, blocks per SM of the context split, tokens per chunk)
        variants = [(4, 128, 2, 4096), (2, 128, 2, 4096), (4, 128, 2, 2048)] if "attention" in tune_set else []
        variants = [_attention_options(*v) for v in variants]
        for b, h, hkv, t in shapes if "attention" in only else ():
            gqa = hkv != h
            kw = {"kv_heads": hkv} if gqa else {}
            kf = torch.randn(b, hkv, t, d, device=dev, dtype=torch.float16)
            vf = torch.randn(b, hkv, t, d, device=dev, dtype=torch.float16)
            q = torch.randn(b, h, d, device=dev, dtype=torch.float16)
            kp = g.encode(kf.reshape(-1, d))
            vp = g.encode(vf.reshape(-1, d))
            ours = g.decode_attention(q, kp, vp, t, check=True, **kw)
            # reference: SDPA on the decoded (fp32) K/V, so only the kernel's arithmetic differs
            kd = g.decode(kp, b * hkv * t, dtype="float32").reshape(b, hkv, t, d)
            vd = g.decode(vp, b * hkv * t, dtype="float32").reshape(b, hkv, t, d)
            ref = F.scaled_dot_product_attention(q.float()[:, :, None], kd, vd, enable_gqa=gqa)[:, :, 0]
            rel = float((ours.float() - ref).norm() / ref.norm())
            del kd, vd
            qs = q[:, :, None]
            sdpa = lambda qs=qs, kf=kf, vf=vf, gqa=gqa: F.scaled_dot_product_attention(qs, kf, vf, enable_gqa=gqa)  # noqa: E731
            sdpa_ms = median_ms(sdpa)
            if len(variants) > 1:
                best = None
                for opts in variants:
                    gv = GPUFibQuantCodec(codec, options=opts)
                    gv.decode_attention(q, kp, vp, t, check=True, **kw)
                    vt = _graph_ms(
                        torch, lambda gv=gv, q=q, kp=kp, vp=vp, t=t, kw=kw: gv.decode_attention(q, kp, vp, t, check=False, **kw), median_ms,
                    )
                    print(f"  attention variant (unroll, regs, blocks/SM, chunk)={_attention_name(opts)}: {vt} ms", file=sys.stderr)
                    if vt is not None and (best is None or vt < best[0]):
                        best = (vt, opts)
                if best is not None:
                    variants = [best[1]]
                    g = GPUFibQuantCodec(codec, options=best[1])
            ours = g.decode_attention(q, kp, vp, t, check=True, **kw)
            rel = float((ours.float() - ref).norm() / ref.norm())
            call = lambda g=g, q=q, kp=kp, vp=vp, t=t, kw=kw: g.decode_attention(q, kp, vp, t, check=False, **kw)  # noqa: E731
            ours_ms = median_ms(call)
            ours_g = _graph_ms(torch, call, median_ms)
            sdpa_g = _graph_ms(torch, sdpa, median_ms)
            slow = GPUFibQuantCodec(codec, options=replace(g.options, direct_launch=False))
            slow_call = lambda g=slow, q=q, kp=kp, vp=vp, t=t, kw=kw: g.decode_attention(q, kp, vp, t, check=False, **kw)  # noqa: E731
            same = bool(torch.equal(slow_call(), call()))
            host_us, host_numba_us, host_sdpa_us = (_host_us(torch, f) for f in (call, slow_call, sdpa))
            code_bytes = kp.numel() + vp.numel()
            fp16_bytes = kf.numel() * 2 + vf.numel() * 2
            _emit(rows, "attention", {
                "d": d, "k": k, "N": n_cw, "BxHxT": f"{b}x{h}x{t // 1024}k" + (f" gqa {h}/{hkv}" if gqa else ""),
                "sdpa ms": sdpa_ms, "codes ms": ours_ms, "speedup": sdpa_ms / ours_ms,
                "host us": host_us, "host us (numba launch)": host_numba_us, "sdpa host us": host_sdpa_us,
                "same bits both launches": same,
                "sdpa graph ms": sdpa_g, "codes graph ms": ours_g,
                "graph speedup": (sdpa_g / ours_g) if (sdpa_g and ours_g) else None,
                "variant": _attention_tag(g.options),
                "bytes ratio": fp16_bytes / code_bytes, "target": fp16_bytes / code_bytes / 2,
                "codes GB/s": code_bytes / (ours_g or ours_ms) / 1e6, "rel err": rel,
            })
            del kf, vf, kp, vp, sdpa  # (sdpa holds kf and vf)
            torch.cuda.empty_cache()
            bar.update()
    bar.close()
    from .codegen import kernel_resources

    rows["kernels"] = kernel_resources()
    return rows


def _decode_variants(d: int, k: int, n_codewords: int) -> list[dict[str, Any]]:
    """Hadamard decode variants timed by ``--tune decode`` as :class:`GPUOptions` changes: the chunked
    layout (the default first), then the column layout: its defaults, without prefetch, and every
    (columns per lane, codebook copies) pair that fits (a column plan that raises is skipped)."""
    from .column_decode import column_plan
    from .device import OUT_F16

    out: list[dict[str, Any]] = [{"decode_layout": "chunks", "decode_per_lane": 0, "decode_chunk": 0}]
    out.append({"decode_layout": "chunks", "decode_per_lane": 32, "decode_chunk": 32})
    try:
        plan = column_plan(d, k, n_codewords, OUT_F16)
    except ValueError:
        return out
    out.append({"decode_layout": "columns"})
    out.append({"decode_layout": "columns", "decode_prefetch": False})
    for c in (1, 2, 4, 8, 16):  # every (columns, copies) layout that fits
        try:
            pc = column_plan(d, k, n_codewords, OUT_F16, columns=c)
        except ValueError:
            continue
        r = 1
        while r <= pc["W"]:
            if (c, r) != (plan["C"], plan["R"]):
                out.append({"decode_layout": "columns", "decode_columns": c, "decode_replicas": r})
            r *= 2
    return out


def _decode_name(g: Any) -> str:
    o = g.options
    if g.codec.rotation.kind != "hadamard":
        return "dense"
    if o.decode_layout == "columns":
        return f"columns C={o.decode_columns or 'default'} R={o.decode_replicas or 'default'} prefetch={o.decode_prefetch}"
    return f"chunks V={o.decode_per_lane or 'default'} s={o.decode_chunk or 'default'}"


def _attention_options(unroll: int, registers: int | None, blocks_per_sm: int, chunk: int) -> GPUOptions:
    """Default options with the decode-attention knobs ``(records in flight, register cap, blocks per SM, chunk)``."""
    return replace(
        GPUOptions(), attention_unroll=unroll, attention_registers=registers, attention_blocks_per_sm=blocks_per_sm,
        attention_chunk=chunk,
    )


def _attention_name(o: GPUOptions) -> tuple[int, int | None, int, int]:
    return (o.attention_unroll, o.attention_registers, o.attention_blocks_per_sm, o.attention_chunk)


def _attention_tag(o: GPUOptions) -> str:
    return f"u{o.attention_unroll}/r{o.attention_registers}/b{o.attention_blocks_per_sm}/c{o.attention_chunk}"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: print the tables (and write them as JSON with ``--json PATH``)."""
    parser = argparse.ArgumentParser(prog="python -m fibquant_theory.gpu.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and only the 32k attention shape")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--only", default="decode,encode,attention", help="comma-separated subset of decode,encode,attention")
    parser.add_argument(
        "--tune", nargs="?", const="decode,attention", default="",
        help="time kernel variants and keep the fastest: a comma-separated subset of decode,attention (default: both)",
    )
    args = parser.parse_args(argv)
    only = tuple(x.strip() for x in args.only.split(",") if x.strip())
    bad = set(only) - {"decode", "encode", "attention"}
    if bad:
        parser.error(f"unknown benchmark(s) {sorted(bad)}")
    tune = tuple(x.strip() for x in args.tune.split(",") if x.strip())
    if set(tune) - {"decode", "attention"}:
        parser.error(f"--tune takes a subset of decode,attention, got {args.tune!r}")
    try:
        import torch
    except ImportError:
        print("the GPU benchmark needs PyTorch", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("the GPU benchmark needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    from fibquant_theory._table import format_table

    rows = run_benchmarks(quick=args.quick, progress=not args.no_progress, only=only, tune=tune)
    print(f"device: {torch.cuda.get_device_name()}")
    for name, table in rows.items():
        if not table:
            continue
        print(f"\n[{name}]")
        columns = list(dict.fromkeys(key for row in table for key in row))
        print(format_table(table, columns))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
