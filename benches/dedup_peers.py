"""Peers of curate's minhash_dedup, on the same data: datasketch and datatrove.

Run through benches/dedup_peers.sh (it makes the venv and the labelled set).
Speed: alpaca_zh_hikariming (translated + supplementary, instruction/input/output
joined by newlines), character 5-grams of the raw text, 128 permutations,
threshold 0.7, one core; times are CPU seconds (process_time, and rusage of
the curate child), so a loaded machine does not distort them much. Quality: pairwise P/R/F1 on curate's labelled set
(tests/minhash_quality.rs, CURATE_DEDUP_DUMP), same formula as the Rust test.
"""

import glob
import resource
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict

NUM_PERM = 128
THRESHOLD = 0.7
N = 5


def alpaca_zh(root):
    docs = []
    for sub in ("translated", "supplementary"):
        for f in sorted(glob.glob(os.path.join(root, "alpaca_zh_hikariming", sub, "*.json"))):
            for r in json.load(open(f, encoding="utf-8")):
                docs.append("\n".join(r.get(k, "") for k in ("instruction", "input", "output") if k in r))
    return docs


def shingles(text):
    if len(text) < N:
        return {text.encode("utf-8")}
    return {text[i : i + N].encode("utf-8") for i in range(len(text) - N + 1)}


class UnionFind:
    def __init__(self, n):
        self.p = list(range(n))

    def find(self, x):
        while self.p[x] != x:
            self.p[x] = self.p[self.p[x]]
            x = self.p[x]
        return x

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a != b:
            self.p[max(a, b)] = min(a, b)


def datasketch_signatures(docs):
    from datasketch import MinHash

    return MinHash.bulk([shingles(d) for d in docs], num_perm=NUM_PERM)


def datasketch_clusters(docs):
    """Keep-first dedup as the datasketch docs show it: query the LSH, then insert."""
    from datasketch import MinHashLSH

    sigs = datasketch_signatures(docs)
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    uf = UnionFind(len(docs))
    for i, m in enumerate(sigs):
        for c in lsh.query(m):
            uf.union(i, c)
        lsh.insert(i, m)
    return [uf.find(i) for i in range(len(docs))]


def datatrove_clusters(docs, workdir):
    """datatrove's four MinHash steps (signatures, buckets, clusters, filter) on one task."""
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.utils.hashing import HashConfig

    # 14 x 9 = 126 of 128 hashes: datasketch's banding for 0.7 with 128 permutations.
    cfg = MinhashConfig(hash_config=HashConfig(precision=64), num_buckets=14, hashes_per_bucket=9, n_grams=N)
    sig_dir, bucket_dir, cluster_dir = (os.path.join(workdir, x) for x in ("sigs", "buckets", "clusters"))

    def documents():
        for i, d in enumerate(docs):
            yield Document(text=d, id=str(i), metadata={})

    # A character tokenizer: one token per character, so n_grams=5 are character
    # 5-grams (its own "zh" tokenizer needs spaCy and segments words).
    import datatrove.pipeline.dedup.minhash as dm

    dm.load_word_tokenizer = lambda language: CharTokenizer()
    sig = MinhashDedupSignature(output_folder=sig_dir, config=cfg, language="zh")
    drain(sig.run(documents(), 0, 1))
    buckets = MinhashDedupBuckets(input_folder=sig_dir, output_folder=bucket_dir, config=cfg)
    for b in range(cfg.num_buckets):  # one task per bucket, one after the other (one core)
        drain(buckets.run(None, b, cfg.num_buckets))
    drain(MinhashDedupCluster(input_folder=bucket_dir, output_folder=cluster_dir, config=cfg).run(None, 0, 1))
    kept = set()
    flt = MinhashDedupFilter(input_folder=cluster_dir)
    for doc in flt.run(documents(), 0, 1):
        kept.add(int(doc.id))
    return kept


def drain(result):
    """Steps are generators or plain calls, depending on the step."""
    if result is not None:
        for _ in result:
            pass


class CharTokenizer:
    def word_tokenize(self, text):
        return [c for c in text if not c.isspace()]

    def span_tokenize(self, text):
        return [(i, i + 1) for i, c in enumerate(text) if not c.isspace()]


def zh_sft_table():
    """The minhash_dedup table of pipelines/zh_sft.toml (the default pipeline's settings)."""
    import re

    text = open(os.path.join(os.path.dirname(__file__), "..", "pipelines", "zh_sft.toml"), encoding="utf-8").read()
    for table in re.split(r"(?m)^(?=\[)", text):
        if table.startswith("[[stage]]") and 'kind = "minhash_dedup"' in table:
            return table
    raise SystemExit("pipelines/zh_sft.toml has no minhash_dedup table")


