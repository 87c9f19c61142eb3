#!/usr/bin/env bash
# catdog against the strongest alternatives on this machine, same models, side by side:
#   bash benches/compare.sh [ROUNDS] [ARCH...]     (ROUNDS defaults to 3; ARCH: mlp cnn resnet)
# Needs `pip install torch onnxruntime numpy`. Per architecture and round, alternately: catdog
# (examples/throughput.rs), PyTorch eager, channels_last + Adam(fused=True), + bf16 autocast,
# + torch.compile (benches/reference/torch_train.py), and ONNX Runtime on catdog's own ONNX export
# of the same network (benches/reference/ort_infer.py). Batch 64 at 64x64, 2 threads. Prints the
# medians in one table with catdog's ratio to the best competitor of each row (> 1: catdog is
# faster), the model's FLOPs per image and catdog's share of this machine's fp32 gemm rate.
# On a CPU with AVX512-BF16 catdog also trains with `--precision bf16` (column "catdog bf16");
# the training rows' ratio is then catdog's faster recipe against PyTorch's fastest.
# TORCH_RECIPES="bf16" (a subset of "eager cl-fused bf16 compile") and ORT=0 run fewer
# competitors, for a shorter side-by-side.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
shift || true
archs=("${@:-mlp cnn resnet}")
read -r -a archs <<<"${archs[*]}"
# The build cache .ci/run uses: a cold build of burn takes many minutes.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/catdog-target}"
cargo build --release --example throughput --bin catdog >/dev/null
bin="$CARGO_TARGET_DIR/release/examples/throughput"
catdog="$CARGO_TARGET_DIR/release/catdog"
python3 -c "import torch, onnxruntime, numpy" 2>/dev/null ||
  { echo "needs PyTorch, ONNX Runtime and numpy: pip install torch onnxruntime numpy"; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
read -r -a recipes <<<"${TORCH_RECIPES:-eager cl-fused bf16 compile}"
bf16=no
grep -qw avx512_bf16 /proc/cpuinfo && bf16=yes
results="$work/results.txt"
for arch in "${archs[@]}"; do
  # The network ONNX Runtime runs: catdog's trained weights, exported by catdog.
  "$bin" "$arch" --image-size 64 --batch 64 --steps 3 --save "$work/$arch-model" >/dev/null
  "$catdog" export --model "$work/$arch-model" --out "$work/$arch-onnx" --format onnx >/dev/null
  echo "$arch flops $(python3 benches/reference/torch_train.py "$arch" --image-size 64 --flops)" >>"$results"
  for round in $(seq "$rounds"); do
    o="$("$bin" "$arch" --image-size 64 --batch 64 --steps 30)"
    echo "round $round catdog: $o"
    echo "$arch catdog $o" >>"$results"
    if [ "$bf16" = yes ]; then
      o="$("$bin" "$arch" --image-size 64 --batch 64 --steps 30 --precision bf16)"
      echo "round $round catdog bf16: $o"
      # Only its training figure: inference stays f32.
      echo "$arch catdog-bf16 $(grep -o 'train [0-9.]*' <<<"$o")" >>"$results"
    fi
    for r in "${recipes[@]}"; do
      o="$(python3 benches/reference/torch_train.py "$arch" --recipe "$r" --image-size 64 --batch 64 --steps 30 2>/dev/null)"
      echo "round $round torch $r: $o"
      echo "$arch $r $o" >>"$results"
    done
    if [ "${ORT:-1}" != 0 ]; then
      o="$(python3 benches/reference/ort_infer.py "$work/$arch-onnx/model.onnx" --batch 64 --steps 30)"
      echo "round $round onnxruntime: $o"
      echo "$arch ort $o" >>"$results"
    fi
  done
done
# This machine's fp32 gemm rate with 2 threads (2048^3, best of 5): the peak the shares use.
gemm="$(python3 - <<'PY'
import time, torch
torch.set_num_threads(2)
a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
a @ b
best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))
print(2 * 2048 ** 3 / best / 1e9)
PY
)"
python3 - "$results" "$gemm" "$(lscpu | sed -n 's/^Model name: *//p')" <<'PY'
import re, statistics, sys
path, gemm, cpu = sys.argv[1], float(sys.argv[2]), sys.argv[3]
rows, flops = {}, {}
for line in open(path):
    arch, who, text = line.split(" ", 2)
    if who == "flops":
        flops[arch] = float(text)
        continue
    for key in ("train", "inference", "latency"):
        m = re.search(rf"{key} ([0-9.]+)", text)
        if m:
            rows.setdefault((arch, key), {}).setdefault(who, []).append(float(m.group(1)))
cols = ["catdog", "catdog-bf16", "eager", "cl-fused", "bf16", "compile", "ort"]
cols = [c for c in cols if c == "catdog" or any(c in got for got in rows.values())]
names = {"catdog-bf16": "catdog bf16", "eager": "PyTorch eager", "cl-fused": "channels_last + fused Adam", "bf16": "+ bf16 autocast",
         "compile": "+ torch.compile", "ort": "ONNX Runtime"}
print(f"\n{cpu}, 2 threads, 64x64, batch 64 (latency: batch 1); medians; fp32 gemm {gemm:.0f} GFLOP/s")
print("| | catdog | " + " | ".join(names[c] for c in cols[1:]) + " | catdog's best / best |")
print("|---" * (len(cols) + 2) + "|")
for arch in dict.fromkeys(a for a, _ in rows):
    for key, unit in (("train", "training img/s"), ("inference", "inference img/s"), ("latency", "latency ms")):
        got = rows.get((arch, key), {})
        med = {c: statistics.median(v) for c, v in got.items()}
        if "catdog" not in med:
            continue
        ours = max(v for c, v in med.items() if c.startswith("catdog")) if key != "latency" else med["catdog"]
        others = [v for c, v in med.items() if not c.startswith("catdog")]
        best = (min if key == "latency" else max)(others) if others else None
        ratio = "" if best is None else f"{(best / ours if key == 'latency' else ours / best):.2f}x"
        cells = [f"{med[c]:.{3 if key == 'latency' else 0}f}" if c in med else "-" for c in cols]
        print(f"| {arch} {unit} | " + " | ".join(cells) + f" | {ratio} |")
for arch, f in flops.items():
    inf = statistics.median(rows[(arch, "inference")]["catdog"])
    tr = statistics.median(rows[(arch, "train")]["catdog"])
    print(f"{arch}: {f / 1e6:.1f} MFLOP per image forward; catdog inference {f * inf / 1e9:.0f} GFLOP/s "
          f"({100 * f * inf / 1e9 / gemm:.0f}% of the gemm rate), training ~{3 * f * tr / 1e9:.0f} GFLOP/s "
          f"({100 * 3 * f * tr / 1e9 / gemm:.0f}%)")
PY
