#!/usr/bin/env bash
# On a GPU machine (issue 5): wgpu parity tests, then the default CNN trained on the carried
# photos on wgpu and on Flex, with images/s for both and held-out accuracy. Bounded: the whole
# script stays inside ~8 minutes (each training has a time limit).
#
#   bash scripts/gpu-check.sh          (after scripts/gpu-bundle.sh here, carrying gpu-bundle and .gl)
#
# Environment: GPU_EPOCHS (default 8), GPU_BATCH (default 64, as on the CPU), CPU_EPOCHS (1).
set -uo pipefail
cd "$(dirname "$0")/.."
gpu_epochs="${GPU_EPOCHS:-8}"
gpu_batch="${GPU_BATCH:-64}"
cpu_epochs="${CPU_EPOCHS:-1}"
work="${TMPDIR:-/tmp}/catdog-gpu-check"
rm -rf "$work" && mkdir -p "$work/bin"

# Loaders, when the machine lacks them (see the device README).
if ! ldconfig -p | grep -q libvulkan && ls .gl/*.deb >/dev/null 2>&1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] &&
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json \
    __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "CPU: $(nproc) cores"

for b in catdog wgpu_parity; do
  xz -dc "gpu-bundle/bin/$b.xz" >"$work/bin/$b" && chmod +x "$work/bin/$b"
done
catdog="$work/bin/catdog"

echo "== parity: same weights -> same logits (1e-4), one Adam step -> same loss (1e-3)"
timeout 120 "$work/bin/wgpu_parity" --nocapture 2>&1 | grep -E "adapter|skipped|test |result|panicked|assert"

train() { # backend epochs batch seconds
  local out="$work/run-$1"
  timeout "$4" "$catdog" train --backend "$1" --epochs "$2" --batch-size "$3" \
    --data gpu-bundle/data/train --test gpu-bundle/data/test --out "$out" \
    --cache-dir "$work/cache" 2>&1 | grep -vE '^\s*$'
  echo "exit status: ${PIPESTATUS[0]}"
}
echo "== wgpu: $gpu_epochs epochs, batch $gpu_batch"
train wgpu "$gpu_epochs" "$gpu_batch" 240
echo "== flex on this machine's CPUs: $cpu_epochs epoch(s), batch 64"
train flex "$cpu_epochs" 64 120
echo "== reference: the 2-core CPU machine trains this CNN at 405 images/s (README, 48x48)"
