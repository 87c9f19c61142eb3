#!/usr/bin/env python3
"""PyTorch reference for catdog's training throughput (examples/throughput.rs).

The same two models with PyTorch's default initialisation (which burn's KaimingUniform with
gain 1/sqrt(3) reproduces: U(-1/sqrt(fan_in), 1/sqrt(fan_in))), Adam, batch 64, synthetic data
preloaded as tensors, 2 threads.

    pip install torch
    python3 benches/reference/torch_train.py [mlp|cnn] [--image-size 64] [--batch 64] [--steps 20]
"""
import argparse
import time

import torch
from torch import nn


def mlp(size, classes=2):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(3 * size * size, 512), nn.ReLU(),
        nn.Linear(512, 256), nn.ReLU(),
        nn.Linear(256, classes),
    )


def cnn(size, channels=(32, 64, 128, 256), classes=2):
    layers, c_in = [], 3
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(c_in, classes)]
    return nn.Sequential(*layers)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("arch", nargs="?", default="cnn", choices=["mlp", "cnn"])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = (mlp if a.arch == "mlp" else cnn)(a.image_size)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(a.batch, 3, a.image_size, a.image_size)
    y = torch.arange(a.batch) % 2

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
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
    with torch.no_grad():
        model(x)
        t = time.perf_counter()
        for _ in range(a.steps):
            model(x)
        infer = a.steps * a.batch / (time.perf_counter() - t)
    params = sum(p.numel() for p in model.parameters())
    print(f"{a.arch} ({params} parameters) {a.image_size}x{a.image_size} batch {a.batch} on torch "
          f"{torch.__version__} ({a.threads} threads): train {train:.1f} images/s, inference {infer:.1f} images/s")


if __name__ == "__main__":
    main()
