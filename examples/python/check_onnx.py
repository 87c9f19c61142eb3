#!/usr/bin/env python3
"""Check a catdog ONNX export with an independent runtime: onnx's checker and onnxruntime.

    python3 examples/python/check_onnx.py --bundle DIR --catdog target/release/catdog \
        [--model RUN] [--photos FOLDER] [--count 16] [--tolerance 1e-4]

DIR holds model.onnx (from `catdog export --format onnx`); catdog's own logits come from
`catdog predict --model RUN` (default: DIR, when it also holds weights catdog loads). The script loads model.onnx with `onnx.checker.check_model` (full check, with shape
inference), reads the class names and the input size from the file's own metadata, and
preprocesses images itself, as the ONNX model card says and as catdog does: decode to RGB, cut
out the centre square, resize it with a triangle filter (an exact numpy replica of Rust's
`image::imageops::resize` with `FilterType::Triangle`), scale to 0..1. onnxruntime's logits must
match `catdog predict --json` on the same image files within the tolerance, with the same
predicted class for all; the batch is also run one image at a time (the batch dimension is
dynamic) and a `probabilities` output, when present, must be the softmax of the logits divided
by the model's temperature (the `temperature` metadata).

Images: with --photos (Pillow needed to decode them) photos are decoded once by Pillow and saved
as lossless PNG files at full size, so catdog and this script start from the same pixels and
each does its own crop and resize. Without photos, images of several sizes and aspect ratios
(smaller and larger than the input) are generated. With JPEG photos the logits of catdog on the
original files are also compared, for information: two JPEG decoders may differ by a few levels.

Needs numpy, onnx and onnxruntime (pip install numpy onnx onnxruntime). Exit status 0 when
every check passes, 1 otherwise.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_export import catdog_logits, softmax, write_png  # noqa: E402

F32 = np.float32


def triangle_taps(in_size, out_size):
    """For each output index, (first input index, float32 weights): image's Triangle filter
    (support 1, widened by the downscaling ratio), computed in f32 like the Rust code."""
    ratio = F32(in_size) / F32(out_size)
    sratio = ratio if ratio >= F32(1.0) else F32(1.0)
    support = F32(1.0) * sratio
    taps = []
    for out in range(out_size):
        centre = (F32(out) + F32(0.5)) * ratio
        left = int(np.floor(centre - support))
        left = min(max(left, 0), in_size - 1)
        right = int(np.ceil(centre + support))
        right = min(max(right, left + 1), in_size)
        centre = centre - F32(0.5)
        weights, total = [], F32(0.0)
        for i in range(left, right):
            x = abs((F32(i) - centre) / sratio)
            w = F32(1.0) - x if x < F32(1.0) else F32(0.0)
            weights.append(w)
            total = F32(total + w)
        taps.append((left, [F32(w / total) for w in weights]))
    return taps


def resize_triangle(rgb, size):
    """[H, W, 3] uint8 -> [size, size, 3] uint8, bit for bit as image 0.25's `resize` with
    `FilterType::Triangle`: a vertical pass into f32, then a horizontal pass rounded to u8."""
    h, w, _ = rgb.shape
    if (h, w) == (size, size):
        return rgb.copy()
    src = rgb.astype(F32)
    tmp = np.empty((size, w, 3), dtype=F32)
    for y, (left, weights) in enumerate(triangle_taps(h, size)):
        t = np.zeros((w, 3), dtype=F32)
        for k, wt in enumerate(weights):
            t = t + src[left + k] * wt
        tmp[y] = t
    out = np.empty((size, size, 3), dtype=np.uint8)
    for x, (left, weights) in enumerate(triangle_taps(w, size)):
        t = np.zeros((size, 3), dtype=F32)
        for k, wt in enumerate(weights):
            t = t + tmp[:, left + k] * wt
        # Clamp, then round half away from zero (Rust's f32::round), in f64 to stay exact.
        t = np.clip(t, F32(0.0), F32(255.0)).astype(np.float64)
        out[:, x] = np.floor(t + 0.5).astype(np.uint8)
    return out


def centre_square(rgb):
    """The centre square on the shorter side, offsets rounded down, as catdog cuts it."""
    h, w, _ = rgb.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return rgb[top:top + side, left:left + side]


def to_input(images, size):
    """[H, W, 3] uint8 images of any size -> float32 [N, 3, size, size] in 0..1: the graph's
    input `pixels` (the normalisation is inside the graph)."""
    batch = np.stack([resize_triangle(centre_square(px), size) for px in images])
    return (batch.astype(F32) / F32(255.0)).transpose(0, 3, 1, 2).copy()


def generated_images(size, count, seed=5):
    """Smooth colour blocks with pixel noise, in sizes around the input size: larger and
    smaller, portrait, landscape and square."""
    rng = np.random.default_rng(seed)
    shapes = [(int(size * a), int(size * b)) for a, b in
              [(1.9, 1.3), (1.0, 2.4), (3.1, 3.1), (0.7, 0.9), (1.0, 1.0), (1.45, 5.2),
               (2.2, 1.0), (0.5, 0.5)]]
    images = []
    for i in range(count):
        h, w = shapes[i % len(shapes)]
        h, w = max(h, 2), max(w, 2)
        coarse = rng.integers(0, 256, size=(5, 5, 3)).astype(np.float64)
        rows, cols = np.arange(h) * 5 // h, np.arange(w) * 5 // w
        img = coarse[rows][:, cols] + rng.normal(0, 14, size=(h, w, 3))
        images.append((f"generated-{i}-{w}x{h}", np.clip(img, 0, 255).astype(np.uint8)))
    return images


def photos(folder, count):
    """(name, path, [H, W, 3] uint8) for `count` photos from both ends of the sorted listing
    (both classes of a Kaggle-style folder), decoded to RGB by Pillow; None without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        print("Pillow is not installed: using generated images instead of photos")
        return None
    names = sorted(n for n in os.listdir(folder)
                   if n.lower().endswith((".jpg", ".jpeg", ".png")))
    picked = names[: count // 2] + names[-(count - count // 2):] if len(names) > count else names
    out = []
    for name in picked:
        path = os.path.join(folder, name)
        with Image.open(path) as im:
            out.append((name, path, np.asarray(im.convert("RGB"), dtype=np.uint8)))
    return out


def check_model_file(path):
    """onnx's checker and a summary of the graph; returns the metadata."""
    import onnx

    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    graph = model.graph
    ops = [n.op_type for n in graph.node]
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    print(f"{path}: {os.path.getsize(path)} bytes, onnx.checker OK (full check), IR version "
          f"{model.ir_version}, opsets {opsets}, producer {model.producer_name} "
          f"{model.producer_version}")
    print(f"  inputs:  {[(v.name, dims(v)) for v in graph.input]}")
    print(f"  outputs: {[(v.name, dims(v)) for v in graph.output]}")
    print(f"  {len(ops)} nodes: {' -> '.join(ops)}")
    print(f"  {len(graph.initializer)} initializers, "
          f"{sum(int(np.prod(t.dims)) for t in graph.initializer)} values")
    return {p.key: p.value for p in model.metadata_props}


def run_onnx(session, x):
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"pixels": x})))


