#!/usr/bin/env bash
# Prepares gpu-bundle/ (git-ignored) for scripts/gpu-check.sh on a GPU machine that has no
# internet, no ../shared and takes at most 64 MiB: the release catdog binary and the wgpu parity
# test binary (stripped, xz-compressed: ~25 MB), a subset of the photos, and the Vulkan/EGL loader
# packages in .gl/ (git-ignored through .git/info/exclude).
#
#   scripts/gpu-bundle.sh [TRAIN_PER_CLASS] [TEST_PER_CLASS]      (default 1500 and 500: ~57 MB)
#
# Photos: cat/dog ids from 0 up for training and from 9000 up for the held-out test (the same
# split as data/fetch.sh), hard-linked from data/dogs-vs-cats or $CATDOG_DATA/train.
set -euo pipefail
cd "$(dirname "$0")/.."
train_n="${1:-1500}"
test_n="${2:-500}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/catdog-target}"

src=""
for d in data/dogs-vs-cats/train "${CATDOG_DATA:-/nonexistent}/train"; do
  [ -f "$d/cat.0.jpg" ] && { src="$d"; break; }
done
[ -n "$src" ] || { echo "no photos: run data/fetch.sh or set CATDOG_DATA"; exit 2; }
test_src="$src"
[ -f data/dogs-vs-cats/test/cat.9000.jpg ] && [ "$src" = data/dogs-vs-cats/train ] && test_src=data/dogs-vs-cats/test

# Both binaries with the GPU backend (the feature set CI's wgpu test caches).
cargo build --release --features wgpu >/dev/null 2>&1
cargo test --release -p catdog-train --features wgpu --test wgpu_parity --no-run >/dev/null 2>&1
parity="$(ls -t "$CARGO_TARGET_DIR"/release/deps/wgpu_parity-* | grep -v '\.d$' | head -1)"

rm -rf gpu-bundle
mkdir -p gpu-bundle/bin gpu-bundle/data/train gpu-bundle/data/test
for pair in "catdog:$CARGO_TARGET_DIR/release/catdog" "wgpu_parity:$parity"; do
  name="${pair%%:*}"
  strip -o "gpu-bundle/bin/$name" "${pair#*:}"
  xz -T2 -6 "gpu-bundle/bin/$name"
done
link() { ln "$1" "$2" 2>/dev/null || cp "$1" "$2"; }
for c in cat dog; do
  for i in $(seq 0 $((train_n - 1))); do link "$src/$c.$i.jpg" gpu-bundle/data/train/; done
  for i in $(seq 9000 $((9000 + test_n - 1))); do link "$test_src/$c.$i.jpg" gpu-bundle/data/test/; done
done

# Vulkan and EGL loaders for the GPU machine (its driver is there, its loaders may not be).
if [ ! -d .gl ] || [ -z "$(ls .gl/*.deb 2>/dev/null)" ]; then
  grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >>.git/info/exclude
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update >/dev/null && (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
fi
du -sh gpu-bundle .gl
echo "carry: [\"gpu-bundle\", \".gl\"]; run: bash scripts/gpu-check.sh"
