#!/usr/bin/env python3
"""ONNX Runtime on catdog's own ONNX export: batch inference images/s and batch-1 latency.

All graph optimisations, 2 intra-op threads, sequential execution, inputs in 0..1 as the
exported graph takes them (its normalisation is inside the graph).

    pip install onnxruntime numpy
    python3 benches/reference/ort_infer.py MODEL.onnx [--batch 64] [--steps 20] [--threads 2]
"""
import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    s = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    size = inp.shape[-1]
    rng = np.random.default_rng(1)
    x = rng.random((a.batch, 3, size, size), dtype=np.float32)
    x1 = x[:1].copy()
    for _ in range(3):
        s.run(None, {inp.name: x})
        s.run(None, {inp.name: x1})
    t = time.perf_counter()
    for _ in range(a.steps):
        s.run(None, {inp.name: x})
    infer = a.steps * a.batch / (time.perf_counter() - t)
    times = []
    for _ in range(max(30, a.steps)):
        t = time.perf_counter()
        s.run(None, {inp.name: x1})
        times.append(time.perf_counter() - t)
    latency = 1000 * statistics.median(times)
    print(f"onnxruntime {ort.__version__} ({a.threads} threads) {size}x{size} batch {a.batch}: "
          f"inference {infer:.1f} images/s, latency {latency:.3f} ms")


if __name__ == "__main__":
    main()
