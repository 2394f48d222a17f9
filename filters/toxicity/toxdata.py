"""Shared helpers of the toxicity build scripts (Python 3 standard library only).

Loads the labelled sources from the shared data folder, splits SWSR into a training
part and a held-aside part, and scores texts with a model through `curate run`
(the stage as a user runs it, `action = "tag"`, scores read from `meta.toxicity`).

Splits (fixed; see SOURCE.md):
  * COLD `train.csv`: training pool. COLD `dev.csv`: evaluation only.
  * SWSR `SexComment.csv`: grouped by the Weibo post a comment replies to
    (`weibo_id`); posts with crc32(weibo_id) % 5 == 0 are held aside (evaluation
    only), the rest join the training pool. Grouping keeps replies to one post on
    one side.
  * ToxiCN (CC BY-NC-ND 4.0): evaluation only, never trained on or tuned on.
  * C-Eval test + CMMLU dev questions: training pool (safe examples).
    C-Eval val+dev + CMMLU test questions: evaluation only (false positives on
    formal text).
"""
import csv
import glob
import json
import os
import subprocess
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
DEFAULT_DATA = os.environ.get("CURATE_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))


def _csv_rows(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def cold(data, split):
    """COLD `train` or `dev` as (text, label) pairs, label 1 = offensive."""
    return [(r["TEXT"], int(r["label"].strip())) for r in _csv_rows(os.path.join(data, "cold", split + ".csv"))]


def swsr_is_held(weibo_id):
    """Whether an SWSR comment (by the post it replies to) is in the held-aside part."""
    return zlib.crc32(weibo_id.encode("utf-8")) % 5 == 0


def swsr(data, held):
    """SWSR comments of the held-aside part (`held=True`) or the training part, label 1 = sexist."""
    rows = _csv_rows(os.path.join(data, "swsr_sexism_zh", "SexComment.csv"))
    return [(r["comment_text"], int(r["label"])) for r in rows if swsr_is_held(r["weibo_id"]) == held]


def toxicn(data, split="test"):
    """ToxiCN `test` or `train` split as (text, label, expression); evaluation only."""
    with open(os.path.join(data, "toxicn", "split", split + ".json"), encoding="utf-8") as f:
        return [(r["content"], int(r["toxic"]), int(r["expression"])) for r in json.load(f)]


def exam_questions(data, part):
    """Exam questions, all safe: `train` = C-Eval test + CMMLU dev, `eval` = C-Eval val+dev + CMMLU test."""
    globs = {
        "train": (("ceval/test/*.csv", "question"), ("cmmlu/dev/*.csv", "Question")),
        "eval": (("ceval/val/*.csv", "question"), ("ceval/dev/*.csv", "question"), ("cmmlu/test/*.csv", "Question")),
    }[part]
    out = []
    for pattern, name in globs:
        for p in sorted(glob.glob(os.path.join(data, pattern))):
            out.extend(r[name] for r in _csv_rows(p))
    return out


def write_jsonl(path, rows):
    """Write dicts as JSON Lines (UTF-8, not ASCII-escaped)."""
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def curate_binary():
    """The curate binary: $CURATE_BIN, else the release build of this checkout."""
    return os.environ.get("CURATE_BIN", os.path.join(REPO, "target", "release", "curate"))


def score(model, texts, char_split=True, threads=1):
    """P(offensive) of each text by `model`, through `curate run` with the toxicity stage tagging."""
    with tempfile.TemporaryDirectory() as tmp:
        write_jsonl(os.path.join(tmp, "in.jsonl"), ({"id": str(i), "text": t} for i, t in enumerate(texts)))
        with open(os.path.join(tmp, "p.toml"), "w", encoding="utf-8") as f:
            f.write(
                '[input]\npaths = ["in.jsonl"]\nformat = "jsonl"\nschema = "text"\n'
                '[[stage]]\nkind = "toxicity"\nmodel = %s\nmin_lexicon_hits = 0\naction = "tag"\nchar_split = %s\n'
                '[output]\ndir = "out"\ncompression = "none"\n' % (json.dumps(os.path.abspath(model)), str(char_split).lower())
            )
        subprocess.run(
            [curate_binary(), "run", os.path.join(tmp, "p.toml"), "--quiet", "--threads", str(threads)],
            check=True,
        )
        scores = [None] * len(texts)
        for p in glob.glob(os.path.join(tmp, "out", "*", "*.jsonl")):
            with open(p, encoding="utf-8") as f:
                for line in f:
                    r = json.loads(line)
                    scores[int(r["id"])] = r.get("meta", {}).get("toxicity", {}).get("score", 0.0)
        # Records the stage never scored (empty text) count as safe.
        return [0.0 if s is None else s for s in scores]


def f1_at(scores, labels, th):
    """(precision, recall, F1, false-positive rate) of `score >= th` against 0/1 labels."""
    tp = sum(1 for s, y in zip(scores, labels) if s >= th and y)
    fp = sum(1 for s, y in zip(scores, labels) if s >= th and not y)
    pos = sum(labels)
    neg = len(labels) - pos
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / pos if pos else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f, (fp / neg if neg else 0.0)


def auroc(scores, labels):
    """Area under the ROC curve (ties count half)."""
    pairs = sorted(zip(scores, labels))
    pos = sum(labels)
    neg = len(labels) - pos
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + 1 + j) / 2
        rank_sum += avg_rank * sum(y for _, y in pairs[i:j])
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg) if pos and neg else 0.0
