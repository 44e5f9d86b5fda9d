#!/usr/bin/env bash
# Every GPU benchmark of geoemb in one run (issue 15): pooling vs the numpy reference, Hamming
# search (hamming_gemm / hamming_torch) vs CPU numba and vs TerraBit's torch.cdist anchor, float
# search, DWR + distance curve on GPU vs the ChesapeakeRSC notebook's cv2 path, segmentation
# inference throughput. Prints one Markdown table and writes it (plus JSON and a log) under $OUT
# (or benchmarks/gpu_out/ when OUT is unset). Budget: <= 8 minutes on one H100/H200-class GPU.
#
# Needs: Python >= 3.10 with torch (CUDA build) and numpy. Everything else is optional and reported
# when missing: numba (CPU Hamming kernel, CPU DWR kernel), opencv-python-headless (DWR reference),
# scikit-learn (DWR reference's recall_score), torchmetrics (geoemb.metrics), torchvision /
# segmentation_models_pytorch (inference nets). geoemb itself is NOT installed: its core modules are
# imported from src/ (PYTHONPATH), skipping package __init__ files whose imports are unavailable.
# Wheels placed in <repo>/.whl/ are installed first (pip --no-index --no-deps, into a temp dir).
#
# Usage:
#   bash benchmarks/gpu.sh                  # full run on the GPU
#   bash benchmarks/gpu.sh --tiny --device cpu   # seconds-long smoke run of every section on CPU
# Exit status: 0 = all sections ran; 1 = a section failed (its row says why); 2 = no CUDA device
# (nothing benchmarked; the message says what torch reports).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-$ROOT/benchmarks/gpu_out}"
mkdir -p "$OUT_DIR" || { echo "gpu.sh: cannot create output dir $OUT_DIR" >&2; exit 1; }

if ! "$PY" -c "import torch, numpy" 2>/dev/null; then
  echo "gpu.sh: $PY cannot import torch and numpy; nothing benchmarked" | tee "$OUT_DIR/gpu_bench.log" >&2
  exit 2
fi

shopt -s nullglob
wheels=("$ROOT"/.whl/*.whl)
if (( ${#wheels[@]} )); then
  SITE="$(mktemp -d /tmp/geoemb_site.XXXXXX)"
  echo "gpu.sh: installing ${#wheels[@]} carried wheel(s) into $SITE"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
    "${wheels[@]}" || echo "gpu.sh: wheel install failed; continuing without them" >&2
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

export PYTHONPATH="$ROOT/src:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# numba caches next to the sources may be read-only on the device: keep them in a temp dir
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-/tmp/geoemb_numba_cache}"

"$PY" "$HERE/_gpu_bench.py" --out "$OUT_DIR" "$@" 2>&1 | tee "$OUT_DIR/gpu_bench.log"
exit "${PIPESTATUS[0]}"
