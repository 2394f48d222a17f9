"""Helpers of benches/extract_peers.sh (standard library only, run by the system python3).

    bench.py manifest DATA ROOT WEB_GOLD WORK   # WORK/manifest.jsonl, sources.tsv, pageset.sha
    bench.py run-curate BIN PIPELINE WORK [N]   # curate run per source (N times, min CPU) -> WORK/texts/curate.jsonl
                                                # (`+comments` sources: extract_keep_comments.toml beside PIPELINE)
    bench.py markdown TABLE.tsv                 # the table as markdown
    bench.py fails PERPAGE.tsv...               # dev pages with F1 < 0.5, per group and tool

Page sets, their gold and scorer:
  * magic-html (shared data, zh): `article`, `forum`; gold `ground_truth.json`
    `content`; char scoring.
  * data-samples/web (the bundled pages): gold `gold/<stem>.txt`; `zh_*` pages char,
    `en_*` pages token scoring.
  * newspaper4k (scripts/fetch_web_gold.sh; the English pages only, copied into
    WORK/input/newspaper4k-en so that curate reads exactly those): gold `txt/`, token.
  * web_extraction_wceb (shared data), six sources; gold `gold.jsonl` `text`
    (`dragnet+comments`: `text + "\\n" + comments`, WCEB's convention; `dragnet`:
    the article alone, the Dragnet paper's); char scoring for zh/ja pages, token
    for the rest. `wceb/all` = the 637 pages, each under its source's convention.
Conventions: CleanEval's and htmltotext's hand-cleaned text keeps a blog's
comments, and so does `dragnet+comments`; their pages are read from a source
named `<source>+comments`, for which every tool that can be told to keep comments
is (curate `comments = "keep"`, trafilatura `include_comments=True`), and the
others to leave them out (curate's default `auto`, trafilatura
`include_comments=False`). Tools without such a setting run the same way on both.
Split: each source's pages sorted by id (the file name without `.html`); even
positions are `dev`, odd positions `held`.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

WCEB = ["cleaneval", "cleanportaleval", "dragnet", "l3s_gn1", "readability", "htmltotext_benchmark"]
# Sources whose gold keeps a blog's comments (see the conventions above).
COMMENTS_KEPT = {"cleaneval", "htmltotext_benchmark"}


def stem(name):
    assert name.endswith(".html"), name
    return name[: -len(".html")]


def cjk(lang):
    return (lang or "").lower().split("-")[0] in ("zh", "ja")


def manifest(data, root, web_gold, work):
    pages = []  # (source, input_dir, id, lang, scorer, [(group, gold)])
    bench = os.path.join(data, "magic_html_zh_benchmark")
    for subset in ("article", "forum"):
        gt = json.load(open(os.path.join(bench, subset, "ground_truth.json")))
        d = os.path.join(bench, subset, "htmls")
        for name in os.listdir(d):
            pid = stem(name)
            pages.append((f"magic-html/{subset}", d, pid, "zh", "char",
                          [(f"magic-html/{subset}", gt[pid]["content"]), ("magic-html/all", gt[pid]["content"])]))
    web = os.path.join(root, "data-samples", "web")
    for name in os.listdir(web):
        if name.endswith(".html"):
            pid = stem(name)
            lang = "zh" if pid.startswith("zh_") else "en"
            gold = open(os.path.join(web, "gold", pid + ".txt"), encoding="utf-8").read()
            pages.append(("data-samples/web", web, pid, lang, "char" if lang == "zh" else "token",
                          [(f"data-samples/{lang}", gold)]))
    news = os.path.join(web_gold, "newspaper4k")
    if os.path.isfile(os.path.join(news, ".complete")):
        d = os.path.join(work, "input", "newspaper4k-en")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name in sorted(os.listdir(os.path.join(news, "txt"))):
            pid = name[:-4]
            html = os.path.join(news, "html", pid + ".html")
            meta = os.path.join(news, "metadata", pid + ".json")
            if not (os.path.isfile(html) and os.path.isfile(meta)):
                continue
            # video_article_01 (no language) repeats cleveland.com1
            if json.load(open(meta)).get("language") != "en":
                continue
            shutil.copyfile(html, os.path.join(d, pid + ".html"))
            gold = open(os.path.join(news, "txt", name), encoding="utf-8").read()
            pages.append(("newspaper4k/en", d, pid, "en", "token", [("newspaper4k/en", gold)]))
    else:
        print(f"no newspaper4k pages under {news}: group newspaper4k/en left out", file=sys.stderr)
    wceb = os.path.join(data, "web_extraction_wceb")
    for src in WCEB:
        d = os.path.join(wceb, src, "html")
        files = set(os.listdir(d))
        rows = [json.loads(l) for l in open(os.path.join(wceb, src, "gold.jsonl"), encoding="utf-8")]
        assert {r["id"] + ".html" for r in rows} == files, f"{src}: gold ids != html files"
        scorer = lambda r: "char" if cjk(r.get("lang")) else "token"
        for r in rows:
            groups = [(f"wceb/{src}", r["text"]), ("wceb/all", r["text"])]
            source = f"wceb/{src}+comments" if src in COMMENTS_KEPT else f"wceb/{src}"
            pages.append((source, d, r["id"], r.get("lang"), scorer(r), groups))
            if src == "dragnet":
                pages.append(("wceb/dragnet+comments", d, r["id"], r.get("lang"), scorer(r),
                              [("wceb/dragnet+comments", r["text"] + "\n" + r["comments"])]))

    # Splits: sorted by id within the source, even = dev, odd = held.
    by_source = {}
    for p in pages:
        by_source.setdefault(p[0], []).append(p)
    split = {}
    for src, ps in by_source.items():
        for i, p in enumerate(sorted(ps, key=lambda p: p[2])):
            split[(src, p[2])] = "dev" if i % 2 == 0 else "held"
    # Manifest lines grouped by group (first appearance order), pages sorted by id.
    lines = {}
    sha = hashlib.sha256()
    for p in sorted(pages, key=lambda p: (p[0], p[2])):
        src, d, pid, lang, scorer, groups = p
        html = os.path.join(d, pid + ".html")
        sha.update(f"{src}\0{pid}\0".encode())
        sha.update(hashlib.sha256(open(html, "rb").read()).digest())
        for g, gold in groups:
            lines.setdefault(g, []).append(json.dumps(
                {"group": g, "source": src, "id": pid, "split": split[(src, pid)], "scorer": scorer,
                 "lang": lang, "html_path": html, "gold": gold}, ensure_ascii=False))
    order = (["magic-html/article", "magic-html/forum", "magic-html/all", "data-samples/zh",
              "data-samples/en", "newspaper4k/en"]
             + [f"wceb/{s}" for s in WCEB[:3]] + ["wceb/dragnet+comments"]
             + [f"wceb/{s}" for s in WCEB[3:]] + ["wceb/all"])
    assert set(lines) <= set(order), set(lines) - set(order)
    with open(os.path.join(work, "manifest.jsonl"), "w", encoding="utf-8") as f:
        for g in order:
            for l in lines.get(g, []):
                f.write(l + "\n")
    with open(os.path.join(work, "sources.tsv"), "w") as f:
        for src, ps in by_source.items():
            f.write(f"{src}\t{ps[0][1]}\t{len(ps)}\n")
    with open(os.path.join(work, "pageset.sha"), "w") as f:
        f.write(sha.hexdigest() + "\n")
    for g in order:
        if g in lines:
            print(f"  {g}: {len(lines[g])} pages", file=sys.stderr)


def run_curate(binary, pipeline, work, repeat="3"):
    """`curate run` per source, pinned to core 0; CPU = user + sys of the process.

    Each source is run `repeat` times and the smallest CPU time is kept (CPU time
    still moves with other processes on a shared machine: caches, frequency); the
    texts are the last run's (the stage is deterministic)."""
    os.makedirs(os.path.join(work, "texts"), exist_ok=True)
    runs = os.path.join(work, "curate-runs")
    shutil.rmtree(runs, ignore_errors=True)
    out_path = os.path.join(work, "texts", "curate.jsonl")
    total_pages, total_cpu, total_stage = 0, 0.0, 0.0
    with open(out_path, "w", encoding="utf-8") as w:
        for line in open(os.path.join(work, "sources.tsv")):
            src, d, n = line.rstrip("\n").split("\t")
            n = int(n)
            out = os.path.join(runs, src.replace("/", "_"))
            config = pipeline
            if src.endswith("+comments"):
                config = os.path.join(os.path.dirname(pipeline), "extract_keep_comments.toml")
            cmd = ["taskset", "-c", "0", binary, "run", config, "--input", d, "--output", out, "--quiet"]
            cpus, stage_cpus = [], []
            for _ in range(int(repeat)):
                shutil.rmtree(out, ignore_errors=True)
                proc = subprocess.Popen(cmd)
                _, status, ru = os.wait4(proc.pid, 0)
                if os.waitstatus_to_exitcode(status) != 0:
                    sys.exit(f"{' '.join(cmd)}: exit {os.waitstatus_to_exitcode(status)}")
                cpus.append(ru.ru_utime + ru.ru_stime)
                # The extract stage's own CPU (thread CPU time, stats.json): the
                # figure without start-up, listing, reading, decoding and writing.
                stats = json.load(open(os.path.join(out, "stats.json")))
                stage_cpus.append(sum(s["cpu_seconds"] for s in stats["stages"] if s["kind"] == "extract"))
            cpu = min(cpus)
            stage_cpu = min(stage_cpus)
            seen = set()
            rejected = {}
            for kind in ("kept", "rejected"):
                kd = os.path.join(out, kind)
                for part in sorted(os.listdir(kd)) if os.path.isdir(kd) else []:
                    for l in open(os.path.join(kd, part), encoding="utf-8"):
                        r = json.loads(l)
                        pid = stem(r["id"])
                        assert pid not in seen, f"{src}/{pid} twice in curate's output"
                        seen.add(pid)
                        text = r["text"] if kind == "kept" else ""
                        rec = {"source": src, "id": pid, "text": text}
                        if kind == "rejected":
                            rec["rejected"] = r.get("reason")
                            rejected[r.get("reason")] = rejected.get(r.get("reason"), 0) + 1
                        w.write(json.dumps(rec, ensure_ascii=False) + "\n")
            if len(seen) != n:
                sys.exit(f"{src}: curate wrote {len(seen)} records (kept + rejected) for {n} pages")
            w.write(json.dumps({"source": src, "run_cpu_s": cpu, "run_pages": n,
                                "stage_cpu_s": stage_cpu}) + "\n")
            total_pages += n
            total_cpu += cpu
            total_stage += stage_cpu
            print(f"  curate {src}: {n} pages, {cpu:.3f} CPU-s ({n / cpu:.0f} pages/CPU-s), "
                  f"stage {stage_cpu:.3f} CPU-s ({n / stage_cpu:.0f} pages/CPU-s), "
                  f"runs {' '.join(f'{c:.3f}' for c in cpus)}, rejected {rejected or 0}", file=sys.stderr)
    print(f"  curate, all runs: {total_pages} pages, {total_cpu:.3f} CPU-s "
          f"({total_pages / total_cpu:.0f} pages/CPU-s); the extract stage {total_stage:.3f} CPU-s "
          f"({total_pages / total_stage:.0f} pages/CPU-s)", file=sys.stderr)


