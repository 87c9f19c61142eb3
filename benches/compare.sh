#!/usr/bin/env bash
# catdog vs PyTorch, same models, same machine, side by side:
#   bash benches/compare.sh [ROUNDS]      (needs `pip install torch`; ROUNDS defaults to 3)
# Runs examples/throughput.rs and benches/reference/torch_train.py alternately ROUNDS times per
# model (alternating spreads any background load over both), then prints the median training
# and inference images/s of each and the ratio catdog/PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
# The build cache .ci/run uses: a cold build of burn takes many minutes.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/catdog-target}"
cargo build --release --example throughput >/dev/null
bin="$CARGO_TARGET_DIR/release/examples/throughput"
python3 -c "import torch" 2>/dev/null || { echo "PyTorch is not installed: pip install torch"; exit 2; }
rate() { sed -E "s/.*$1 ([0-9.]+) images.*/\1/" <<<"$2"; }
for arch in mlp cnn; do
  ours=() ref=()
  for _ in $(seq "$rounds"); do
    o="$("$bin" "$arch" --image-size 64 --batch 64 --steps 30)"
    r="$(python3 benches/reference/torch_train.py "$arch" --image-size 64 --batch 64 --steps 30)"
    echo "catdog : $o"
    echo "pytorch: $r"
    ours+=("$(rate train "$o") $(rate inference "$o")")
    ref+=("$(rate train "$r") $(rate inference "$r")")
  done
  python3 - "$arch" "${ours[@]}" -- "${ref[@]}" <<'PY'
import statistics, sys
arch, rest = sys.argv[1], sys.argv[2:]
cut = rest.index("--")
ours = [tuple(map(float, s.split())) for s in rest[:cut]]
ref = [tuple(map(float, s.split())) for s in rest[cut + 1:]]
med = lambda rows, i: statistics.median(r[i] for r in rows)
t1, t2, i1, i2 = med(ours, 0), med(ref, 0), med(ours, 1), med(ref, 1)
print(f"{arch} median of {len(ours)}: training catdog {t1:.0f} vs PyTorch {t2:.0f} images/s = {t1 / t2:.2f}x; "
      f"inference {i1:.0f} vs {i2:.0f} = {i1 / i2:.2f}x\n")
PY
done
