#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The licences of the crates this project ships, from `cargo metadata`.

check (default): the crates linked into the library and the tool (normal
  dependencies, for the host, not build scripts, proc macros or
  dev-dependencies) are exactly those listed in THIRD-PARTY-LICENSES.md, and
  each is available under a licence that an LGPL-2.1-or-later library may
  link statically (MIT, BSD, ISC, Zlib, Unlicense or the LGPL itself; for a
  crate offered under several, the table says which this project uses).
--update: rewrites THIRD-PARTY-LICENSES.md.
--debian-copyright: prints the DEP-5 paragraphs for every crate of
  Cargo.lock, as the release tarball vendors them (scripts/build-deb.sh
  appends them to debian/copyright), with the licence paragraphs they need.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIST = os.path.join(ROOT, 'THIRD-PARTY-LICENSES.md')
# Licences under which a crate may be linked into an LGPL-2.1-or-later
# library without changing its terms (Apache-2.0 alone is not: its patent
# clause conflicts with version 2.1 of the LGPL).
LINKABLE = ['MIT', 'BSD-2-Clause', 'BSD-3-Clause', 'ISC', 'Zlib', 'Unlicense',
            'LGPL-2.1-or-later', '0BSD']


def metadata(platform=None):
    cmd = [os.environ.get('CARGO', 'cargo'), 'metadata', '--format-version', '1', '--locked',
           '--manifest-path', os.path.join(ROOT, 'Cargo.toml')]
    if platform:
        cmd += ['--filter-platform', platform]
    if os.environ.get('CARGO_NET_OFFLINE') in ('true', '1', 'yes'):
        cmd.append('--offline')
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def host_triple():
    out = subprocess.run([os.environ.get('RUSTC', 'rustc'), '-vV'], check=True, capture_output=True, text=True).stdout
    return re.search(r'^host: (\S+)$', out, re.M).group(1)


def linked_crates():
    """(name, version, licence) of every crate linked into what we ship."""
    meta = metadata(host_triple())
    packages = {p['id']: p for p in meta['packages']}
    nodes = {n['id']: n for n in meta['resolve']['nodes']}
    root = meta['resolve']['root']
    seen, todo = set(), [root]
    while todo:
        node = nodes[todo.pop()]
        for dep in node['deps']:
            if any(k['kind'] is None for k in dep['dep_kinds']) and dep['pkg'] not in seen:
                seen.add(dep['pkg'])
                todo.append(dep['pkg'])
    return sorted((packages[i]['name'], packages[i]['version'], packages[i]['license'] or '')
                  for i in seen)


def used_under(expression):
    """The first alternative of an SPDX expression made only of LINKABLE licences."""
    for alternative in re.split(r'\s+OR\s+', expression.strip('()')):
        if alternative.strip() in LINKABLE:
            return alternative.strip()
    return None


def table(crates):
    lines = ['# Licences of the crates linked into the library and the tool', '',
             'Written by `scripts/crate-licenses.py --update` from `cargo metadata`; the',
             '`licenses` test (`meson test --suite lint`) fails when it is out of date.',
             'The library and the admin tool are LGPL-2.1-or-later (COPYING); these crates',
             'are linked into both, statically, each under the licence named last.', '',
             '| crate | version | licence | used under |', '| --- | --- | --- | --- |']
    lines += [f'| {n} | {v} | {lic} | {used_under(lic) or "NONE"} |' for n, v, lic in crates]
    return '\n'.join(lines) + '\n'


def check(update):
    crates = linked_crates()
    want = table(crates)
    bad = [f'{n} {v}: {lic or "no licence"}' for n, v, lic in crates if not used_under(lic)]
    if bad:
        print('crates whose licence an LGPL-2.1-or-later library cannot link:', *bad,
              sep='\n  ', file=sys.stderr)
        return 1
    if update:
        with open(LIST, 'w', encoding='utf-8') as f:
            f.write(want)
        print(f'wrote {LIST}')
        return 0
    try:
        with open(LIST, encoding='utf-8') as f:
            have = f.read()
    except FileNotFoundError:
        have = ''
    if have != want:
        print('THIRD-PARTY-LICENSES.md is out of date (scripts/crate-licenses.py --update):',
              file=sys.stderr)
        sys.stderr.writelines(line + '\n' for line in want.splitlines()
                              if line not in have.splitlines())
        return 1
    print(f'crate licences: {len(crates)} linked crates, each under '
          + ', '.join(sorted({used_under(lic) for _, _, lic in crates})))
    return 0


# DEP-5 ------------------------------------------------------------------

EXPAT = """Permission is hereby granted, free of charge, to any person obtaining a
copy of this software and associated documentation files (the "Software"),
to deal in the Software without restriction, including without limitation
the rights to use, copy, modify, merge, publish, distribute, sublicense,
and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in
all copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL
THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
DEALINGS IN THE SOFTWARE."""