def read_table(path):
    rows = []
    for l in open(path):
        f = l.rstrip("\n").split("\t")
        if f[0] == "tool":
            continue
        rows.append(dict(zip(["tool", "group", "split", "pages", "empty", "P", "R", "F1", "speed", "clock"], f)))
    return rows


def markdown(path):
    rows = read_table(path)
    tools = list(dict.fromkeys(r["tool"] for r in rows))
    keys = list(dict.fromkeys((r["group"], r["split"]) for r in rows))
    at = {(r["tool"], r["group"], r["split"]): r for r in rows}

    def best(vals):
        nums = [float(v) for v in vals if v not in ("-", "")]
        return max(nums) if nums else None

    print("F1 (token F1 on Latin-script pages, char F1 on zh/ja pages; P and R averaged over pages, "
          "F1 = their harmonic mean); best of the row in bold:\n")
    print("| group | split | pages | " + " | ".join(tools) + " |")
    print("|---|---|---|" + "---|" * len(tools))
    for g, s in keys:
        vals = [at.get((t, g, s), {}).get("F1", "-") for t in tools]
        b = best(vals)
        cells = [f"**{v}**" if v != "-" and float(v) == b else v for v in vals]
        pages = next(at[(t, g, s)]["pages"] for t in tools if (t, g, s) in at)
        print(f"| {g} | {s} | {pages} | " + " | ".join(cells) + " |")
    print("\nP / R on all pages of each group, and pages per CPU-second (curate: the whole "
          "`curate run` process, user + sys, one thread on one core; peers: the extraction "
          "call per page, thread CPU time); `empty` = pages with empty output:\n")
    print("| group | " + " | ".join(f"{t} P / R (empty)" for t in tools) + " |")
    print("|---|" + "---|" * len(tools))
    for g, s in keys:
        if s != "all":
            continue
        cells = []
        for t in tools:
            r = at.get((t, g, s))
            cells.append(f"{r['P']} / {r['R']} ({r['empty']})" if r else "-")
        print(f"| {g} | " + " | ".join(cells) + " |")
    print("\n| group | pages | " + " | ".join(f"{t} pages/CPU-s" for t in tools) + " |")
    print("|---|---|" + "---|" * len(tools))
    for g, s in keys:
        if s != "all" or g in ("wceb/dragnet+comments",):
            continue
        pages = next(at[(t, g, s)]["pages"] for t in tools if (t, g, s) in at)
        cells = [at.get((t, g, s), {}).get("speed", "-") for t in tools]
        print(f"| {g} | {pages} | " + " | ".join(cells) + " |")


