"""Tunables of the package in one place: limits, thresholds, kernel flags and presets.

Nothing here changes a result's *meaning*; the limits decide what is accepted,
the thresholds which (equivalent) code path runs, the presets how much work a
command does. Every module reads its tunables from here, so a reader can see
them all at once.
"""

from __future__ import annotations

__all__ = ["DEMO_FAMILY_POINTS", "DEMO_KV", "DEMO_KV_TOKENS", "DEMO_RD_POINTS", "FIGURES_FULL", "FIGURES_QUICK", "MAX_CODEWORDS"]

#: Largest codebook size that can be designed or packed (keeps every limb product inside int64).
MAX_CODEWORDS = 1 << 30

# --------------------------------------------------------------- CPU search and Lloyd
# Read by fibquant_theory.search.kernel and fibquant_theory.codebooks.lloyd. They are passed to the
# Numba kernels as arguments (never read as compiled-in globals), so a change takes effect without
# clearing the Numba cache. Only CENTROID_BUDGET and MAX_CENTROID_CHUNKS change result bits (the
# summation order of the cell sums, pinned by tests/test_reproducibility.py); the others only pick
# among equivalent code paths.
__all__ += [
    "ASSIGN_BLOCK", "BOUND_MARGIN", "CENTROID_BUDGET", "KDTREE_MAX_BLOCK", "KDTREE_MIN_CODEWORDS",
    "LOCAL_MAX_NEIGHBOURS", "LOCAL_MIN_CODEWORDS", "MAX_CENTROID_CHUNKS", "PARALLEL_MIN_WORK",
]

#: Rows per task of the parallel search and Lloyd kernels (the results do not depend on it).
ASSIGN_BLOCK = 256
#: Work (about one flop per unit) below which the serial kernels run (thread start-up costs more).
PARALLEL_MIN_WORK = 1 << 23
#: Relative safety margin of Lloyd's bound tests against rounding.
BOUND_MARGIN = 1e-9
#: Upper bound on the float64 entries of the per-chunk partial sums of Lloyd's centroid kernel.
CENTROID_BUDGET = 1 << 22
#: Largest number of sample chunks of Lloyd's centroid kernel.
MAX_CENTROID_CHUNKS = 64
#: Smallest codebook whose Lloyd assignment searches the neighbour list of the current codeword first.
LOCAL_MIN_CODEWORDS = 1024
#: Largest neighbour list of that local search (it lists ``8 * 2**(k/2)`` codewords below this cap).
LOCAL_MAX_NEIGHBOURS = 512
#: ``assign="auto"`` uses the exact k-d tree for codebooks of at least this many codewords ...
KDTREE_MIN_CODEWORDS = 1024
#: ... and blocks of at most this many coordinates (the exhaustive scan is faster otherwise).
KDTREE_MAX_BLOCK = 8

# ---------------------------------------------------------------- torch Lloyd design
# Read by fibquant_theory.codebooks.torch_lloyd (design_codebook(..., device=...)). Neither changes a
# result bit: the assignment is exact whatever the chunk and the candidate count (tests check it).
__all__ += ["TORCH_CANDIDATES", "TORCH_SCORE_ELEMENTS"]

#: Float32 scores per chunk of the torch assignment (rows per chunk = this // N; 1 GiB of float32).
TORCH_SCORE_ELEMENTS = 1 << 28
#: Candidates per sample re-checked in float64 by the torch assignment (the top of the float32 scores). 1 takes
#: two min reductions per chunk instead of a topk; a sample whose two best float32 scores are within the error
#: bound (a few in 1e4 at N = 65536) is searched in float64 over all codewords instead.
TORCH_CANDIDATES = 1

# ------------------------------------------------------------------------------- GPU
# Read by fibquant_theory.gpu (gpu/); see research/gpu-notes.md for how the values were chosen. The
# kernels are compiled in each process at first use (no on-disk cache), with GPU_THREADS, GPU_FASTMATH
# and GPU_MAX_SPLITS compiled in, so a change takes effect in the next process. The attention defaults
# are those of fibquant_theory.gpu.options.GPUOptions.
__all__ += [
    "GPU_ATTENTION_BLOCKS_PER_SM", "GPU_ATTENTION_CHUNK", "GPU_ATTENTION_MIN_SPLIT_TOKENS", "GPU_ATTENTION_REGISTERS",
    "GPU_ATTENTION_UNROLL", "GPU_COLUMN_COPY_BUDGET", "GPU_COLUMN_MAX_VALUES", "GPU_COLUMN_MIN_VALUES", "GPU_DEFAULT_SMS", "GPU_DENSE_TABLE_LIMIT",
    "GPU_FASTMATH", "GPU_MAX_GRID", "GPU_MAX_SPLITS", "GPU_SHARED_DEFAULT", "GPU_SHARED_OPTIN", "GPU_THREADS",
]