UNLICENSE = """This is free and unencumbered software released into the public domain.

Anyone is free to copy, modify, publish, use, compile, sell, or distribute
this software, either in source code form or as a compiled binary, for any
purpose, commercial or non-commercial, and by any means.

In jurisdictions that recognize copyright laws, the author or authors of
this software dedicate any and all copyright interest in the software to the
public domain. We make this dedication for the benefit of the public at
large and to the detriment of our heirs and successors. We intend this
dedication to be an overt act of relinquishment in perpetuity of all present
and future rights to this software under copyright law.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN
ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

For more information, please refer to <http://unlicense.org/>"""

# SPDX identifier -> (DEP-5 short name, licence text, or the common-licenses file).
DEP5 = {
    'MIT': ('Expat', EXPAT),
    'Apache-2.0': ('Apache-2.0', '/usr/share/common-licenses/Apache-2.0'),
    'MPL-2.0': ('MPL-2.0', '/usr/share/common-licenses/MPL-2.0'),
    'LGPL-2.1-or-later': ('LGPL-2.1+', '/usr/share/common-licenses/LGPL-2.1'),
    'Unlicense': ('Unlicense', UNLICENSE),
    'Unicode-3.0': ('Unicode-3.0', 'LICENSE-UNICODE'),
    'Apache-2.0 WITH LLVM-exception': ('Apache-2.0 with LLVM exception',
                                       'LICENSE-Apache-2.0_WITH_LLVM-exception'),
}


def dep5_expression(spdx):
    """An SPDX expression in DEP-5 syntax: lower-case operators, no parentheses
    ('(A OR B) AND C' is 'A or B, and C')."""
    m = re.fullmatch(r'\((.*)\)\s+AND\s+(.*)', spdx)
    if m:
        return dep5_expression(m.group(1)) + ', and ' + dep5_expression(m.group(2))
    names = []
    for part in re.split(r'\s+(OR|AND)\s+(?!LLVM)', spdx):
        if part in ('OR', 'AND'):
            names.append(part.lower())
        elif part in DEP5:
            names.append(DEP5[part][0])
        else:
            raise SystemExit(f'no DEP-5 name for the licence {part!r} (scripts/crate-licenses.py)')
    return ' '.join(names)


def licence_text(spdx, vendor_dirs):
    """The text of a licence paragraph, indented for DEP-5."""
    _, text = DEP5[spdx]
    if text.startswith('/usr/share/common-licenses/'):
        body = f'On Debian systems, the complete text of this licence is in {text}.'
    elif text.startswith('LICENSE-'):
        for d in vendor_dirs:
            path = os.path.join(d, text)
            if os.path.exists(path):
                with open(path, encoding='utf-8') as f:
                    body = f.read()
                if 'LLVM' in text:
                    body = ('On Debian systems, the complete text of the Apache License 2.0 is in\n'
                            '/usr/share/common-licenses/Apache-2.0. The exception:\n\n'
                            + body[body.index('--- LLVM Exceptions'):])
                break
        else:
            raise SystemExit(f'no vendored crate has {text}')
    else:
        body = text
    return '\n'.join(' ' + line if line.strip() else ' .' for line in body.strip().splitlines())


def debian_copyright():
    meta = metadata()
    vendor = os.path.join(ROOT, 'vendor')
    vendor_dirs = sorted(glob.glob(os.path.join(vendor, '*')))
    used = set()
    out = []
    for p in sorted(meta['packages'], key=lambda p: (p['name'], p['version'])):
        if p['source'] is None:  # this project
            continue
        spdx = p['license'] or ''
        used.update(part for part in re.split(r'\s+(?:OR|AND)\s+(?!LLVM)', spdx.replace('(', '').replace(')', '')))
        authors = [re.sub(r'\s*<[^>]*>', '', a) for a in p['authors']] or [f'the {p["name"]} developers']
        out.append(f'Files: vendor/{p["name"]}-{p["version"]}/*\n'
                   f'Copyright: {authors[0]}\n'
                   + ''.join(f' {a}\n' for a in authors[1:])
                   + f'License: {dep5_expression(spdx)}\n'
                   f'Comment: crate {p["name"]} {p["version"]}, vendored from crates.io\n')
    for spdx in sorted(used, key=lambda s: DEP5[s][0]):
        if spdx == 'LGPL-2.1-or-later':  # the upstream paragraph has it
            continue
        out.append(f'License: {DEP5[spdx][0]}\n{licence_text(spdx, vendor_dirs)}\n')
    sys.stdout.write('\n'.join(out))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--update', action='store_true')
    ap.add_argument('--debian-copyright', action='store_true')
    args = ap.parse_args()
    if args.debian_copyright:
        return debian_copyright()
    return check(args.update)


if __name__ == '__main__':
    sys.exit(main())
