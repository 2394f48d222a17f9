"""Run one Python extractor over the pages of a peers manifest (benches/extract_peers.sh).

    python peers.py MANIFEST TOOL OUT.jsonl     # TOOL: trafilatura, readability, justext, resiliparse
    python peers.py version TOOL                # the installed version

Each tool gets the raw bytes of each file and decodes them the way it does for a
file it is given (its documented entry point for bytes):
  * trafilatura: `trafilatura.extract(bytes, include_comments=...)` (decodes with
    its own charset detection, `trafilatura.utils.decode_file`); comments included
    on `+comments` sources (the gold keeps them; trafilatura's default) and left out
    elsewhere, other options default (tables included, as the CLI does).
  * readability-lxml: `Document(bytes).summary()` (decodes with its own
    `readability.encoding.get_encoding`: meta charset, then chardet); the summary
    HTML becomes text with a line break at each block element.
  * jusText: `justext.justext(bytes, stoplist)` (decodes by the meta charset,
    else UTF-8, as its CLI does); the stop list of the page's language when jusText
    ships one (English when the page's language is unknown), else its
    language-independent mode (empty stop list, stopwords_low = stopwords_high = 0,
    what `python -m justext` does for an empty stop list: the zh/ja pages).
  * Resiliparse: `detect_encoding(bytes)` + `bytes_to_str(bytes, enc)` (its
    documented decoding), then `extract_plain_text(html, main_content=True)`.
Only this per-page call is timed, in the thread's CPU time (`time.thread_time`),
decoding included, one page at a time; reading the file and starting Python are
not. A tool that raises on a page gets an empty text there (scored 0).
Output: one JSON line per page, `{"source", "id", "text", "cpu_s"}`.
"""
import json
import logging
import sys
import time

PACKAGES = {
    "trafilatura": "trafilatura",
    "readability": "readability-lxml",
    "justext": "jusText",
    "resiliparse": "resiliparse",
}

# jusText's stop lists by language code (the pages' `lang` in the manifest).
JUSTEXT_LISTS = {
    "en": "English", "de": "German", "hr": "Croatian", "es": "Spanish",
    "fr": "French", "cs": "Czech", "pt": "Portuguese",
}

BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
    "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th",
    "tr", "ul",
}


def version(tool):
    import importlib.metadata

    return importlib.metadata.version(PACKAGES[tool])


def make(tool):
    if tool == "trafilatura":
        import trafilatura

        def run(data, lang, comments):
            return trafilatura.extract(data, include_comments=comments) or ""
    elif tool == "readability":
        import lxml.html
        from readability import Document

        def run(data, lang, comments):
            root = lxml.html.fromstring(Document(data).summary())
            for el in root.iter():
                if isinstance(el.tag, str) and el.tag in BLOCK_TAGS:
                    el.text = "\n" + (el.text or "")
                    el.tail = "\n" + (el.tail or "")
            return root.text_content()
    elif tool == "justext":
        import justext

        def run(data, lang, comments):
            code = (lang or "en").lower().split("-")[0]
            name = JUSTEXT_LISTS.get(code)
            if name:
                paras = justext.justext(data, justext.get_stoplist(name))
            else:
                paras = justext.justext(data, frozenset(), stopwords_low=0, stopwords_high=0)
            return "\n".join(p.text for p in paras if not p.is_boilerplate)
    elif tool == "resiliparse":
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.encoding import bytes_to_str, detect_encoding

        def run(data, lang, comments):
            html = bytes_to_str(data, detect_encoding(data))
            return extract_plain_text(html, main_content=True)
    else:
        sys.exit(f"unknown tool {tool}")
    return run


def main():
    if sys.argv[1] == "version":
        print(version(sys.argv[2]))
        return
    manifest, tool, out = sys.argv[1:4]
    # readability-lxml logs a traceback per failing page, trafilatura its encoding
    # guesses: the failures are counted below instead.
    logging.disable(logging.CRITICAL)
    run = make(tool)
    seen = set()
    failed = 0
    with open(manifest) as f, open(out, "w") as w:
        for line in f:
            page = json.loads(line)
            key = (page["source"], page["id"])
            if key in seen:
                continue
            seen.add(key)
            with open(page["html_path"], "rb") as h:
                data = h.read()
            start = time.thread_time()
            try:
                text = run(data, page.get("lang"), page["source"].endswith("+comments"))
            except Exception as e:  # a peer failing on a page scores 0 there
                print(f"{tool}: {page['source']}/{page['id']} failed: {e!r}", file=sys.stderr)
                failed += 1
                text = ""
            cpu_s = time.thread_time() - start
            w.write(json.dumps({"source": key[0], "id": key[1], "text": text, "cpu_s": cpu_s},
                               ensure_ascii=False) + "\n")
    print(f"{tool}: {len(seen)} pages, {failed} raised", file=sys.stderr)


if __name__ == "__main__":
    main()
