#!/usr/bin/env bash
# One device-tool call: install the package into the machine's own Python (no downloads: no deps,
# no build isolation), then run what is asked: `bench` (the benchmark table, JSON and log into $OUT),
# `tests` (tests/gpu/test_device.py), `profile` (ncu on both Hadamard decode layouts). Run from the
# repository root (the script cds there itself). Usage:
#   bash research/gpu_session.sh bench tests
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee "$OUT/gpu.txt"
python3 -c "import numba, numpy, torch; print('numba', numba.__version__, 'numpy', numpy.__version__, 'torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/pip.log" 2>&1 || { cat "$OUT/pip.log"; exit 1; }
for job in "$@"; do
  case "$job" in
    bench) python3 -m fibquant_theory.gpu.bench --tune decode --no-progress --json "$OUT/bench.json" 2>"$OUT/bench.err" | tee "$OUT/bench.txt"
           grep -v '^\[' "$OUT/bench.err" | tail -40 ;;
    tests) python3 -m pytest -q -p no:cacheprovider -m gpu tests/gpu/test_device.py --durations=8 2>&1 | tee "$OUT/tests.txt" | tail -25 ;;
    profile) for layout in chunks columns; do
               ncu --clock-control none --profile-from-start off --section SpeedOfLight --section MemoryWorkloadAnalysis \
                 python3 research/gpu_profile.py --only decode --layout "$layout" >"$OUT/ncu-$layout.txt" 2>&1
               tail -40 "$OUT/ncu-$layout.txt"
             done ;;
    *) echo "unknown job $job"; exit 2 ;;
  esac
done
