#!/usr/bin/env python3
"""PyTorch reference for catdog's throughput (examples/throughput.rs), with PyTorch's CPU recipes.

The same models as catdog's defaults (MLP 512-256; CNN 32-64-128-256 with BatchNorm, ReLU and
max-pool per block; the ResNet with a full-resolution stem of 32, stages 64-128-256 and residual
blocks [1, 0, 1]), PyTorch's default initialisation, Adam, synthetic data preloaded as tensors,
2 threads. Recipes:

    eager     NCHW, torch.optim.Adam with its defaults
    cl-fused  channels_last tensors and weights, Adam(fused=True)
    bf16      cl-fused with bf16 autocast for forward and backward (f32 master weights)
    compile   cl-fused with torch.compile (inductor)

Prints training and batch inference images/s, and batch-1 inference latency in ms (median).

    pip install torch
    python3 benches/reference/torch_train.py [mlp|cnn|resnet] [--recipe eager] [--image-size 64]
        [--batch 64] [--steps 20]
"""
import argparse
import contextlib
import statistics
import time

import torch
from torch import nn

RECIPES = ["eager", "cl-fused", "bf16", "compile"]


def mlp(size, classes=2):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(3 * size * size, 512), nn.ReLU(),
        nn.Linear(512, 256), nn.ReLU(),
        nn.Linear(256, classes),
    )


def conv_bn_relu(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def cnn(size, channels=(32, 64, 128, 256), classes=2):
    layers, c_in = [], 3
    for c in channels:
        layers += conv_bn_relu(c_in, c) + [nn.MaxPool2d(2)]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(c_in, classes)]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + relu(bn(conv(relu(bn(conv(x)))))), as catdog's `Residual`."""

    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(*conv_bn_relu(c, c), *conv_bn_relu(c, c))

    def forward(self, x):
        return x + self.body(x)


def resnet(size, stem=32, channels=(64, 128, 256), residual=(1, 0, 1), classes=2):
    layers, c_in = conv_bn_relu(3, stem), stem
    for c, blocks in zip(channels, residual):
        layers += conv_bn_relu(c_in, c) + [nn.MaxPool2d(2)]
        layers += [Residual(c) for _ in range(blocks)]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, classes)]
    return nn.Sequential(*layers)


def flops_per_image(model, size):
    """Multiply-adds x 2 of the convolutions and linear layers in one forward pass."""
    total = 0

    def hook(m, _inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total += 2 * k * out[0].numel()
        elif isinstance(m, nn.Linear):
            total += 2 * m.in_features * m.out_features
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()
        model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


def main():
    p = argparse.ArgumentParser()
    p.add_argument("arch", nargs="?", default="cnn", choices=["mlp", "cnn", "resnet"])
    p.add_argument("--recipe", default="eager", choices=RECIPES)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--flops", action="store_true", help="print FLOPs per image and exit")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = {"mlp": mlp, "cnn": cnn, "resnet": resnet}[a.arch](a.image_size)
    if a.flops:
        print(flops_per_image(model, a.image_size))
        return
    channels_last = a.recipe != "eager" and a.arch != "mlp"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=a.recipe != "eager")
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(a.batch, 3, a.image_size, a.image_size).to(memory_format=fmt)
    x1 = torch.randn(1, 3, a.image_size, a.image_size).to(memory_format=fmt)
    y = torch.arange(a.batch) % 2
    run = torch.compile(model) if a.recipe == "compile" else model

    def autocast():
        if a.recipe == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(run(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    model.train()
    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    train = a.steps * a.batch / (time.perf_counter() - t)
    model.eval()
    with torch.inference_mode(), autocast():
        for _ in range(3):
            run(x)
            run(x1)
        t = time.perf_counter()
        for _ in range(a.steps):
            run(x)
        infer = a.steps * a.batch / (time.perf_counter() - t)
        times = []
        for _ in range(max(30, a.steps)):
            t = time.perf_counter()
            run(x1)
            times.append(time.perf_counter() - t)
    latency = 1000 * statistics.median(times)
    params = sum(p.numel() for p in model.parameters())
    print(f"{a.arch} ({params} parameters) {a.image_size}x{a.image_size} batch {a.batch} on torch "
          f"{torch.__version__} {a.recipe} ({a.threads} threads): train {train:.1f} images/s, "
          f"inference {infer:.1f} images/s, latency {latency:.3f} ms")


if __name__ == "__main__":
    main()
