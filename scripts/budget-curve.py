#!/usr/bin/env python3
"""Accuracy per budget: reads `catdog train` run folders, prints a markdown table (one row per
run, then the mean and standard deviation over the seeds of each budget and recipe) and draws
held-out accuracy against the run's wall time, plain and with flip TTA.

    python3 scripts/budget-curve.py --plot docs/budget-curve.png RUN_DIR...

Each run folder must hold the `summary.json` and `config.json` of a run with a held-out folder
(`--test`, or the default data). Needs matplotlib for --plot.
"""
import argparse
import json
import os
import statistics
from collections import defaultdict


def describe(run):
    with open(os.path.join(run, "summary.json")) as f:
        s = json.load(f)
    with open(os.path.join(run, "config.json")) as f:
        c = json.load(f)
    t = c["train"]
    if not s.get("test") or not s.get("test_flip_tta"):
        raise SystemExit(f"{run}: no held-out evaluation in summary.json")
    arch = t["model"]["arch"]
    size = t["image_size"]
    prog = t.get("progressive")
    return {
        "run": run,
        "budget": t.get("budget") or "-",
        "seed": t["seed"],
        "model": f"{arch} {size}x{size}" + (f" (from {prog['start_size']})" if prog else "")
        + (" bf16" if t.get("precision") == "bf16" else ""),
        "epochs": s["epochs_run"],
        "minutes": s["wall_seconds"] / 60,
        "validation": 100 * s["validation"]["accuracy"],
        "plain": 100 * s["test"]["accuracy"],
        "flip": 100 * s["test_flip_tta"]["accuracy"],
        "ece": 100 * s["test"]["calibration"]["ece"],
        "ece_flip": 100 * s["test_flip_tta"]["calibration"]["ece"],
        "temperature": s["test"]["temperature"],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--plot", help="PNG to draw")
    a = ap.parse_args()
    rows = sorted((describe(r) for r in a.runs), key=lambda r: (r["minutes"], r["seed"]))
    print("| budget | recipe | seed | epochs | training + evaluation | validation | held-out | "
          "+ flip TTA | calibration error, plain / flip (T) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['budget']} | {r['model']} | {r['seed']} | {r['epochs']} | "
              f"{r['minutes']:.1f} min | {r['validation']:.2f}% | **{r['plain']:.2f}%** | "
              f"{r['flip']:.2f}% | {r['ece']:.2f}% / {r['ece_flip']:.2f}% ({r['temperature']:.3f}) |")
    groups = defaultdict(list)
    for r in rows:
        groups[(r["budget"], r["model"])].append(r)
    if any(len(g) > 1 for g in groups.values()):
        print("\n| budget | recipe | seeds | epochs | validation | held-out, one pass | flip TTA | "
              "calibration error, flip |")
        print("|---|---|---|---|---|---|---|---|")

        def spread(g, key):
            values = [r[key] for r in g]
            if len(values) == 1:
                return f"{values[0]:.2f}%"
            return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}%"

        for (budget, model), g in groups.items():
            g = sorted(g, key=lambda r: r["seed"])
            epochs = "-".join(str(e) for e in sorted({min(r["epochs"] for r in g), max(r["epochs"] for r in g)}))
            print(f"| {budget} | {model} | {', '.join(str(r['seed']) for r in g)} | {epochs} | "
                  f"{spread(g, 'validation')} | {spread(g, 'plain')} | **{spread(g, 'flip')}** | "
                  f"{spread(g, 'ece_flip')} |")
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker

        by_budget = groups
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
        for key, label, marker in (("flip", "flip TTA (default)", "o"), ("plain", "one forward pass", "s")):
            xs = [sum(r["minutes"] for r in g) / len(g) for g in by_budget.values()]
            ys = [sum(r[key] for r in g) / len(g) for g in by_budget.values()]
            order = sorted(range(len(xs)), key=xs.__getitem__)
            ax.plot([xs[i] for i in order], [ys[i] for i in order], marker=marker, label=label)
            for g in by_budget.values():
                ax.scatter([r["minutes"] for r in g], [r[key] for r in g], s=8, color="grey")
        for g in by_budget.values():
            r = g[0]
            ax.annotate(r["model"].split(" (")[0], (r["minutes"], r["plain"]),
                        textcoords="offset points", xytext=(4, -12), fontsize=7)
        ax.set_xscale("log")
        ticks = sorted({round(sum(r["minutes"] for r in g) / len(g)) for g in by_budget.values()})
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(ticks, [str(t) for t in ticks])
        lo = min(r["plain"] for r in rows)
        ax.set_ylim(lo - 1.0, max(r["flip"] for r in rows) + 0.5)
        ax.set_xlabel("wall time of catdog train --budget B, minutes (2-core CPU)")
        ax.set_ylabel("held-out accuracy (%), 2,000 photos")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(a.plot)
        print(f"wrote {a.plot}")


if __name__ == "__main__":
    main()
