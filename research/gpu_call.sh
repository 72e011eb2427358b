#!/usr/bin/env bash
# One device-tool call of issue #16's session: install without dependencies, then the steps named as arguments:
#   smoke   the direct-launch / stream / deferred-error device tests
#   bench   python -m fibquant_theory.gpu.bench --tune decode (JSON, table and log into $OUT)
#   tunedecode  python -m fibquant_theory.gpu.bench --only decode --tune decode (every column layout; log into $OUT)
#   tests   all of tests/gpu/test_device.py, in 3 parallel pytest processes (compilation is CPU-bound)
#   host    where the host time of one eager attention call goes (research/gpu_host_profile.py)
#   ceiling the decode against a copy and a pure write of its output size (research/gpu_write_ceiling.py)
#   e2e     research/gpu_e2e_bench.py, both model shapes (issue #17; gpu_e2e.json and its log into $OUT)
#   cachetests  the device tests of the GPU cache (#17) and of the clustered encoder (#18)
#   refine  research/gpu_refine_codebooks.py: more Lloyd iterations for the shipped k=8 N=65536 codebooks (#18),
#           until ${REFINE_END:-570} s after the call's start
#   clustered  research/gpu_clustered_bench.py: the clustered search, bucketed and per block, against the exhaustive one (#18)
#   ncu     Nsight Compute on the decode and attention kernels (research/gpu_profile.py)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee "$OUT/gpu.txt"
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/pip.log" 2>&1 || { cat "$OUT/pip.log"; exit 1; }
PYT="python3 -m pytest -q -p no:cacheprovider -m gpu tests/gpu/test_device.py"
for job in "$@"; do
  case "$job" in
    smoke) $PYT -k "direct_launch or torch_current or check_false" 2>&1 | tee "$OUT/smoke.txt" | tail -30 ;;
    bench) python3 -m fibquant_theory.gpu.bench --tune decode --no-progress --json "$OUT/bench.json" 2>"$OUT/bench.err" | tee "$OUT/bench.txt"
           grep -v '^\[' "$OUT/bench.err" | tail -40 ;;
    tunedecode) python3 -m fibquant_theory.gpu.bench --only decode --tune decode --no-progress --json "$OUT/decode.json" \
                  2>"$OUT/decode.err" | tee "$OUT/decode.txt"
                grep "decode variant" "$OUT/decode.err" ;;
    tests) $PYT -k "encode or roundtrip or sub_one_bit or other_head" >"$OUT/tests1.txt" 2>&1 &
           $PYT -k "decode and not roundtrip and not attention" >"$OUT/tests2.txt" 2>&1 &
           $PYT -k "not encode and not roundtrip and not sub_one_bit and not other_head and not (decode and not attention)" >"$OUT/tests3.txt" 2>&1 &
           wait
           for f in "$OUT"/tests[123].txt; do echo "== $f"; tail -15 "$f"; done ;;
    e2e) timeout 330 python3 research/gpu_e2e_bench.py --out "$OUT" --budget ${E2E_BUDGET:-240} ${E2E_ARGS:-} 2>&1 | tee "$OUT/e2e.log" | grep -v Warning | tail -40 ;;
    cachetests) timeout 240 python3 -m pytest -q -p no:cacheprovider -m gpu ${CACHETESTS:-tests/gpu/test_gpu_cache_device.py tests/gpu/test_clustered_device.py} \
                  >"$OUT/cachetests.txt" 2>&1; tail -30 "$OUT/cachetests.txt" ;;
    refine) python3 research/gpu_refine_codebooks.py --out "$OUT" --total-seconds $(( ${REFINE_END:-570} - SECONDS )) 2>&1 | tail -20 ;;
    clustered) timeout 300 python3 research/gpu_clustered_bench.py --out "$OUT" ${CLUSTERED_ARGS:-} 2>"$OUT/clustered.err" | tee "$OUT/clustered.txt"
               tail -5 "$OUT/clustered.err" ;;
    host) python3 research/gpu_host_profile.py --out "$OUT" 2>&1 | tail -60 ;;
    ceiling) timeout 150 python3 research/gpu_write_ceiling.py --out "$OUT" 2>&1 | tee "$OUT/ceiling.txt" | tail -20 ;;
    ncu) for only in decode attention; do
           ncu --clock-control none --profile-from-start off --section SpeedOfLight --section Occupancy --section LaunchStats \
             --section WarpStateStats --section InstructionStats \
             python3 research/gpu_profile.py --only "$only" --layout columns >"$OUT/ncu-$only.txt" 2>&1
           grep -E "Duration|Throughput|Registers|Achieved Occupancy|Theoretical Occupancy|Issue Slots|Eligible|Executed Ipc|Warp Cycles Per Issued|Stall|Block Limit" "$OUT/ncu-$only.txt" | head -60
         done ;;
    *) echo "unknown job $job"; exit 2 ;;
  esac
done