#: Threads per block of every GPU kernel (8 warps; compiled into the generated kernels).
GPU_THREADS = 256
#: Named fastmath flags of every GPU kernel (no ``nnan``/``ninf``: the NaN/Inf checks must stay).
GPU_FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
#: Most blocks of a grid-stride launch (132 SMs x 16 blocks).
GPU_MAX_GRID = 132 * 16
#: Shared memory (bytes) a block gets without opting in; bounds the codebooks the decode and encode kernels accept.
GPU_SHARED_DEFAULT = 48 * 1024
#: Shared memory (bytes) a block may opt in to on an H100/H200: the column decode's limit, and decode-attention's
#: where the driver does not report it (and in the simulator).
GPU_SHARED_OPTIN = 227 * 1024
#: Largest dense-rotation decode table ``(m, N, d)`` of float32 (bytes); past it, use the Hadamard rotation.
GPU_DENSE_TABLE_LIMIT = 256 << 20
#: Column decode: shared memory (bytes) the codebook copies may take by default. The H200 grid of
#: research/results/h200-decode-tune-2026-12-03.txt: at d=128/k=8/N=256, 1-4 copies (8-32 KiB) decode in
#: 0.383-0.385 ms and 8 copies (64 KiB, the old 96 KiB budget) in 0.436 ms; at d=64/k=32/N=128 with 4 columns,
#: 1-2 copies (16-32 KiB) in 0.198-0.202 ms and 4 copies in 0.275 ms. More blocks per SM beat fewer bank conflicts.
GPU_COLUMN_COPY_BUDGET = 32 * 1024
#: Column decode: the default columns per lane give each lane at least this many values (columns x blocks).
#: Same grid: d=64/k=32 with 4 columns (8 values) 0.198 ms, 8 columns (16 values, the old default) 0.283 ms;
#: d=128/k=8 keeps 2 columns (32 values; 4 columns: 0.41-0.67 ms).
GPU_COLUMN_MIN_VALUES = 8
#: Column decode: most values (columns x blocks) a lane may hold in registers.
GPU_COLUMN_MAX_VALUES = 64
#: Decode-attention: most context splits per head (the merge keeps their weights in shared memory).
GPU_MAX_SPLITS = 128
#: Decode-attention default: key/value records in flight per thread.
GPU_ATTENTION_UNROLL = 2
#: Decode-attention default register cap: 128 does not spill (a 64 cap spilled 288 B/thread, 1.6x slower on an H100).
GPU_ATTENTION_REGISTERS = 128
#: Decode-attention default: blocks per SM of the context split (one wave).
GPU_ATTENTION_BLOCKS_PER_SM = 2
#: Decode-attention default: tokens per chunk of the two passes (a chunk's scores stay in shared memory).
GPU_ATTENTION_CHUNK = 4096
#: Decode-attention: fewest tokens per context split of the default split.
GPU_ATTENTION_MIN_SPLIT_TOKENS = 256
#: Decode-attention: SMs assumed by the default split where the device is not known (the simulator).
GPU_DEFAULT_SMS = 132

# ---------------------------------------------------------------------------- presets

#: Design options of ``fibquant figures --quick`` (minutes on 2 cores) and of the full figures.
FIGURES_QUICK = {"n_train": 20_000, "n_heldout": 20_000, "n_restarts": 1, "n_search": 20_000}
FIGURES_FULL = {"n_train": 200_000, "n_heldout": 100_000, "n_restarts": 3}

#: FibQuant points ``(k, N)`` of the demo's rate–distortion table (shells design): log2(N)/k in {1, 2, 3, 4}.
DEMO_RD_POINTS = ((8, 256), (4, 256), (2, 64), (2, 256))
#: The structured codebook families of the demo beside the shells design at the same ``(k, N, family)``.
DEMO_FAMILY_POINTS = (
    (4, 96, "shells"),
    (4, 96, "d4"),
    (4, 96, "hurwitz"),
    (8, 240, "shells"),
    (8, 240, "e8"),
)
#: Tokens of every text in the KV part of the demo (two windows of 1024).
DEMO_KV_TOKENS = 2048
#: KV-cache settings of the demo: (method, options).
DEMO_KV = (
    ("fp", {}),
    ("fibquant", {"block": 2, "codewords": 256, "center": "key", "norm_correction": True}),
    ("turboquant", {"bits": 4, "center": "key", "norm_correction": True}),
    ("fibquant", {"block": 4, "codewords": 256, "center": "key", "norm_correction": True}),
    ("turboquant", {"bits": 2, "center": "key", "norm_correction": True}),
    ("kivi", {"bits": 4}),
)
