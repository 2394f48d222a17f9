"""Shared helpers of the quality-model scripts (Python 3 standard library only).

The split is by source (whole data sets are left out), fixed before any model was
trained (see SOURCE.md):

  * train/tune sources: web pages of magic_html_zh_benchmark, WCEB cleaneval, dragnet
    and l3s_gn1; SFT answers of alpaca_en, alpaca_zh_hikariming and LLaMA-Factory's
    alpaca_zh_demo. Inside them, pages / records with crc32(key) % 100 < 15 form the
    *tune* part (options and threshold are chosen there), the rest the *train* part.
  * report sources (only quoted, never used to choose anything): WCEB
    cleanportaleval, readability and htmltotext_benchmark (English and Chinese pages
    only), BELLE eval answers, MedicalGPT sharegpt_zh answers and medical_sft
    answers, LLaMA-Factory's alpaca_en_demo outputs (the report's English SFT source).

Label `hq`: gold main text of web pages (chunked) and SFT answers. Label `lq`: web
boilerplate (blocks of the same pages that are not main content) and degenerate
versions of `hq` texts of the same part (see `degenerate`).
"""
import glob
import html.parser
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
DEFAULT_DATA = os.environ.get("CURATE_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))
DEFAULT_OUT = os.path.join(REPO, "target", "quality_model")

TUNE_PERCENT = 15

WEB_TRAIN = ["magic_html", "cleaneval", "dragnet", "l3s_gn1"]
WEB_REPORT = ["cleanportaleval", "readability", "htmltotext_benchmark"]
SFT_TRAIN = ["alpaca_en", "alpaca_zh_hikariming", "llamafactory_alpaca_zh"]
SFT_REPORT = ["belle_zh_eval", "medicalgpt_sharegpt_zh", "medicalgpt_medical_sft", "llamafactory_alpaca_en"]


def crc(s):
    return zlib.crc32(s.encode("utf-8"))


def part_of(source, key):
    """`train`, `tune` or `report` for an item `key` (page id, record key) of `source`."""
    if source in WEB_REPORT or source in SFT_REPORT:
        return "report"
    return "tune" if crc(source + "/" + key) % 100 < TUNE_PERCENT else "train"


# ---------------------------------------------------------------- text helpers

def is_cjk(c):
    o = ord(c)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FFFF


def lang_of(text):
    """`zh` when at least 30% of the letters are CJK ideographs, else `en`."""
    cjk = sum(1 for c in text if is_cjk(c))
    letters = sum(1 for c in text if c.isalpha())
    return "zh" if letters and cjk >= 0.3 * letters else "en"


def norm(text):
    """Lower-cased letters and digits only (what the gold comparison looks at)."""
    return "".join(c for c in text.lower() if c.isalnum())


def grams(s, n=5):
    return {s[i : i + n] for i in range(len(s) - n + 1)}


_SENT = re.compile(r"(?<=[。！？!?；;])|(?<=[.](?=\s))")


def sentences(text):
    return [s for s in (x.strip() for x in _SENT.split(text)) if s]


def chunk(text, rng, lo=200, hi=2000):
    """Cut `text` at line (then sentence) boundaries into pieces of a random target
    length in [lo, hi] characters, as records of a real data set would be."""
    units = []
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        if len(line) > hi:
            units.extend(sentences(line))
        else:
            units.append(line)
    out, cur, target = [], [], rng.randint(lo, hi)
    for u in units:
        cur.append(u)
        if sum(len(x) + 1 for x in cur) >= target:
            out.append("\n".join(cur))
            cur, target = [], rng.randint(lo, hi)
    if cur:
        rest = "\n".join(cur)
        if out and len(rest) < lo // 2:
            out[-1] += "\n" + rest
        else:
            out.append(rest)
    return out


# ---------------------------------------------------------------- HTML blocks

_SKIP = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object", "canvas"}
_BLOCK = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "td", "th",
    "table", "tbody", "thead", "section", "article", "header", "footer", "nav", "aside", "form",
    "blockquote", "pre", "dd", "dt", "dl", "hr", "main", "figure", "figcaption", "address",
    "option", "select", "center", "body", "html", "title", "caption", "fieldset", "legend", "label",
    "button", "menu",
}
_VOID = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "wbr", "param", "track"}


