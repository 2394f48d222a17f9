#!/usr/bin/env python3
"""Score filters/machine_text/build_eval.py's file through `curate run` (the machine_text
stage with the settings of pipelines/zh_sft.toml) and print AUROC and false-positive rates:

    python3 filters/machine_text/build_eval.py ../shared/data > /tmp/mgt_eval.jsonl
    python3 scripts/machine_text_eval.py /tmp/mgt_eval.jsonl [--model M.bin] [--curate BIN] [--part report]

Python 3 standard library plus the `zstd` command (the output parts are .jsonl.zst).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILTERS = os.path.join(ROOT, "filters", "machine_text")
THRESHOLD = 0.9  # pipelines/zh_sft.toml


def auroc(scored):
    """Mann-Whitney U with average ranks for ties; None with one class."""
    v = sorted(scored)
    rank_sum, i = 0.0, 0
    while i < len(v):
        j = i
        while j < len(v) and v[j][0] == v[i][0]:
            j += 1
        rank_sum += (i + j + 1) / 2 * sum(1 for x in v[i:j] if x[1])
        i = j
    pos = sum(1 for x in v if x[1])
    neg = len(v) - pos
    if not pos or not neg:
        return None
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("eval_file")
    ap.add_argument("--model", default=os.path.join(FILTERS, "mgt_zh_formal.bin"))
    ap.add_argument("--curate", default=os.path.join(ROOT, "target", "release", "curate"))
    ap.add_argument("--part", default=None, help="only ids of this part (tune / report)")
    a = ap.parse_args()
    a.model, a.curate = os.path.abspath(a.model), os.path.abspath(a.curate)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.jsonl")
        with open(a.eval_file, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as out:
            for line in f:
                if a.part is None or json.loads(line)["id"].startswith(a.part + "/"):
                    out.write(line)
        phrases = [os.path.join(FILTERS, f"indicating_{l}.txt") for l in ("zh", "en")]
        pipeline = os.path.join(tmp, "p.toml")
        with open(pipeline, "w") as f:
            f.write(
                f'[input]\npaths = ["{src}"]\n\n[[stage]]\nkind = "machine_text"\nmodel = "{a.model}"\n'
                f'phrases = ["{phrases[0]}", "{phrases[1]}"]\nthreshold = {THRESHOLD}\n'
                f'fields = "response"\naction = "tag"\n\n[output]\ndir = "{tmp}/out"\n'
            )
        subprocess.run([a.curate, "run", pipeline, "--quiet"], check=True)
        kept = os.path.join(tmp, "out", "kept")
        scores = {}
        for name in sorted(os.listdir(kept)):
            data = subprocess.run(["zstd", "-dc", os.path.join(kept, name)], check=True, capture_output=True).stdout
            for line in data.decode().splitlines():
                r = json.loads(line)
                part, name_, label, _ = r["id"].split("/")
                scores.setdefault((part, name_), []).append((r["meta"]["machine_text"]["score"], label == "1"))
    print(f"model {a.model}, threshold {THRESHOLD}")
    print("| part | set | human | machine | AUROC | FPR at 0.9 | recall at 0.9 |")
    print("|---|---|---|---|---|---|---|")
    formal = {}
    for (part, name), s in sorted(scores.items()):
        hum = [x for x, l in s if not l]
        mac = [x for x, l in s if l]
        fpr = sum(x >= THRESHOLD for x in hum) / len(hum) if hum else None
        rec = sum(x >= THRESHOLD for x in mac) / len(mac) if mac else None
        auc = auroc(s)
        print(f"| {part} | {name} | {len(hum)} | {len(mac)} | {'-' if auc is None else f'{auc:.3f}'} | "
              f"{'-' if fpr is None else f'{fpr:.3f}'} | {'-' if rec is None else f'{rec:.3f}'} |")
        if name.startswith("formal_"):
            f = formal.setdefault(part, [0, 0])
            f[0] += sum(x >= THRESHOLD for x in hum)
            f[1] += len(hum)
    for part, (fp, n) in sorted(formal.items()):
        print(f"| {part} | all formal human prose | {n} | 0 | - | {fp / n:.3f} ({fp}/{n}) | - |")


if __name__ == "__main__":
    sys.exit(main())
