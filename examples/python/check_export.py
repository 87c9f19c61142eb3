#!/usr/bin/env python3
"""Load a catdog safetensors export outside catdog and check it against `catdog predict`.

    python3 examples/python/check_export.py --bundle EXPORT_DIR --catdog target/release/catdog \
        [--photos FOLDER] [--count 16] [--tolerance 1e-4]

EXPORT_DIR is what `catdog export --format safetensors` wrote: model.safetensors and
config.json. The script rebuilds the model's forward pass in numpy (MLP and CNN; also in torch
when torch is installed), preprocesses images with the mean/std stored in config.json, and
compares its logits with `catdog predict --json` on the same image files. Then the other
direction: new weights made here in PyTorch's layout (with PyTorch's `num_batches_tracked`
counters) are saved with safetensors.numpy, brought in with `catdog import`, and catdog's logits
must match numpy's for those weights.

Images: with --photos and Pillow installed, real photos are cut to their centre square and
resized by Pillow; otherwise smooth random images are drawn. Either way they are written as PNG
files of exactly the model's input size, so catdog decodes the same pixels (losslessly) and does
no resizing of its own: the comparison is of the weights and the forward pass, not of two
resampling filters.

Needs numpy and safetensors (pip install numpy safetensors). Exit status 0 when every logit
agrees within the tolerance, 1 otherwise.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

BATCH_NORM_EPS = 1e-5


def write_png(path, rgb):
    """Writes an [H, W, 3] uint8 array as an 8-bit RGB PNG (no Pillow needed)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6))
    png += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def photo_pixels(folder, size, count):
    """Centre-square crops of real photos resized by Pillow, or None without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        print("Pillow is not installed: using generated images instead of photos")
        return None
    names = sorted(
        n for n in os.listdir(folder) if n.lower().endswith((".jpg", ".jpeg", ".png"))
    )
    # Both classes of a Kaggle-style folder: take from the start and the end of the listing.
    picked = names[: count // 2] + names[-(count - count // 2):]
    images = []
    for name in picked:
        with Image.open(os.path.join(folder, name)) as im:
            im = im.convert("RGB")
            w, h = im.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side)).resize(
                (size, size), Image.BILINEAR
            )
            images.append((name, np.asarray(im, dtype=np.uint8)))
    return images


def generated_pixels(size, count, seed=7):
    """Random colour blocks (a 4x4 grid) with pixel noise on top."""
    rng = np.random.default_rng(seed)
    cell = np.arange(size) * 4 // size
    images = []
    for i in range(count):
        coarse = rng.integers(0, 256, size=(4, 4, 3)).astype(np.float64)
        img = coarse[cell][:, cell] + rng.normal(0, 12, size=(size, size, 3))
        images.append((f"generated-{i}", np.clip(img, 0, 255).astype(np.uint8)))
    return images


def preprocess(pixels, normalization):
    """[N, H, W, 3] uint8 -> [N, 3, H, W] float64, exactly as catdog feeds its model."""
    mean = np.asarray(normalization["mean"], dtype=np.float64)
    std = np.asarray(normalization["std"], dtype=np.float64)
    x = (pixels.astype(np.float64) / 255.0 - mean) / std
    return x.transpose(0, 3, 1, 2)


def relu(x):
    return np.maximum(x, 0.0)


def linear(x, weights, name):
    # PyTorch layout: weight [out, in], bias [out].
    return x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]


def conv3x3(x, w):
    """Conv2d, kernel 3x3, stride 1, padding 1, no bias. x [N, C, H, W], w [O, C, 3, 3]."""
    n, c, h, wd = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd))
    for kh in range(3):
        for kw in range(3):
            out += np.einsum("nchw,oc->nohw", padded[:, :, kh:kh + h, kw:kw + wd], w[:, :, kh, kw])
    return out


def batch_norm(x, weights, name):
    shape = (1, -1, 1, 1)
    mean = weights[f"{name}.running_mean"].reshape(shape)
    var = weights[f"{name}.running_var"].reshape(shape)
    gamma = weights[f"{name}.weight"].reshape(shape)
    beta = weights[f"{name}.bias"].reshape(shape)
    return (x - mean) / np.sqrt(var + BATCH_NORM_EPS) * gamma + beta


def max_pool2(x):
    n, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    x = x[:, :, : 2 * h2, : 2 * w2].reshape(n, c, h2, 2, w2, 2)
    return x.max(axis=(3, 5))


def forward_numpy(model, weights, x):
    """Logits [N, classes] of the catdog model described by `model` (config.json's "model")."""
    weights = {k: v.astype(np.float64) for k, v in weights.items()}
    if model["arch"] == "mlp":
        h = x.reshape(x.shape[0], -1)  # channel-major, as torch.flatten
        for i in range(len(model["hidden"])):
            h = relu(linear(h, weights, f"hidden.{i}"))
        return linear(h, weights, "output")
    if model["arch"] == "cnn":
        h = x
        for b in range(len(model["channels"])):
            for j in range(max(model["convs_per_block"], 1)):
                h = conv3x3(h, weights[f"blocks.{b}.convs.{j}.weight"])
                h = relu(batch_norm(h, weights, f"blocks.{b}.norms.{j}"))
            h = max_pool2(h)
        h = h.mean(axis=(2, 3))
        if model.get("hidden"):
            h = relu(linear(h, weights, "hidden"))
        return linear(h, weights, "output")
    if model["arch"] == "resnet":
        def conv_bn_relu(h, name):
            return relu(batch_norm(conv3x3(h, weights[f"{name}.conv.weight"]), weights,
                                   f"{name}.norm"))
        h = conv_bn_relu(x, "stem")
        for i, blocks in enumerate(model["residual"]):
            h = conv3x3(h, weights[f"stages.{i}.down.convs.0.weight"])
            h = max_pool2(relu(batch_norm(h, weights, f"stages.{i}.down.norms.0")))
            for r in range(blocks):
                name = f"stages.{i}.residual.{r}"
                h = h + conv_bn_relu(conv_bn_relu(h, f"{name}.first"), f"{name}.second")
        return linear(h.mean(axis=(2, 3)), weights, "output")
    raise SystemExit(f"unknown architecture {model['arch']!r}")


def forward_torch(model, weights, x):
    """The same forward pass with torch.nn modules loaded through load_state_dict."""
    import torch
    from torch import nn

    if model["arch"] == "mlp":
        class Mlp(nn.Module):
            def __init__(self):
                super().__init__()
                widths = [x.shape[1] * x.shape[2] * x.shape[3]] + model["hidden"]
                self.hidden = nn.ModuleList(
                    nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
                self.output = nn.Linear(widths[-1], model["num_classes"])

            def forward(self, t):
                t = torch.flatten(t, 1)
                for layer in self.hidden:
                    t = torch.relu(layer(t))
                return self.output(t)
        net = Mlp()
    else:
        class Block(nn.Module):
            def __init__(self, c_in, c_out, n):
                super().__init__()
                self.convs = nn.ModuleList(
                    nn.Conv2d(c_in if j == 0 else c_out, c_out, 3, padding=1, bias=False)
                    for j in range(n))
                self.norms = nn.ModuleList(nn.BatchNorm2d(c_out, eps=BATCH_NORM_EPS)
                                           for _ in range(n))

            def forward(self, t):
                for conv, norm in zip(self.convs, self.norms):
                    t = torch.relu(norm(conv(t)))
                return nn.functional.max_pool2d(t, 2, 2)

        class Cnn(nn.Module):
            def __init__(self):
                super().__init__()
                chans = [3] + model["channels"]
                n = max(model["convs_per_block"], 1)
                self.blocks = nn.ModuleList(Block(a, b, n) for a, b in zip(chans, chans[1:]))
                width = chans[-1]
                self.hidden = None
                if model.get("hidden"):
                    self.hidden = nn.Linear(width, model["hidden"])
                    width = model["hidden"]
                self.output = nn.Linear(width, model["num_classes"])

            def forward(self, t):
                for block in self.blocks:
                    t = block(t)
                t = t.mean(dim=(2, 3))
                if self.hidden is not None:
                    t = torch.relu(self.hidden(t))
                return self.output(t)
        net = Cnn() if model["arch"] == "cnn" else resnet_torch(model)
    state = {k: torch.from_numpy(v.copy()) for k, v in weights.items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"torch: missing {missing}, unexpected {unexpected}")
    net.eval()
    with torch.no_grad():
        return net(torch.from_numpy(x.astype(np.float32))).double().numpy()


def resnet_torch(model):
    """catdog's ResNet as torch.nn modules with its parameter names."""
    from torch import nn
    import torch

    class ConvBnRelu(nn.Module):
        def __init__(self, c_in, c_out):
            super().__init__()
            self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
            self.norm = nn.BatchNorm2d(c_out, eps=BATCH_NORM_EPS)

        def forward(self, t):
            return torch.relu(self.norm(self.conv(t)))

    class Down(nn.Module):
        def __init__(self, c_in, c_out):
            super().__init__()
            self.convs = nn.ModuleList([nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)])
            self.norms = nn.ModuleList([nn.BatchNorm2d(c_out, eps=BATCH_NORM_EPS)])

        def forward(self, t):
            return nn.functional.max_pool2d(torch.relu(self.norms[0](self.convs[0](t))), 2, 2)

    class Residual(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.first, self.second = ConvBnRelu(c, c), ConvBnRelu(c, c)

        def forward(self, t):
            return t + self.second(self.first(t))

    class Stage(nn.Module):
        def __init__(self, c_in, c_out, blocks):
            super().__init__()
            self.down = Down(c_in, c_out)
            self.residual = nn.ModuleList(Residual(c_out) for _ in range(blocks))

        def forward(self, t):
            t = self.down(t)
            for block in self.residual:
                t = block(t)
            return t

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            chans = [model["stem"]] + model["channels"]
            self.stem = ConvBnRelu(3, model["stem"])
            self.stages = nn.ModuleList(Stage(a, b, n) for a, b, n in
                                        zip(chans, chans[1:], model["residual"]))
            self.output = nn.Linear(chans[-1], model["num_classes"])

        def forward(self, t):
            t = self.stem(t)
            for stage in self.stages:
                t = stage(t)
            return self.output(t.mean(dim=(2, 3)))

    return ResNet()


def catdog_logits(catdog, bundle, files):
    out = subprocess.run(
        [catdog, "predict", "--model", bundle, "--json", "--no-tta", *files],
        check=True, capture_output=True, text=True,
    ).stdout
    by_path = {os.path.abspath(p["path"]): p for p in json.loads(out)}
    rows = []
    for f in files:
        p = by_path[os.path.abspath(f)]
        if "error" in p:
            raise SystemExit(f"catdog could not read {f}: {p['error']}")
        rows.append(p["logits"])
    return np.asarray(rows, dtype=np.float64)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, help="folder written by catdog export --format safetensors")
    ap.add_argument("--catdog", required=True, help="path to the catdog binary")
    ap.add_argument("--photos", help="folder of photos to check on (needs Pillow)")
    ap.add_argument("--count", type=int, default=16)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    # Imported here, so that check_onnx.py can reuse this file's helpers without safetensors.
    from safetensors.numpy import load_file

    with open(os.path.join(args.bundle, "config.json")) as f:
        config = json.load(f)
    card = config.get("export") or {}
    weights_file = os.path.join(args.bundle, card.get("weights_file", "model.safetensors"))
    weights = load_file(weights_file)
    model, size = config["model"], config["image_size"]
    print(f"{weights_file}: {len(weights)} tensors, {model['arch']} for "
          f"{size}x{size} images, classes {config['classes']}")
    for name in sorted(weights):
        print(f"  {name:32s} {str(weights[name].dtype):8s} {list(weights[name].shape)}")

    images = photo_pixels(args.photos, size, args.count) if args.photos else None
    source = f"photos from {args.photos}" if images else "generated images"
    images = images or generated_pixels(size, args.count)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, (_, px) in enumerate(images):
            path = os.path.join(tmp, f"{i:03d}.png")
            write_png(path, px)
            files.append(path)
        expected = catdog_logits(args.catdog, args.bundle, files)
        x = preprocess(np.stack([px for _, px in images]), config["normalization"])
        ok = check("export", expected, exported_logits(model, weights, x), source, args.tolerance)
        ok &= check_import(args, config, weights, x, files, tmp, source)
    sys.exit(0 if ok else 1)


def exported_logits(model, weights, x):
    """Logits of the client forward passes: numpy always, torch when installed."""
    results = {"numpy": forward_numpy(model, weights, x)}
    try:
        import torch  # noqa: F401
        results["torch"] = forward_torch(model, weights, x)
    except ImportError:
        print("torch is not installed: checking with numpy only")
    return results


def check(what, expected, results, source, tolerance):
    ok = True
    for client, logits in results.items():
        diff = np.abs(logits - expected).max()
        same_class = (logits.argmax(1) == expected.argmax(1)).all()
        prob_diff = np.abs(softmax(logits) - softmax(expected)).max()
        good = diff <= tolerance and same_class
        ok &= bool(good)
        print(f"{what}, {client}: {len(expected)} {source}, max |logit difference| {diff:.2e} "
              f"(tolerance {tolerance:.0e}), max probability difference {prob_diff:.2e}, "
              f"same predicted class for all: {bool(same_class)} -> {'OK' if good else 'FAILED'}")
    return ok


def check_import(args, config, weights, x, files, tmp, source):
    """The other direction: weights made outside catdog (new random values in PyTorch's layout,
    with PyTorch's int64 `num_batches_tracked` counters), saved with safetensors.numpy,
    imported by `catdog import`, must predict what numpy computes from them."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(11)
    made = {}
    for name, w in weights.items():
        if name.endswith("running_var"):
            made[name] = rng.uniform(0.5, 2.0, w.shape).astype(np.float32)
        else:
            made[name] = (rng.standard_normal(w.shape) / np.sqrt(max(w[0].size, 1))).astype(np.float32)
        if name.endswith("running_mean"):
            made[name.replace("running_mean", "num_batches_tracked")] = np.array(7, dtype=np.int64)
    foreign = os.path.join(tmp, "foreign.safetensors")
    save_file(made, foreign)
    imported = os.path.join(tmp, "imported")
    subprocess.run(
        [args.catdog, "import", "--weights", foreign, "--config",
         os.path.join(args.bundle, "config.json"), "--out", imported],
        check=True, capture_output=True, text=True,
    )
    expected = catdog_logits(args.catdog, imported, files)
    made = {k: v for k, v in made.items() if not k.endswith("num_batches_tracked")}
    return check("import", expected, {"numpy": forward_numpy(config["model"], made, x)},
                 source, args.tolerance)


if __name__ == "__main__":
    main()