def compare(what, expected, logits, tolerance, gate=True):
    diff = float(np.abs(logits - expected).max())
    same = bool((logits.argmax(1) == expected.argmax(1)).all())
    prob = float(np.abs(softmax(logits.astype(np.float64)) - softmax(expected)).max())
    good = diff <= tolerance and same
    verdict = ("OK" if good else "FAILED") if gate else "information only, not checked"
    print(f"{what}: max |logit difference| {diff:.2e} (tolerance {tolerance:.0e}), max "
          f"probability difference {prob:.2e}, same predicted class for all: {same} -> {verdict}")
    return good or not gate


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True,
                    help="folder with model.onnx that `catdog predict --model` also loads")
    ap.add_argument("--catdog", required=True, help="path to the catdog binary")
    ap.add_argument("--model", help="model folder catdog predicts with (default: --bundle)")
    ap.add_argument("--photos", help="folder of photos to check on (needs Pillow)")
    ap.add_argument("--count", type=int, default=16)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    args = ap.parse_args()

    import onnxruntime as ort

    path = os.path.join(args.bundle, "model.onnx")
    meta = check_model_file(path)
    classes = json.loads(meta["classes"])
    size = int(meta["image_size"])
    print(f"  metadata: classes {classes}, image_size {size}, normalization "
          f"{meta['normalization']}")
    config_path = os.path.join(args.bundle, "config.json")
    ok = True
    if os.path.exists(config_path):
        with open(config_path) as f:
            config = json.load(f)
        if config.get("classes") != classes or config.get("image_size") != size:
            print(f"FAILED: the ONNX metadata ({classes}, {size}) differs from config.json "
                  f"({config.get('classes')}, {config.get('image_size')})")
            ok = False

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    picked = photos(args.photos, args.count) if args.photos else None
    with tempfile.TemporaryDirectory() as tmp:
        if picked:
            source = f"photos from {args.photos}"
            images = [px for _, _, px in picked]
        else:
            source = "generated images"
            images = [px for _, px in generated_images(size, args.count)]
        # The same decoded pixels for both sides: lossless PNG files at full size.
        files = []
        for i, px in enumerate(images):
            files.append(os.path.join(tmp, f"{i:03d}.png"))
            write_png(files[-1], px)
        shapes = sorted({f"{px.shape[1]}x{px.shape[0]}" for px in images})
        print(f"{len(images)} {source}, sizes {', '.join(shapes)} -> {size}x{size}")

        x = to_input(images, size)
        outputs = run_onnx(session, x)
        logits = outputs["logits"]
        expected = catdog_logits(args.catdog, args.model or args.bundle, files)
        ok &= compare(f"onnxruntime vs catdog predict, {len(images)} {source}", expected,
                      logits, args.tolerance)

        single = np.concatenate([run_onnx(session, x[i:i + 1])["logits"]
                                 for i in range(len(x))])
        ok &= compare("onnxruntime one image at a time vs the whole batch", logits, single,
                      args.tolerance)
        if "probabilities" in outputs:
            # A calibrated model's probabilities are softmax(logits / temperature).
            t = float(meta.get("temperature", "1"))
            diff = float(np.abs(outputs["probabilities"]
                                - softmax(logits.astype(np.float64) / t)).max())
            good = diff <= 1e-6
            ok &= good
            print(f"output 'probabilities' vs softmax(logits / {t:g}): max difference "
                  f"{diff:.2e} -> {'OK' if good else 'FAILED'}")

        if picked and any(p.lower().endswith((".jpg", ".jpeg")) for _, p, _ in picked):
            originals = catdog_logits(args.catdog, args.model or args.bundle, [p for _, p, _ in picked])
            compare("catdog on the original JPEG files (its own decoder) vs onnxruntime on "
                    "Pillow's decoding", originals, logits, args.tolerance, gate=False)

    runs, start = 0, time.perf_counter()
    while runs < 5 or time.perf_counter() - start < 1.0:
        session.run(None, {"pixels": x})
        runs += 1
    rate = runs * len(x) / (time.perf_counter() - start)
    print(f"onnxruntime speed: {rate:.0f} images/s (batch of {len(x)}, {args.threads} threads, "
          f"preprocessing excluded)")
    print("check_onnx: all checks passed" if ok else "check_onnx: FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
