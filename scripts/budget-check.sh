#!/usr/bin/env bash
# Does `catdog train --budget B` end within B + 2%, on a quiet machine and when two CPU hogs start
# after the warm-up (the machine then runs at about a third of its speed)?
#
#   scripts/budget-check.sh [CATDOG_BINARY] [BUDGET_SECONDS]
#
# Trains the default CNN on 2,000 photos (ids 0-999 of each class, linked from $CATDOG_DATA/train)
# with 500 held-out ones (ids 9000-9249), twice: quiet, then with two `yes > /dev/null` hogs from
# 60 s on. Prints each command's wall time
# against the budget and exits 1 when one overran by more than 2%. Takes about 2 x the budget.
set -euo pipefail
bin="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/catdog-target}/release/catdog}"
budget="${2:-180}"
data="${CATDOG_DATA:-../shared/data/dogs-vs-cats}"
[ -x "$bin" ] || { echo "no catdog binary at $bin (cargo build --release)" >&2; exit 2; }
[ -d "$data/train" ] || { echo "no photos at $data/train (set CATDOG_DATA)" >&2; exit 2; }

work="$(mktemp -d)"
hogs=()
cleanup() {
  for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/photos" "$work/held-out"
for class in cat dog; do
  for i in $(seq 0 999); do ln -s "$(realpath "$data/train/$class.$i.jpg")" "$work/photos/"; done
  for i in $(seq 9000 9249); do ln -s "$(realpath "$data/train/$class.$i.jpg")" "$work/held-out/"; done
done

fail=0
for mode in quiet hogged; do
  hogs=()
  if [ "$mode" = hogged ]; then
    ( sleep 60; exec yes > /dev/null ) & hogs+=($!)
    ( sleep 60; exec yes > /dev/null ) & hogs+=($!)
  fi
  start=$(date +%s.%N)
  "$bin" train --data "$work/photos" --test "$work/held-out" --budget "${budget}s" \
    --out "$work/run-$mode" --cache-dir "$work/cache" > "$work/$mode.log" 2>&1
  end=$(date +%s.%N)
  for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
  wall=$(echo "$end - $start" | bc -l)
  printf '%-6s budget %ss: ended after %.1f s (%+.1f%%), %s\n' "$mode" "$budget" "$wall" \
    "$(echo "100 * ($wall - $budget) / $budget" | bc -l)" \
    "$(grep -E 'epochs \(planned|-> [0-9]+ epochs instead' "$work/$mode.log" | tr '\n' ' ')"
  if (( $(echo "$wall > $budget * 1.02" | bc -l) )); then fail=1; fi
done
exit "$fail"
