#!/usr/bin/env bash
# Proof that exported models run outside catdog: train a small MLP, CNN and ResNet, export them
# as safetensors and as ONNX; examples/python/check_export.py (numpy + safetensors) rebuilds
# their forward passes, examples/python/check_onnx.py runs the ONNX file with onnx's checker and
# onnxruntime; both compare logits with `catdog predict --json` to 1e-4.
#
#   scripts/check-export.sh [CATDOG_BINARY]
#
# Photos come from $CATDOG_DATA (the Kaggle set) when it is set; otherwise the Python script
# and the training use generated images.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${1:-${CARGO_TARGET_DIR:-target}/release/catdog}"
[ -x "$bin" ] || { echo "no catdog binary at $bin (build with cargo build --release)"; exit 2; }

python3 -c "import numpy, safetensors, onnx, onnxruntime" 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check numpy safetensors onnx onnxruntime
# Pillow lets the check use real photos; without it the check uses generated images.
python3 -c "import PIL" 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check pillow ||
  echo "Pillow unavailable: checking on generated images"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ -n "${CATDOG_DATA:-}" ] && [ -d "$CATDOG_DATA/train" ]; then
  data="$CATDOG_DATA/train"
  photos=(--photos "$data")
else
  # Two classes of generated PNGs, distinguishable by colour, in the Kaggle layout.
  data="$work/data"
  python3 - "$data" <<'PY'
import os, sys
import numpy as np
sys.path.insert(0, "examples/python")
from check_export import write_png
out = sys.argv[1]
os.makedirs(out)
rng = np.random.default_rng(1)
for i in range(60):
    for label, base in (("cat", (200, 120, 60)), ("dog", (60, 120, 200))):
        px = np.clip(np.array(base) + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
        write_png(os.path.join(out, f"{label}.{i}.png"), px)
PY
  photos=()
fi

printf 'image_size = 32\nepochs = 1\n[model]\narch = "cnn"\nchannels = [16, 32, 64]\n' >"$work/cnn.toml"
printf 'image_size = 32\nepochs = 1\n[model]\narch = "resnet"\nstem = 8\nchannels = [16, 32]\nresidual = [1, 1]\n' >"$work/resnet.toml"
for arch in mlp cnn resnet; do
  case "$arch" in
    mlp) args=(--arch mlp --image-size 32 --epochs 1) ;;
    *) args=(--config "$work/$arch.toml") ;;
  esac
  "$bin" train "${args[@]}" --data "$data" --out "$work/$arch" --quiet
  "$bin" export --model "$work/$arch" --format safetensors --out "$work/$arch-export"
  python3 examples/python/check_export.py --bundle "$work/$arch-export" --catdog "$bin" "${photos[@]}"
  "$bin" export --model "$work/$arch" --format onnx --probabilities --out "$work/$arch-onnx"
  python3 examples/python/check_onnx.py --bundle "$work/$arch-onnx" --model "$work/$arch" \
    --catdog "$bin" "${photos[@]}"
done
