#!/usr/bin/env bash
# Load benchmark of `catdog serve` (a benchmark, not a test): 1, 8, 32 and 128 concurrent clients
# sending real Kaggle JPEGs for a fixed time each, with micro-batching (--max-batch 32) and
# without (--max-batch 1); then 128 clients plus a stream of bad requests. Prints throughput,
# p50/p99 latency, mean batch, statuses and the server's peak memory, and the in-process
# baseline: `catdog predict` (Classifier, batches of 64, decode included) on the same photos.
# TTA 0: one forward pass per photo (`?tta=0`, `predict --no-tta`); else the default, flip TTA.
#   bash benches/serve_load.sh MODEL_DIR PHOTO_DIR [SECONDS] [TTA]
set -euo pipefail
cd "$(dirname "$0")/.."
model="$1" photos="$2" seconds="${3:-10}" tta="${4:-1}"
path=/predictions predict_flags=()
if [ "$tta" = 0 ]; then path="/predictions?tta=0" predict_flags=(--no-tta); fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/catdog-target}"
cargo build --release --bin catdog >/dev/null
catdog="$CARGO_TARGET_DIR/release/catdog"
work="$(mktemp -d)"
# (`kill 0` would signal this whole process group: only a started server is stopped.)
trap 'if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
# sed reads all of ls's output: `head` would end it early, a failure under pipefail.
ls "$photos" | sed -n "1,200s|^|$photos/|p" >"$work/list"
start=$(date +%s.%N)
xargs "$catdog" predict --model "$model" --json "${predict_flags[@]}" <"$work/list" >/dev/null
end=$(date +%s.%N)
echo "in-process baseline (catdog predict, 200 photos, load and decode included): $(python3 -c "print(f'{200 / ($end - $start):.1f}')") photos/s"
for batch in 32 1; do
  "$catdog" serve --model "$model" --port 0 --max-batch "$batch" >"$work/out" 2>"$work/err" &
  pid=$!
  for _ in $(seq 100); do grep -q http "$work/out" 2>/dev/null && break; sleep 0.1; done
  url="$(grep -o 'http://[^ ]*' "$work/out" | head -1)"
  echo "--max-batch $batch"
  for clients in 1 8 32 128; do
    python3 benches/serve_load.py "$url" "$photos" --path "$path" --clients "$clients" --seconds "$seconds"
  done
  if [ "$batch" = 32 ]; then
    python3 benches/serve_load.py "$url" "$photos" --path "$path" --clients 128 --bad-clients 8 --seconds "$seconds"
  fi
  echo "  peak memory: $(sed -n 's/^VmHWM: *//p' /proc/$pid/status)"
  kill -TERM "$pid"; wait "$pid" || true
done
