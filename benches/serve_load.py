#!/usr/bin/env python3
"""Load on a running `catdog serve`: N clients, each sending one JPEG per request for a fixed
time (keep-alive connections), plus an optional stream of bad requests. Prints throughput,
p50/p99 latency, status counts and the server's batch sizes from /metrics.

    python3 benches/serve_load.py URL PHOTO_DIR --clients 32 --seconds 10 [--bad-per-second 20]
"""
import argparse
import http.client
import os
import random
import re
import statistics
import threading
import time
import urllib.parse


def client(url, path, photos, stop, out, bad=False):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    rng = random.Random(os.getpid() ^ threading.get_ident())
    while not stop.is_set():
        body = rng.choice(photos)
        if bad:
            body = rng.choice([b"not an image", body[: len(body) // 3], b"\x89PNG\r\n\x1a\n" + b"\0" * 64])
        t = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": "image/jpeg"})
            r = conn.getresponse()
            r.read()
            status = r.status
        except Exception:
            status = 0
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        out.append((status, time.perf_counter() - t, bad))
        if bad:
            time.sleep(0.05)


def batch_sizes(url):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    total = float(re.search(r"catdog_batch_images_sum (\S+)", text).group(1))
    count = float(re.search(r"catdog_batch_images_count (\S+)", text).group(1))
    return total, count


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("photos")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--bad-clients", type=int, default=0)
    p.add_argument("--path", default="/predictions", help="e.g. /predictions?tta=0")
    a = p.parse_args()
    names = sorted(os.listdir(a.photos))[:200]
    photos = [open(os.path.join(a.photos, n), "rb").read() for n in names]
    before = batch_sizes(a.url)
    stop, out = threading.Event(), []
    threads = [threading.Thread(target=client, args=(a.url, a.path, photos, stop, out)) for _ in range(a.clients)]
    threads += [threading.Thread(target=client, args=(a.url, a.path, photos, stop, out, True)) for _ in range(a.bad_clients)]
    for t in threads:
        t.start()
    time.sleep(a.seconds)
    stop.set()
    for t in threads:
        t.join()
    after = batch_sizes(a.url)
    good = [(s, dt) for s, dt, bad in out if not bad]
    ok = sorted(dt for s, dt in good if s == 200)
    statuses = {}
    for s, _ in good:
        statuses[s] = statuses.get(s, 0) + 1
    bad_statuses = {}
    for s, _, bad in out:
        if bad:
            bad_statuses[s] = bad_statuses.get(s, 0) + 1
    images = after[0] - before[0]
    batches = max(after[1] - before[1], 1)
    p50 = 1000 * statistics.median(ok) if ok else float("nan")
    p99 = 1000 * ok[min(len(ok) - 1, int(0.99 * len(ok)))] if ok else float("nan")
    print(f"clients {a.clients:4d}: {len(ok) / a.seconds:7.1f} photos/s, p50 {p50:6.1f} ms, p99 {p99:6.1f} ms, "
          f"mean batch {images / batches:5.1f}, statuses {statuses}" + (f", bad requests {bad_statuses}" if a.bad_clients else ""))


if __name__ == "__main__":
    main()
