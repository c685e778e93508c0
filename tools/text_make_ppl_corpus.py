"""Writes data/web-luke.txt: the Gospel of Luke in the World English Bible, a public-domain
modern-English translation, as plain prose for `tandem perplexity`.

Source: Debian's sword-text-web package (SWORD module engWEB2015eb, version 426.0, "2020
stable text edition"; its conf says Copyright=PUBLIC DOMAIN, DistributionLicense=Public
Domain), read with Debian's diatheke. Regenerate with

    apt-get install sword-text-web diatheke
    python3 tools/text_make_ppl_corpus.py

Footnotes are dropped, each chapter becomes one paragraph of its verses (verse numbers
removed, whitespace collapsed) under a "Chapter N" line, and the text starts with the book's
title. Curly quotes and apostrophes are kept as the translation writes them.
"""
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
BOOK, CHAPTERS = "Luke", 24

VERSE = re.compile(r"^%s (\d+):(\d+): ?" % BOOK)
FOOTNOTE = re.compile(r"\s*\[\d+:\d+ [^\]]*\]")


def chapter(n):
    out = subprocess.run(["diatheke", "-b", "engWEB2015eb", "-f", "plain", "-o", "f", "-k", f"{BOOK} {n}"],
                         check=True, capture_output=True, text=True).stdout
    verses, current = [], None
    for line in out.splitlines():
        if line.startswith("(engWEB2015eb)"):
            break
        m = VERSE.match(line)
        if m:
            if current is not None:
                verses.append(current)
            current = line[m.end():]
        elif current is not None:
            current += " " + line
    verses.append(current)
    text = " ".join(FOOTNOTE.sub("", v) for v in verses)
    return re.sub(r"\s+", " ", text).strip()


def main():
    parts = [f"The Gospel According to {BOOK}"]
    for n in range(1, CHAPTERS + 1):
        parts.append(f"Chapter {n}\n\n{chapter(n)}")
    path = ROOT / "data" / "web-luke.txt"
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    print(f"wrote {path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