def curate_run(curate, texts, workdir, table=None):
    """`curate run` with only minhash_dedup (`table`, else defaults with threshold 0.7),
    one thread. Returns (seconds, predicted cluster per text, set of removed indexes)."""
    import subprocess

    inp = os.path.join(workdir, "in.jsonl")
    with open(inp, "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n")
    out = os.path.join(workdir, "out")
    toml = os.path.join(workdir, "p.toml")
    with open(toml, "w") as f:
        stage = table or f'[[stage]]\nkind = "minhash_dedup"\nthreshold = {THRESHOLD}\n'
        f.write(f'[input]\npaths = ["{inp}"]\n{stage}\n[output]\ndir = "{out}"\ncompression = "none"\n')
    def child_cpu():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    t = child_cpu()
    subprocess.run([curate, "run", toml, "--threads", "1", "--quiet", "--overwrite"], check=True)
    s = child_cpu() - t
    pred = list(range(len(texts)))
    for line in open(os.path.join(out, "clusters.jsonl"), encoding="utf-8"):
        c = json.loads(line)
        for m in c["members"]:
            pred[int(m["id"])] = -1 - c["cluster"]
    removed = set()
    for fn in glob.glob(os.path.join(out, "rejected", "*.jsonl")):
        for line in open(fn, encoding="utf-8"):
            removed.add(int(json.loads(line)["id"]))
    return s, pred, removed


def removed_scores(groups, removed):
    """Precision: removed records that are labelled duplicates (not the first of their
    group); recall: labelled duplicates removed. What a keep/remove filter can be scored on."""
    first = {}
    for i, g in enumerate(groups):
        first.setdefault(g, i)
    dup = {i for i in range(len(groups)) if first[groups[i]] != i}
    tp = len(removed & dup)
    p = tp / max(len(removed), 1)
    r = tp / max(len(dup), 1)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def pairwise(groups, pred):
    def pairs(n):
        return n * (n - 1) // 2

    by_true, by_pred = defaultdict(list), defaultdict(list)
    for i, (g, p) in enumerate(zip(groups, pred)):
        by_true[g].append(i)
        by_pred[p].append(i)
    tp_pairs = sum(pairs(len(v)) for v in by_true.values())
    pp_pairs = sum(pairs(len(v)) for v in by_pred.values())
    both = 0
    for v in by_pred.values():
        c = defaultdict(int)
        for i in v:
            c[groups[i]] += 1
        both += sum(pairs(n) for n in c.values())
    p = both / max(pp_pairs, 1)
    r = both / max(tp_pairs, 1)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def main():
    data, labelled, curate = sys.argv[1], sys.argv[2], sys.argv[3]
    docs = alpaca_zh(data)
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    print(f"alpaca_zh_hikariming: {len(docs)} records, {mb:.1f} MB; one core")
    print("| tool | step | CPU seconds | MB/s per core |")
    print("|---|---|---|---|")
    t = time.process_time()
    datasketch_signatures(docs)
    s = time.process_time() - t
    print(f"| datasketch | signatures (MinHash.bulk) | {s:.1f} | {mb / s:.2f} |")
    t = time.process_time()
    datasketch_clusters(docs)
    s = time.process_time() - t
    print(f"| datasketch | end to end (signatures + MinHashLSH query/insert) | {s:.1f} | {mb / s:.2f} |")
    for label, table in [("`jaccard`, threshold 0.7", None), ("`pipelines/zh_sft.toml`'s table (`verify = \"segments\"`)", zh_sft_table())]:
        work = tempfile.mkdtemp()
        try:
            s, _, removed = curate_run(curate, docs, work, table)
            print(f"| curate | end to end (`curate run`, minhash_dedup only, --threads 1, JSONL in/out), {label}: {len(removed)} removed | {s:.2f} | {mb / s:.2f} |")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    datatrove_ok = True
    work = tempfile.mkdtemp()
    try:
        t = time.process_time()
        kept = datatrove_clusters(docs, work)
        s = time.process_time() - t
        print(f"| datatrove | end to end (4 steps, character tokens): {len(docs) - len(kept)} removed | {s:.2f} | {mb / s:.2f} |")
    except Exception as e:  # report, do not hide
        datatrove_ok = False
        print(f"| datatrove | failed: {type(e).__name__}: {e} | | |")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    items = [json.loads(l) for l in open(labelled, encoding="utf-8")]
    print("\nLabelled set (tests/minhash_quality.rs): pairwise P / R / F1 over clusters, and over removed records:")
    print("| tool | set | P | R | F1 |")
    print("|---|---|---|---|---|")
    for name in ("zh", "en"):
        sub = [it for it in items if it["set"] == name]
        texts = [it["text"] for it in sub]
        groups = [it["group"] for it in sub]
        work = tempfile.mkdtemp()
        try:
            _, pred, removed = curate_run(curate, texts, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        p, r, f = pairwise(groups, pred)
        print(f"| curate (pairwise) | {name} | {p:.3f} | {r:.3f} | {f:.3f} |")
        p, r, f = removed_scores(groups, removed)
        print(f"| curate (removed records) | {name} | {p:.3f} | {r:.3f} | {f:.3f} |")
        ds = datasketch_clusters(texts)
        p, r, f = pairwise(groups, ds)
        print(f"| datasketch (pairwise) | {name} | {p:.3f} | {r:.3f} | {f:.3f} |")
        rep = {}
        removed = set()
        for i, c in enumerate(ds):
            if c in rep:
                removed.add(i)
            rep.setdefault(c, i)
        p, r, f = removed_scores(groups, removed)
        print(f"| datasketch (removed records) | {name} | {p:.3f} | {r:.3f} | {f:.3f} |")
        if datatrove_ok:
            work = tempfile.mkdtemp()
            try:
                kept = datatrove_clusters(texts, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            removed = {i for i in range(len(texts)) if i not in kept}
            p, r, f = removed_scores(groups, removed)
            print(f"| datatrove (removed records) | {name} | {p:.3f} | {r:.3f} | {f:.3f} |")


if __name__ == "__main__":
    main()
