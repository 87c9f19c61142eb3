#!/usr/bin/env bash
# catdog vs PyTorch, same models, same machine, one after the other:
#   bash benches/compare.sh          (needs `pip install torch`)
# Prints training and inference images/s of each and the ratio catdog/PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example throughput >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release/examples/throughput"
for arch in mlp cnn; do
  ours="$("$bin" "$arch" --image-size 64 --batch 64 --steps 20)"
  ref="$(python3 benches/reference/torch_train.py "$arch" --image-size 64 --batch 64 --steps 20)"
  echo "catdog : $ours"
  echo "pytorch: $ref"
  rate() { sed -E "s/.*$1 ([0-9.]+) images.*/\1/" <<<"$2"; }
  python3 - "$(rate train "$ours")" "$(rate train "$ref")" "$(rate inference "$ours")" "$(rate inference "$ref")" "$arch" <<'PY'
import sys
t1, t2, i1, i2, arch = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
print(f"{arch}: catdog/pytorch training {t1 / t2:.2f}x, inference {i1 / i2:.2f}x\n")
PY
done
