#!/usr/bin/env bash
# Data-parallel training under MPI (cargo feature `mpi`), on loopback with two ranks of one
# thread each, on 400 real photos:
#   1. the MLP (no BatchNorm) gives the same metrics.csv losses with 2 ranks as with 1 process;
#   2. the CNN trains under 2 ranks (its weights checked equal across ranks after every epoch);
#   3. a rank killed mid-run ends the whole job within seconds, and the run folder's last
#      checkpoint resumes in one process to the end.
# Installs OpenMPI and libclang (rsmpi's bindings) from Debian's packages when missing.
#   CATDOG_DATA=../shared/data/dogs-vs-cats bash scripts/mpi-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CATDOG_DATA:-}" ]; then
  echo "mpi check skipped: CATDOG_DATA is not set (it trains on real photos)"
  exit 0
fi
if ! command -v mpirun >/dev/null || ! command -v mpicc >/dev/null || ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq openmpi-bin libopenmpi-dev libclang-dev >/dev/null
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/catdog-target}"
cargo build --release --features mpi --bin catdog
catdog="$CARGO_TARGET_DIR/release/catdog"
# mpirun refuses root unless told; CI runs as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
two_ranks=(mpirun --oversubscribe -np 2 -x RAYON_NUM_THREADS=1)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/photos"
for i in $(seq 0 199); do
  ln -s "$CATDOG_DATA/train/cat.$i.jpg" "$CATDOG_DATA/train/dog.$i.jpg" "$work/photos/"
done
printf '[model]\narch = "mlp"\n' >"$work/mlp.toml"
common=(--data "$work/photos" --seed 7 --no-augment --image-size 32 --batch-size 32 --quiet)

# 1. Same losses, 1 process and 2 ranks (train and validation loss per epoch, 6 decimals).
"$catdog" train "${common[@]}" --config "$work/mlp.toml" --epochs 3 --out "$work/one" >/dev/null
"${two_ranks[@]}" "$catdog" train "${common[@]}" --config "$work/mlp.toml" --epochs 3 --out "$work/two" >/dev/null
losses() { cut -d, -f1,3,5 "$1/metrics.csv"; }
if ! diff <(losses "$work/one") <(losses "$work/two"); then
  echo "FAIL: 2 ranks gave other losses than 1 process (MLP)"; exit 1
fi
echo "ok: MLP, 2 ranks and 1 process: the same train and validation losses for 3 epochs"

# 2. The CNN under 2 ranks: its run folder, from rank 0 alone.
"${two_ranks[@]}" "$catdog" train "${common[@]}" --arch cnn --epochs 2 --out "$work/cnn" >/dev/null
test -s "$work/cnn/model.bpk" && test -s "$work/cnn/summary.json"
echo "ok: CNN, 2 ranks: run folder written, weights equal across ranks after each epoch"

# 3. Kill rank 1 once the first checkpoint exists: the job ends within 10 s, not hangs.
"${two_ranks[@]}" "$catdog" train "${common[@]}" --arch cnn --epochs 40 --out "$work/killed" \
  >"$work/killed.log" 2>&1 &
job=$!
for _ in $(seq 600); do [ -e "$work/killed/checkpoints/latest.json" ] && break; sleep 0.1; done
test -e "$work/killed/checkpoints/latest.json" || { echo "FAIL: no checkpoint after 60 s"; exit 1; }
victim="$(pgrep -f "catdog train .*--out $work/killed" | sort -n | tail -1)"
kill -9 "$victim"
killed_at=$(date +%s)
for _ in $(seq 100); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$job" 2>/dev/null; then
  echo "FAIL: the job still runs 10 s after a rank was killed"; kill -9 "$job"; exit 1
fi
status=0; wait "$job" || status=$?
[ "$status" -ne 0 ] || { echo "FAIL: a killed rank left exit status 0"; exit 1; }
echo "ok: rank 1 killed, the job ended in $(( $(date +%s) - killed_at )) s with status $status"
# mpirun has returned; rank 0 may still be on its way out (its lock names it until it is gone).
for _ in $(seq 100); do pgrep -f "catdog train .*--out $work/killed" >/dev/null || break; sleep 0.1; done
rm -rf "/tmp/catdog-rank1-$victim"
"$catdog" train --resume "$work/killed" --quiet >/dev/null
grep -q '"epochs_run": 40' "$work/killed/summary.json"
echo "ok: resumed in one process from the last checkpoint to epoch 40"