def short(pid):
    """magic-html ids are SHA-256 hex: their first 8 digits name them well enough."""
    return pid[:8] if len(pid) == 64 and all(c in "0123456789abcdef" for c in pid) else pid


def fails(paths):
    """Dev pages with F1 < 0.5, per group: by every tool, and tool by tool."""
    per = {}  # group -> id -> tool -> f1
    tools = []
    for p in paths:
        for l in open(p):
            tool, group, split, pid, _p, _r, f1, _e = l.rstrip("\n").split("\t")
            if split != "dev" or group in ("wceb/all", "magic-html/all"):
                continue
            if tool not in tools:
                tools.append(tool)
            per.setdefault(group, {}).setdefault(pid, {})[tool] = float(f1)
    for group, ids in per.items():
        print(f"{group} (dev, {len(ids)} pages):")
        every = sorted(short(i) for i, t in ids.items() if all(f < 0.5 for f in t.values()))
        print(f"  every tool < 0.5: {len(every)} {' '.join(every)}")
        for tool in tools:
            bad = sorted(short(i) for i, t in ids.items() if t.get(tool, 1.0) < 0.5)
            print(f"  {tool}: {len(bad)} {' '.join(bad)}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "manifest":
        manifest(*args)
    elif cmd == "run-curate":
        run_curate(*args)
    elif cmd == "markdown":
        markdown(*args)
    elif cmd == "fails":
        fails(args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
