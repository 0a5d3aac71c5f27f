#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks the links of the project's Markdown files (README.md first).

Usage: check-links.py SOURCE_DIR

Every relative link (inline `[text](target)` or reference `[id]: target`)
must name a file or directory inside SOURCE_DIR that exists, so that it
works in a clone: a link out of the tree (`../shared/API.md`) or an absolute
path fails. A `#fragment` into a Markdown file must name one of its
headings (GitHub's anchors). Web and mail links are not fetched. Links in
code blocks and code spans are not links. Exit status 1 with one line per
broken link.
"""

import os
import re
import sys

# vendor: the crates the release tarball vendors (scripts/dist-vendor.sh).
SKIP_DIRS = {".git", "target", "subprojects", "node_modules", "vendor"}
INLINE = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files(root):
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs
                         if d not in SKIP_DIRS and not d.startswith("build"))
        for name in sorted(files):
            if name.endswith(".md"):
                yield os.path.join(top, name)


def prose_lines(text, spans=False):
    """(line number, line) outside fenced code; code spans blanked unless
    `spans`."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if fence:
            if stripped.startswith(fence):
                fence = None
            continue
        if stripped.startswith("```") or stripped.startswith("~~~"):
            fence = stripped[:3]
            continue
        yield number, line if spans else re.sub(r"(`+).*?\1", "", line)


def anchors(path):
    """GitHub's anchors for the headings of a Markdown file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    seen = {}
    out = set()
    for _, line in prose_lines(text, spans=True):
        m = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).replace("`", "").lower())
        slug = slug.replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def check(root, path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    rel = os.path.relpath(path, root)
    problems = []
    for number, line in prose_lines(text):
        targets = INLINE.findall(line)
        m = REFERENCE.match(line)
        if m:
            targets.append(m.group(1))
        for target in targets:
            if not target or EXTERNAL.match(target):
                continue
            where = f"{rel}:{number}: link '{target}'"
            file_part, _, fragment = target.partition("#")
            if file_part.startswith("/"):
                problems.append(f"{where} is an absolute path: it does not work in a clone")
                continue
            dest = (os.path.normpath(os.path.join(os.path.dirname(path), file_part))
                    if file_part else path)
            if os.path.commonpath([root, os.path.realpath(dest)]) != root:
                problems.append(f"{where} leaves the repository")
                continue
            if not os.path.exists(dest):
                problems.append(f"{where}: no {os.path.relpath(dest, root)}")
                continue
            if fragment and dest.endswith(".md") and fragment not in anchors(dest):
                problems.append(f"{where}: no heading '#{fragment}' in "
                                f"{os.path.relpath(dest, root)}")
    return problems


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check-links.py SOURCE_DIR")
    root = os.path.realpath(sys.argv[1])
    if not os.path.isfile(os.path.join(root, "README.md")):
        sys.exit(f"check-links: no README.md in {root}")
    problems = []
    files = list(markdown_files(root))
    for path in files:
        problems += check(root, path)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    print(f"check-links: every relative link of {len(files)} Markdown files resolves "
          "inside the repository")
    return 0


if __name__ == "__main__":
    sys.exit(main())
