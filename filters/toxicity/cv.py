#!/usr/bin/env python3
"""Choose the toxicity model's training options and threshold by cross-validation
inside the training pool (build_train.py's output) only:

    python3 filters/toxicity/cv.py POOL.jsonl WORKDIR CONFIG [CONFIG ...]

CONFIG is `name:option=value,option=value` with `curate train-classifier` options
(`word-ngrams=2,epochs=5`) plus `pos-weight=N` (each offensive example written N
times: a class weight, since fastText has none). Each config is trained 3 times,
each time without one third of the pool (fold = row index mod 3 of the shuffled
pool), and scored on that third through `curate run`. The out-of-fold scores give,
per source, AUROC and F1 at each threshold; the summary line is the threshold with
the best mean F1 over the two labelled sources (COLD train, SWSR train part) among
those that flag at most 1% of the pool's exam questions. COLD dev, ToxiCN and the
SWSR held-aside part are never read.
"""
import json
import os
import subprocess
import sys

import toxdata

FOLDS = 3
THRESHOLDS = [round(0.05 * i, 2) for i in range(2, 20)]
DEFAULTS = {"epochs": "10", "lr": "0.5", "dim": "32", "word-ngrams": "3", "bucket": "200000", "char-split": "true"}


def parse_config(spec):
    """`name:key=value,...` -> (name, train-classifier options, positive weight)."""
    name, _, rest = spec.partition(":")
    opts = dict(DEFAULTS)
    for kv in filter(None, rest.split(",")):
        k, v = kv.split("=")
        opts[k] = v
    weight = int(opts.pop("pos-weight", "1"))
    return name, opts, weight


def run_config(pool, workdir, name, opts, weight):
    """Out-of-fold scores of one config, in pool order."""
    oof = [0.0] * len(pool)
    for k in range(FOLDS):
        train = []
        for i, r in enumerate(pool):
            if i % FOLDS != k:
                train.extend([r] * (weight if r["label"] == "1" else 1))
        path = os.path.join(workdir, f"{name}.fold{k}.jsonl")
        model = os.path.join(workdir, f"{name}.fold{k}.bin")
        toxdata.write_jsonl(path, train)
        args = [toxdata.curate_binary(), "train-classifier", "--input", path, "--output", model]
        args += ["--text-field", "TEXT", "--label-field", "label", "--seed", "1", "--quantize", "true"]
        for key, v in opts.items():
            args += [f"--{key}", v]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        held = [i for i in range(len(pool)) if i % FOLDS == k]
        char_split = opts.get("char-split", "true") == "true"
        for i, s in zip(held, toxdata.score(model, [pool[i]["TEXT"] for i in held], char_split, threads=2)):
            oof[i] = s
        os.remove(path)
    return oof


def summarize(pool, oof, name):
    """Print per-source AUROC and F1 at the chosen threshold; return the summary dict."""
    by = {}
    for r, s in zip(pool, oof):
        by.setdefault(r["source"], ([], []))
        by[r["source"]][0].append(s)
        by[r["source"]][1].append(int(r["label"]))
    best = None
    for th in THRESHOLDS:
        exam_fp = toxdata.f1_at(*by["exam"], th)[3]
        f1s = {src: toxdata.f1_at(*by[src], th)[2] for src in ("cold", "swsr")}
        mean = sum(f1s.values()) / len(f1s)
        if exam_fp <= 0.01 and (best is None or mean > best["mean_f1"]):
            best = {"config": name, "threshold": th, "mean_f1": round(mean, 4), "exam_fp": round(exam_fp, 4)}
            best.update({f"{src}_f1": round(f, 4) for src, f in f1s.items()})
    for src in ("cold", "swsr"):
        best[f"{src}_auroc"] = round(toxdata.auroc(*by[src]), 4)
    print(json.dumps(best), flush=True)
    return best


def main(argv):
    pool_path, workdir, specs = argv[0], argv[1], argv[2:]
    os.makedirs(workdir, exist_ok=True)
    with open(pool_path, encoding="utf-8") as f:
        pool = [json.loads(line) for line in f]
    for spec in specs:
        name, opts, weight = parse_config(spec)
        summarize(pool, run_config(pool, workdir, name, opts, weight), name)


if __name__ == "__main__":
    main(sys.argv[1:])
