"""Static comparison of the GPU decode kernels without a GPU: PTX through NVVM, SASS through ptxas.

``python research/gpu_static.py [--ptxas PATH] [--nvdisasm PATH] [--arch sm_90]`` compiles each
decode layout to PTX with numba-cuda's ``compile_ptx`` (needs libNVVM, e.g. the
``nvidia-cuda-nvcc`` wheel on ``PYTHONPATH``: no GPU), assembles it with ``ptxas -v`` for the
target and disassembles it with ``nvdisasm``. It prints a table: registers, spills, and the
SASS instructions of the kernel's main (grid-stride) loop per decoded vector and per warp, by
class. Everything in a loop iteration is unrolled, so the loop body's static instructions are
the ones issued per iteration (error branches aside). This is a count, not a timing: it says
how much work each layout issues, not how fast the GPU runs it.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from fibquant_theory.gpu import codegen, column_decode, decode, device
from fibquant_theory.gpu._compat import SIMULATOR, cuda

CLASSES = {
    "shared load": ("LDS",),
    "shared store": ("STS",),
    "shuffle": ("SHFL",),
    "global load": ("LDG",),
    "global store": ("STG",),
    "float": ("FADD", "FMUL", "FFMA", "FSEL", "F2F", "F2FP", "FMNMX"),
    "integer/logic": ("IADD3", "IMAD", "LOP3", "SHF", "PRMT", "SEL", "ISETP", "LEA", "MOV", "IABS", "BMSK"),
    "call": ("CALL", "RET"),
}


class _Captured:
    """What :func:`codegen.compile_kernel` would have built: the generated source, compiled to PTX instead."""

    def __init__(self, ptx: str, label: str, max_registers: int | None) -> None:
        self.ptx, self.label, self.max_registers = ptx, label, max_registers


def _compile_ptx(cc: tuple[int, int]):
    def fake(src, name, namespace, sig, label="", max_registers=None):
        ns = dict(namespace)
        exec(compile(src, f"<fibquant-gpu {name}>", "exec"), ns)  # noqa: S102 - our own generated code
        ptx, _ = cuda.compile_ptx(ns[name], sig, fastmath=set(codegen.FASTMATH), cc=cc)
        return _Captured(ptx, label or name, max_registers)

    return fake


def _sass(ptx: str, arch: str, ptxas: str, nvdisasm: str, max_registers: int | None, work: Path) -> tuple[str, str]:
    p = work / "k.ptx"
    p.write_text(ptx)
    cubin = work / "k.cubin"
    cmd = [ptxas, f"-arch={arch}", "-v", "-c", str(p), "-o", str(cubin)]
    if max_registers:
        cmd.insert(1, f"-maxrregcount={max_registers}")
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    sass = subprocess.run([nvdisasm, "-c", str(cubin)], capture_output=True, text=True, check=True).stdout
    return res.stderr + res.stdout, sass


def _main_loop(sass: str) -> list[str]:
    """Opcodes of the longest conditional backward branch's span (the kernel's grid-stride loop)."""
    ins = []
    labels = {}
    for line in sass.splitlines():
        m = re.match(r"\s*\.(L_x_\d+):", line)
        if m:
            labels[m.group(1)] = len(ins)
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)(.*)", line)
        if m:
            ins.append((m.group(3), m.group(4), bool(m.group(2))))
    best = (0, 0)
    for i, (op, rest, predicated) in enumerate(ins):
        # the loop's back edge is conditional; unconditional backward jumps return from the
        # divergent-shuffle fallback code placed after the loop
        if op == "BRA" and predicated:
            t = re.search(r"`\(\.(L_x_\d+)\)", rest)
            if t and t.group(1) in labels and labels[t.group(1)] <= i and i - labels[t.group(1)] > best[1] - best[0]:
                best = (labels[t.group(1)], i)
    return [op for op, _, _ in ins[best[0] : best[1] + 1]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ptxas", default=shutil.which("ptxas") or "ptxas")
    parser.add_argument("--nvdisasm", default=shutil.which("nvdisasm") or "nvdisasm")
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    if SIMULATOR:
        print("unset NUMBA_ENABLE_CUDASIM: this compiles real PTX", file=sys.stderr)
        return 2
    cc = (int(args.arch[3]), int(args.arch[4:]))
    fake = _compile_ptx(cc)
    codegen.compile_kernel = fake  # the kernel modules compile through codegen.compile_kernel
    F16, F32 = device.OUT_F16, device.OUT_F32
    cases = []
    for d, k, n in ((128, 8, 256), (64, 32, 128)):
        for okind, oname in ((F16, "fp16"), (F32, "fp32")):
            lanes, _ = codegen.lane_layout(d, max(16, k))
            cases.append((f"d={d} k={k} N={n} {oname} chunks (default)", 32 // lanes,
                          lambda d=d, k=k, n=n, o=okind: decode.decode_kernel(d, k, n, device.HDR_F16, o, device.ROT_HADAMARD)[0]))
            default_c = column_decode.column_plan(d, k, n, okind)["C"]
            # (columns, prefetch, codebook copies): the default, then one knob changed at a time
            variants = [(0, True, 0), (0, False, 0)] + [(c, True, 0) for c in (1, 2, 4, 8) if c != default_c]
            variants.append((0, True, column_decode.column_plan(d, k, n, okind)["R"] // 2))
            for c, pre, r in variants:
                try:
                    plan = column_decode.column_plan(d, k, n, okind, c, r)
                except ValueError:
                    continue
                tag = " (default)" if (c, pre, r) == (0, True, 0) else ""
                name = f"d={d} k={k} N={n} {oname} columns C={plan['C']} R={plan['R']} prefetch={pre}{tag}"
                cases.append((name, plan["W"], lambda d=d, k=k, n=n, o=okind, c=plan["C"], p=pre, r=plan["R"]: (
                    column_decode.column_decode_kernel(d, k, n, device.HDR_F16, o, c, True, p, None, r)[0])))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, per_warp, build in cases:
            cap = build()
            log, sass = _sass(cap.ptx, args.arch, args.ptxas, args.nvdisasm, cap.max_registers, Path(tmp))
            regs = re.search(r"Used (\d+) registers", log)
            spill = re.search(r"(\d+) bytes spill stores", log)
            loop = _main_loop(sass)
            cnt = collections.Counter(op.split(".")[0] for op in loop)
            row = {"kernel": name, "regs": int(regs.group(1)) if regs else None, "spill B": int(spill.group(1)) if spill else None,
                   "vectors/warp/iter": per_warp, "loop instr": len(loop), "instr/vector": round(len(loop) / per_warp, 1)}
            for cls, ops in CLASSES.items():
                row[cls] = round(sum(v for o, v in cnt.items() if o in ops) / per_warp, 2)
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    print(f"SASS ({args.arch}) of the main loop, per decoded vector (warp instructions; static count, all unrolled)")
    cols = list(rows[0])
    if args.markdown:
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in rows:
            print("| " + " | ".join("-" if r[c] is None else f"{r[c]:g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    else:
        from fibquant_theory._table import format_table

        print(format_table(rows, cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
