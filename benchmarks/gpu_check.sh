#!/usr/bin/env bash
# dlrun on a GPU in one command (a few minutes): experiment=mnist_speedrun's time to 99% MNIST test
# accuracy and its training throughput, in fp32, bf16 autocast, and bf16 + torch.compile, then one
# real `dlrun` run of the preset. The public reference point: 99% in 0.76 s of training on a laptop
# GTX 1660 Ti.
#
#   benchmarks/gpu_check.sh [DATA_ROOT]      # DATA_ROOT holds MNIST/raw (default: ../shared/data)
#
# Time to 99% counts training only (the device synchronized around each epoch), after a warm-up of
# the same model (compilation, cuDNN autotuning) whose weights are then reset; each variant trains
# 3 times (seeds 0, 1, 2). JSON results go to benchmarks/results/gpu-<variant>-<host>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="${1:-../shared/data}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
HOST="$(hostname)"
OUT=benchmarks/results
mkdir -p "$OUT"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not available"
"$PY" - <<'EOF'
import torch
assert torch.cuda.is_available(), "no CUDA GPU visible to torch: this check is for a GPU machine"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
EOF

echo "== fp32"
"$PY" benchmarks/bench_speed.py speedrun --root "$ROOT" --out "$OUT/gpu-fp32-$HOST.json" device=cuda
echo "== bf16 autocast"
"$PY" benchmarks/bench_speed.py speedrun --root "$ROOT" --out "$OUT/gpu-bf16-$HOST.json" device=cuda trainer.precision=bf16
echo "== bf16 autocast + torch.compile"
"$PY" benchmarks/bench_speed.py speedrun --root "$ROOT" --out "$OUT/gpu-bf16-compile-$HOST.json" device=cuda \
    trainer.precision=bf16 trainer.compile=true

echo "== the real command line: dlrun experiment=mnist_speedrun (fp32)"
RUN_DIR="$(mktemp -d)"
"$PY" -m dlrun experiment=mnist_speedrun dataset.root="$ROOT" device=cuda trainer.progress=off trainer.plots=false \
    hydra.run.dir="$RUN_DIR"
"$PY" - "$RUN_DIR/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
t = s["timing"]
print(f"dlrun: {s['status']}, test acc {s['test']['acc']:.2%}, training {t['train_s']:.2f} s over {s['epochs_completed']} epochs, "
      f"{t['samples_per_s']:,.0f} images/s, wall {t['wall_s']:.1f} s on {s['device']}")
EOF
