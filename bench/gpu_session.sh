#!/usr/bin/env bash
# One lent GPU session in one command (the device tool's `run`, after `source bench/gpu_kit.sh install`):
# the GPU check first, then issue 12's accuracy levers over seeds until the deadline. The runs work in
# $WORK (default /tmp/gpu-session); $OUT (default var/gpu-session) gets at most 7 files, as the tool
# brings back: nvidia-smi.csv, gpu-check.json/.log, levers.log, summary.md/.json and levers.tar.gz (every
# run's metrics, curves, manifests and logs; no weights or checkpoints).
# Usage: OUT=/path bash bench/gpu_session.sh [LEVER_MINUTES] [PARALLEL]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-var/gpu-session}"
work="${WORK:-/tmp/gpu-session}"
minutes="${1:-7}"
parallel="${2:-6}"
py=".venv/bin/python"
[ -x "$py" ] || py=python3
mkdir -p "$out" "$work"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia-smi.csv" 2>&1 || true
# the check has its own budget (its later sections are skipped past it), so the levers keep their minutes
"$py" bench/gpu_check.py --budget-s 150 --along 60 --out "$out/gpu-check.json" > "$out/gpu-check.log" 2>&1 || true
"$py" bench/gpu_levers.py --out "$work/levers" --minutes "$minutes" --parallel "$parallel" \
  > "$out/levers.log" 2>&1 || true
cp "$work/levers/summary.md" "$work/levers/summary.json" "$out/" 2>/dev/null || true
tar czf "$out/levers.tar.gz" -C "$work" --exclude='*.pt' --exclude='*.onnx' --exclude='*.safetensors' levers \
  2>/dev/null || true
cat "$out/summary.md" 2>/dev/null || tail -20 "$out/levers.log"