class _Blocks(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks, self.cur, self.skip = [], [], 0

    def flush(self):
        t = re.sub(r"\s+", " ", "".join(self.cur)).strip()
        if t:
            self.blocks.append(t)
        self.cur = []

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP and tag not in _VOID:
            self.skip += 1
        elif tag in _BLOCK:
            self.flush()

    def handle_startendtag(self, tag, attrs):
        if tag in _BLOCK:
            self.flush()

    def handle_endtag(self, tag):
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK:
            self.flush()

    def handle_data(self, data):
        if not self.skip:
            self.cur.append(data)


def html_blocks(raw_html):
    p = _Blocks()
    try:
        p.feed(raw_html)
        p.close()
    except Exception:  # html.parser rarely raises; keep what was read
        pass
    p.flush()
    return p.blocks


def decode_html(b):
    """UTF-8, else the declared charset, else cp1252 (WCEB pages come as they were crawled)."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        pass
    m = re.search(rb"charset\s*=\s*[\"']?([A-Za-z0-9_\-]+)", b[:4096])
    if m:
        try:
            return b.decode(m.group(1).decode("ascii").lower(), errors="replace")
        except LookupError:
            pass
    return b.decode("cp1252", errors="replace")


def boilerplate_runs(blocks, reference):
    """Group the page's blocks that are not main content into runs of consecutive blocks.

    A block is boilerplate when under 20% of its character 5-grams (of `norm`) occur in
    `reference` (the gold text, plus comments where the gold keeps them apart); a block
    with fewer than 5 letters/digits is boilerplate when it does not occur in the gold at
    all; blocks of punctuation only (`|`, `»`) join the run they sit in. Blocks with 20%
    or more are main content or unclear: they end a run."""
    ref = norm(reference)
    ref_grams = grams(ref)
    runs, cur = [], []
    for b in blocks:
        n = norm(b)
        if not n:
            if cur:
                cur.append(b)
            continue
        if len(n) < 5:
            boiler = n not in ref
        else:
            g = grams(n)
            boiler = sum(1 for x in g if x in ref_grams) < 0.2 * len(g)
        if boiler:
            cur.append(b)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs


def boilerplate_chunks(blocks, reference, rng, min_chars=30):
    out = []
    for run in boilerplate_runs(blocks, reference):
        for c in chunk("\n".join(run), rng, 100, 1500):
            if len(c) >= min_chars and norm(c):
                out.append(c)
    return out


# ---------------------------------------------------------------- sources

def web_pages(data, source):
    """Pages of a web source as dicts {id, html, gold, reference, lang}. English and
    Chinese pages only; the gold is the main text (`reference` adds what the gold keeps
    apart and is not boilerplate either: Dragnet's and L3S-GN1's comments)."""
    pages = []
    if source == "magic_html":
        root = os.path.join(data, "magic_html_zh_benchmark")
        for kind in ("article", "forum"):
            with open(os.path.join(root, kind, "ground_truth.json"), encoding="utf-8") as f:
                gt = json.load(f)
            for key in sorted(gt):
                with open(os.path.join(root, kind, "htmls", key + ".html"), "rb") as f:
                    raw = f.read().decode("utf-8", errors="replace")
                g = gt[key]["content"]
                pages.append({"id": kind + "/" + key, "html": raw, "gold": g, "reference": g, "lang": "zh"})
        return pages
    root = os.path.join(data, "web_extraction_wceb", source)
    with open(os.path.join(root, "gold.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(l) for l in f]
    for r in rows:
        lang = (r.get("lang") or "").lower()
        if not (lang.startswith("en") or lang.startswith("zh")):
            continue
        gold = r["text"]
        if len(gold) < 200:  # empty gold, synthetic unit-test pages
            continue
        ref = gold + "\n" + (r.get("comments") or "")
        # L3S-GN1's annotated copy has the gold's `?` for every non-ASCII character:
        # blocks and gold then agree (the raw page's curly quotes would mark boilerplate).
        sub = "annotated" if source == "l3s_gn1" else "html"
        with open(os.path.join(root, sub, r["id"] + ".html"), "rb") as f:
            raw = decode_html(f.read())
        pages.append({"id": r["id"], "html": raw, "gold": gold, "reference": ref, "lang": "zh" if lang.startswith("zh") else "en"})
    return pages


def _json_list(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def sft_answers(data, source):
    """(key, answer) pairs of an SFT source; the key decides train/tune."""
    out = []
    if source == "alpaca_en":
        for i, r in enumerate(_json_list(os.path.join(data, "alpaca_en", "alpaca_data.json"))):
            out.append((r["instruction"] + "\t" + r.get("input", ""), r["output"]))
    elif source == "alpaca_zh_hikariming":
        root = os.path.join(data, "alpaca_zh_hikariming")
        for p in sorted(glob.glob(os.path.join(root, "translated", "*.json"))):
            for r in _json_list(p):
                out.append((r["instruction"] + "\t" + r.get("input", ""), r["output"]))
        for p in sorted(glob.glob(os.path.join(root, "supplementary", "*.json"))):
            rows = _json_list(p)
            if p.endswith("supp_code_questions.json"):
                rows = rows[::9]  # 9,057 code answers would swamp the rest: every 9th
            for r in rows:
                out.append((r["instruction"] + "\t" + r.get("input", ""), r["output"]))
    elif source == "llamafactory_alpaca_zh":
        for r in _json_list(os.path.join(data, "llamafactory_demo", "alpaca_zh_demo.json")):
            out.append((r["instruction"] + "\t" + r.get("input", ""), r["output"]))
    elif source == "llamafactory_alpaca_en":
        for r in _json_list(os.path.join(data, "llamafactory_demo", "alpaca_en_demo.json")):
            out.append((r["instruction"] + "\t" + r.get("input", ""), r["output"]))
    elif source == "belle_zh_eval":
        for r in _jsonl(os.path.join(data, "belle_zh_eval", "eval_set.json")):
            out.append((r["question"], r["std_answer"]))
    elif source in ("medicalgpt_sharegpt_zh", "medicalgpt_medical_sft"):
        name = "sharegpt_zh_1K_format.jsonl" if source.endswith("sharegpt_zh") else "medical_sft_1K_format.jsonl"
        for i, r in enumerate(_jsonl(os.path.join(data, "medicalgpt_zh_sft_samples", name))):
            for j, t in enumerate(r["conversations"]):
                if t["from"] == "gpt":
                    out.append((f"{i}/{j}", t["value"]))
    else:
        raise ValueError(source)
    return [(k, a.strip()) for k, a in out if a and a.strip()]


# ---------------------------------------------------------------- degenerate text

KINDS = ["repeat", "shuffle", "mojibake", "stuffing", "fragments"]
# The kinds the train part is made of (tune and report always get every kind). No
# repetition loops: a bag of n-grams cannot tell a loop from the sentence it repeats
# (tune AUROC 0.63-0.72 on loops whatever the options), and training on them taught
# the model to flag short answers; tune.py chose this set (SOURCE.md).
TRAIN_KINDS = ["shuffle", "mojibake", "stuffing", "fragments"]

_EN_STOP = set(
    "the a an and or but of to in on at for with by from as is are was were be been being this that these those it its "
    "you your we our they their he she his her them i my me not no can will would should could may might have has had do "
    "does did so if then than also such which who whom what when where why how all any each more most other some into "
    "about over after before there here very just only".split()
)


def _sloppy_cp1252(b):
    out = []
    for x in b:
        try:
            out.append(bytes([x]).decode("cp1252"))
        except UnicodeDecodeError:
            out.append(chr(x))
    return "".join(out)


def can_degenerate(kind, text, lang):
    if kind == "mojibake":
        if lang == "zh":
            return len(text) >= 20
        # English text is mostly ASCII, which mojibake leaves alone: only texts with a
        # few non-ASCII characters (curly quotes, dashes) change visibly.
        return sum(1 for c in text if ord(c) > 127) >= 3
    return len(text) >= (40 if lang == "zh" else 120)


def degenerate(kind, text, lang, rng, pool):
    """A degenerate version of hq `text` (`pool`: other hq texts of the same part and
    language, for keyword stuffing)."""
    if kind == "repeat":
        # Broken generation: the text starts normally, then loops on a sentence or phrase.
        sents = [s for s in sentences(text) if 4 <= len(s) <= 200]
        if sents and rng.random() < 0.6:
            unit = rng.choice(sents)
        else:
            if lang == "zh":
                cs = [c for c in text if not c.isspace()]
                n = rng.randint(2, 10)
                s = rng.randrange(max(1, len(cs) - n))
                unit = "".join(cs[s : s + n])
            else:
                ws = text.split()
                n = rng.randint(1, 6)
                s = rng.randrange(max(1, len(ws) - n))
                unit = " ".join(ws[s : s + n])
        keep = text[: int(len(text) * rng.uniform(0, 0.5))]
        sep = rng.choice(["", " ", "\n"] if lang == "zh" else [" ", " ", "\n"])
        times = rng.randint(5, 40)
        while times > 5 and len(unit) * times > 2500:
            times -= 1
        return (keep + sep if keep else "") + sep.join([unit] * times)
    if kind == "shuffle":
        if lang == "zh":
            cs = [c for c in text if not c.isspace()]
            rng.shuffle(cs)
            return "".join(cs)
        ws = text.split()
        rng.shuffle(ws)
        return " ".join(ws)
    if kind == "mojibake":
        b = text.encode("utf-8")
        if lang == "zh" and rng.random() < 0.5:
            return b.decode("gbk", errors="replace")
        return _sloppy_cp1252(b)
    if kind == "stuffing":
        # A list of the text's terms (and those of two other texts), repeated.
        texts = [text] + [rng.choice(pool) for _ in range(2)]
        terms = []
        for t in texts:
            if lang == "zh":
                counts = {}
                for run in re.findall(r"[\u4e00-\u9fff]{2,}", t):
                    for n in (2, 3, 4):
                        for i in range(len(run) - n + 1):
                            counts[run[i : i + n]] = counts.get(run[i : i + n], 0) + 1
                top = sorted(counts, key=lambda k: (-counts[k], k))[:15]
            else:
                counts = {}
                for w in re.findall(r"[A-Za-z][A-Za-z'-]{3,}", t):
                    if w.lower() not in _EN_STOP:
                        counts[w] = counts.get(w, 0) + 1
                top = sorted(counts, key=lambda k: (-counts[k], k))[:15]
            terms.extend(top)
        if not terms:
            return None
        n = rng.randint(15, 60)
        picked = [rng.choice(terms) for _ in range(n)]
        if lang == "en" and rng.random() < 0.5:
            picked = [" ".join(rng.choice(terms) for _ in range(rng.randint(1, 3))) for _ in range(n)]
        sep = rng.choice([" ", ", ", " | ", "\n", "、" if lang == "zh" else " - ", ","])
        return sep.join(picked)
    if kind == "fragments":
        # Cut into tiny pieces (1-3 words, 1-4 characters), a third of them lost, one per line.
        if lang == "zh":
            cs = [c for c in text if not c.isspace()]
            pieces, i = [], 0
            while i < len(cs):
                n = rng.randint(1, 4)
                pieces.append("".join(cs[i : i + n]))
                i += n
        else:
            ws = text.split()
            pieces, i = [], 0
            while i < len(ws):
                n = rng.randint(1, 3)
                pieces.append(" ".join(ws[i : i + n]))
                i += n
        kept = [p for p in pieces if rng.random() > 0.33] or pieces[:1]
        sep = rng.choice(["\n", "\n", " | ", "  "])
        return sep.join(kept)
    raise ValueError(kind)


# ---------------------------------------------------------------- scoring through curate

def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def curate_binary():
    return os.environ.get("CURATE_BIN", os.path.join(REPO, "target", "release", "curate"))


def classifier_stage(model, threshold=0.5, action="tag", fields="response", keep_punct=False):
    return (
        '[[stage]]\nkind = "classifier"\nname = "quality"\nmodel = %s\nlabel = "hq"\nfields = "%s"\n'
        'threshold = %s\nflag = "below"\naction = "%s"\nkeep_punct = %s\n'
        % (json.dumps(os.path.abspath(model)), fields, threshold, action, str(keep_punct).lower())
    )


_HAS_CLASSIFIER = {}


def has_classifier_stage():
    """Whether the curate binary knows the `classifier` stage (else `score` falls back
    to the toxicity stage with `positive_label = "hq"`: for one text per record the
    same P(hq); only used while the classifier stage was being written)."""
    forced = os.environ.get("QUALITY_SCORER")  # `classifier` or `toxicity`
    if forced:
        return forced == "classifier"
    b = curate_binary()
    if b not in _HAS_CLASSIFIER:
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "x.jsonl"), "w") as f:
                f.write('{"text": "x"}\n')
            with open(os.path.join(tmp, "p.toml"), "w") as f:
                f.write('[input]\npaths = ["x.jsonl"]\n[[stage]]\nkind = "classifier"\n[output]\ndir = "o"\n')
            r = subprocess.run([b, "validate", os.path.join(tmp, "p.toml")], capture_output=True, text=True)
            _HAS_CLASSIFIER[b] = "unknown stage kind" not in r.stdout + r.stderr
    return _HAS_CLASSIFIER[b]


def score(model, texts, threads=2, keep_punct=False):
    """P(hq) of each text by `model`, through `curate run` with the classifier stage
    tagging (`meta.classifier.quality.score`)."""
    classifier = has_classifier_stage()
    with tempfile.TemporaryDirectory() as tmp:
        write_jsonl(os.path.join(tmp, "in.jsonl"), ({"id": str(i), "text": t} for i, t in enumerate(texts)))
        with open(os.path.join(tmp, "p.toml"), "w", encoding="utf-8") as f:
            f.write('[input]\npaths = ["in.jsonl"]\nformat = "jsonl"\nschema = "text"\n')
            if classifier:
                f.write(classifier_stage(model, keep_punct=keep_punct))
            else:
                f.write('[[stage]]\nkind = "toxicity"\nmodel = %s\npositive_label = "hq"\nmin_lexicon_hits = 0\n'
                        'threshold = 1.0\naction = "tag"\n' % json.dumps(os.path.abspath(model)))
            f.write('[output]\ndir = "out"\ncompression = "none"\n')
        subprocess.run([curate_binary(), "run", os.path.join(tmp, "p.toml"), "--quiet", "--threads", str(threads)], check=True)
        scores = [None] * len(texts)
        for p in glob.glob(os.path.join(tmp, "out", "kept", "*.jsonl")):
            for r in read_jsonl(p):
                m = r.get("meta", {})
                q = (m.get("classifier", {}).get("quality") if classifier else m.get("toxicity")) or {}
                scores[int(r["id"])] = q.get("score")
        return scores


# One AUROC for every evaluation script (ties count half): the toxicity scripts' own.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "toxicity"))
from toxdata import auroc  # noqa: E402  (after the path is set)


def flag_stats(scores, is_lq, th):
    """Detection of lq as the stage flags it (score < th): precision, recall, F1, share of hq flagged."""
    tp = sum(1 for s, y in zip(scores, is_lq) if s < th and y)
    fp = sum(1 for s, y in zip(scores, is_lq) if s < th and not y)
    pos = sum(is_lq)
    neg = len(is_lq) - pos
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / pos if pos else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f, (fp / neg if neg else 0.0)
