#!/usr/bin/env python3
"""Pillow reference for catdog's decode + resize benchmark.

Decodes JPEGs, converts to RGB, cuts the centre square and resizes it to 64x64 with a bilinear
(triangle) filter, exactly the work of `catdog_data::decode_image`, in 1 and in 2 processes.

    pip install pillow
    python3 benches/reference/pillow_decode.py [DATA_DIR] [N]
"""
import os
import sys
import time
from multiprocessing import Pool

from PIL import Image

SIZE = 64


def decode(path):
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
        return im.resize((SIZE, SIZE), Image.BILINEAR, box=box).tobytes()


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CATDOG_DATA", "data/dogs-vs-cats")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    if os.path.isdir(os.path.join(root, "train")):
        root = os.path.join(root, "train")
    files = sorted(f for f in os.listdir(root) if f.lower().endswith((".jpg", ".jpeg")))
    step = max(1, len(files) // n)
    paths = [os.path.join(root, f) for f in files[::step][:n]]
    for p in paths:  # warm the page cache, as the Rust bench does after its first pass
        with open(p, "rb") as f:
            f.read()
    t = time.perf_counter()
    for p in paths:
        decode(p)
    one = len(paths) / (time.perf_counter() - t)
    with Pool(2) as pool:
        pool.map(decode, paths[:50])
        t = time.perf_counter()
        pool.map(decode, paths, chunksize=32)
        two = len(paths) / (time.perf_counter() - t)
    print(f"pillow {Image.__version__}: decode+resize to {SIZE}x{SIZE}, {len(paths)} images: "
          f"1 process {one:.0f} images/s, 2 processes {two:.0f} images/s")


if __name__ == "__main__":
    main()
