#!/usr/bin/env bash
# Everything a session with a GPU should verify, in one device call (see the device tool's
# README: few, full calls). Runs from the repository root of a checkout, without installing
# the package (the device has no network; xvert_gpu.cuda.loader reads kernels/ from the
# checkout). Raw output goes to $OUT (the device tool's folder) or, where OUT is unset, to
# benchmarks/results/gpu_session/: copy it into benchmarks/results/ with the device's name.
#
#   device run:  bash benchmarks/gpu_session.sh          (carry .whl, see below)
#   dry run here (no GPU: the gpu tests skip, the bench runs on the CPU):
#                QUICK=1 OUT=/tmp/gs bash benchmarks/gpu_session.sh
#
# The device image has CuPy, torch, Numba, SciPy, Pillow and tifffile but not pyamg (the
# bench's Ruge-Stuben anchor) or pydicom; carry them as wheels in .whl/ (README of the device
# tool), e.g. `python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12
# --platform manylinux2014_x86_64 -d .whl pyamg pydicom`.
set -u -o pipefail
OUT=${OUT:-benchmarks/results/gpu_session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

{
    date -u
    git rev-parse HEAD 2>/dev/null || echo "commit: unknown (no .git)"
    nvidia-smi 2>&1 || echo "nvidia-smi: none"
    python3 - <<'EOF'
import importlib, platform, sys
print("python", sys.version.split()[0], platform.machine())
for name in ("numpy", "scipy", "numba", "cupy", "torch", "pyamg", "pydicom", "tifffile", "PIL"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:  # absent or broken: say so, the run goes on
        print(name, "unavailable:", type(exc).__name__, exc)
try:
    import cupy
    print("cupy devices:", cupy.cuda.runtime.getDeviceCount(),
          cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
except Exception as exc:
    print("cupy device: none:", type(exc).__name__, exc)
EOF
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

status=0
# 0. the kernels compile on this device and one solve runs (a fast, loud failure if not)
timeout "${T_SMOKE:-90}" python3 - <<'EOF2' 2>&1 | tee "$OUT/smoke.txt" || status=1
import time
import numpy as np
from xvert_gpu.cuda import loader
from xvert_gpu import backends
print("cuda available:", backends.cuda_available())
t = time.perf_counter(); loader.module().get_function(loader.kernel_names()[0])
print(f"{len(loader.kernel_names())} kernels compiled in {time.perf_counter() - t:.1f} s")
import cupy as cp, xvert_gpu
x = cp.asarray(np.random.default_rng(0).random((256, 256), dtype=np.float32))
g, info = xvert_gpu.wls_smooth(x, return_info=True)
print("256^2 solve:", type(g).__name__, info.backend, info.iterations, info.converged)
EOF2

# 1. per-kernel times and bandwidth against a device-to-device copy (issue 3)
if [ "${QUICK:-0}" != 1 ]; then
    timeout "${T_KERNELS:-90}" python3 benchmarks/gpu_kernels.py --size 2048 \
        --json "$OUT/kernels.json" 2>&1 | tee "$OUT/kernels.txt" || status=1
fi

# 2. every gpu-marked test (the CUDA backend against the CPU one on the device, the torch
#    hand-off, the GPU paths of batch enhancement and of the metrics), then the library API's
#    other tests, which run on the GPU here (device="auto"), and the kernels' compile check
xdist=()
python3 -c "import xdist" 2>/dev/null && xdist=(-n "${WORKERS:-8}")
# the quick files first, so their failures come back even if test_cuda.py runs out of time
# (on the H100 of the fourteenth session, 8 workers did not finish the 95 in 180 s)
timeout "${T_TESTS:-300}" python3 -m pytest -q -p no:cacheprovider -rs --tb=short \
    --durations=15 "${xdist[@]}" -m gpu tests/test_enhancer.py tests/test_api.py \
    tests/test_metrics.py tests/test_cuda.py 2>&1 | grep -v "DEBUG    torch" \
    | tee "$OUT/gpu_tests.txt" || status=1
# 3. solver and inference throughput against their anchors, one run
if [ "${QUICK:-0}" = 1 ]; then
    args=(--quick --no-e2e --no-memory)
else
    args=(--sizes "${SIZES:-512,1024,2048}" --batch "${BATCH:-64}" ${BENCH_ARGS:-})
fi
timeout "${T_BENCH:-300}" python3 -m xvert_gpu.bench "${args[@]}" --json "$OUT/bench.json" 2>&1 \
    | tee "$OUT/bench.txt" || status=1

timeout "${T_API:-120}" python3 -m pytest -q -p no:cacheprovider -rs --tb=short \
    "${xdist[@]}" -m "not gpu" tests/test_api.py tests/test_enhancer.py \
    tests/test_kernels_compile.py 2>&1 | grep -v "DEBUG    torch" | tee "$OUT/api_tests.txt" \
    || status=1
exit $status
