#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every source file of the project carries an SPDX licence line in its first
# ten lines. Without an option, adds `SPDX-License-Identifier:
# LGPL-2.1-or-later` to each file that has none, in its comment syntax,
# after a #! line; files that have one are left alone, so running it again
# changes nothing. With --check, changes nothing and fails naming the files
# without one (the `spdx` lint test).
#
# Source files: *.rs *.c *.h *.py *.sh *.toml *.supp, meson.build,
# meson_options.txt, run-tests.sh, .ci/run and packaging/debian/rules; not
# vendor/, data (golden listings, the ABI baseline, abi/soversion), Markdown,
# or Debian's other control files (debian/copyright covers them).
#
# Usage: scripts/spdx-headers.sh [--check] [SOURCE_DIR]
set -eu

check=
if [ "${1:-}" = --check ]; then
    check=1
    shift
fi
cd "${1:-$(dirname "$0")/..}"
id='SPDX-License-Identifier: LGPL-2.1-or-later'

files() {
    if [ -d .git ] || [ -f .git ]; then
        git ls-files
    else
        find . \( -name vendor -o -name target -o -name 'build*' -o -name .git \
            -o -name obj-\* -o -name subprojects \) -prune -o -type f -print | sed 's|^\./||'
    fi
}

comment_for() {
    case $1 in
    *.rs) echo "// $id" ;;
    *.c | *.h) echo "/* $id */" ;;
    *.py | *.sh | *.toml | *.supp | meson.build | */meson.build | meson_options.txt | \
    .ci/run | packaging/debian/rules) echo "# $id" ;;
    esac
}

missing=0
for f in $(files); do
    [ -f "$f" ] || continue
    line=$(comment_for "$f")
    [ -n "$line" ] || continue
    head -n 10 "$f" | grep -q 'SPDX-License-Identifier:' && continue
    if [ -n "$check" ]; then
        echo "no SPDX-License-Identifier line: $f" >&2
        missing=$((missing + 1))
        continue
    fi
    awk -v line="$line" 'NR == 1 && /^#!/ { print; print line; next }
                         NR == 1 { print line } { print }' "$f" >"$f.spdx"
    cat "$f.spdx" >"$f" # keeps the file's mode
    rm "$f.spdx"
    echo "added: $f"
done
if [ -n "$check" ]; then
    if [ $missing -gt 0 ]; then
        echo "$missing files without an SPDX line: scripts/spdx-headers.sh adds them" >&2
        exit 1
    fi
    echo "spdx: every source file has an SPDX-License-Identifier line"
fi
