#!/usr/bin/env bash
# The serving page in headless Chromium: trains a small CNN on 400 real photos (1 epoch), serves
# it, uploads a cat and a dog photo through the page and checks the classes it shows against
# `catdog predict`; the screenshot goes to $1 (default: a temporary file).
#   scripts/browser-check.sh [SCREENSHOT] (needs CATDOG_DATA, chromium and `pip install playwright`)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/catdog-target}"
catdog="$CARGO_TARGET_DIR/release/catdog"
data="${CATDOG_DATA:?set CATDOG_DATA to the dogs-vs-cats folder}/train"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
shot="${1:-$work/page.png}"
mkdir -p "$work/data"
for c in cat dog; do
  for i in $(seq 0 199); do ln -s "$data/$c.$i.jpg" "$work/data/$c.$i.jpg"; done
done
"$catdog" train --data "$work/data" --out "$work/run" --epochs 1 --quiet >/dev/null
python3 tests/browser/page_check.py "$catdog" "$work/run" "$shot" "$data/cat.9001.jpg" "$data/dog.9002.jpg"
