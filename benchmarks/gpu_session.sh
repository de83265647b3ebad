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
# 1. the CUDA backend against the CPU one, emulated and on the device; the kernels' compile
#    check; the GPU paths of the library API and of batch enhancement
python3 -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_kernels_compile.py \
    tests/test_api.py tests/test_enhancer.py 2>&1 | tee "$OUT/gpu_tests.txt" || status=1

# 2. solver and inference throughput against their anchors, one run
if [ "${QUICK:-0}" = 1 ]; then
    args=(--quick --no-e2e --no-memory)
else
    args=(--sizes 512,1024,2048 --inference)
fi
python3 -m xvert_gpu.bench "${args[@]}" --json "$OUT/bench.json" 2>&1 \
    | tee "$OUT/bench.txt" || status=1
exit $status
