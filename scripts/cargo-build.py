#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Builds the Rust cdylib, or one of the package's binaries, for Meson.

Meson cannot drive cargo itself, so this wrapper runs
`cargo rustc --lib --crate-type cdylib` (build.rs sets the SONAME, the linker
and the symbol versions, as for a plain `cargo build`), with full debug info
for this crate only, as distributions build (dh_strip or `meson install
--strip` removes it; the ABI check reads its types), in a target directory of
its own inside the Meson build directory (so it never fights over the lock or
the cache of plain `cargo` runs in <source>/target). No RUSTFLAGS: those
would change every dependency's fingerprint. No --features either: a release
build has the default features only, never the test hooks.
It then copies the library to the versioned name Meson installs, makes the
.so.N and .so symlinks next to it, and writes a depfile (cargo's own list of
the crate's sources, plus Cargo.toml and Cargo.lock) so that Ninja reruns it
exactly when a Rust source changes.

With --bin NAME it runs `cargo rustc --bin NAME` instead (debug info for
the binary's own crate, for the -dbgsym package) and copies the executable
to --output, with the same depfile.
"""

import argparse
import os
import shutil
import subprocess
import sys


def parse_cargo_depfile(path):
    """The prerequisites of cargo's Makefile-style .d file."""
    with open(path, encoding='utf-8') as f:
        text = f.read().replace('\\\n', ' ')
    deps = []
    for line in text.splitlines():
        if ':' not in line:
            continue
        _, _, rest = line.partition(': ')
        # Paths with spaces are escaped as '\ '.
        word = ''
        i = 0
        while i < len(rest):
            c = rest[i]
            if c == '\\' and i + 1 < len(rest) and rest[i + 1] == ' ':
                word += ' '
                i += 2
                continue
            if c == ' ':
                if word:
                    deps.append(word)
                word = ''
            else:
                word += c
            i += 1
        if word:
            deps.append(word)
    return deps


def escape(path):
    return path.replace('\\', '\\\\').replace(' ', '\\ ').replace('$', '$$')


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--cargo', default='cargo')
    ap.add_argument('--source-dir', required=True, help='directory holding Cargo.toml')
    ap.add_argument('--target-dir', required=True)
    ap.add_argument('--profile', choices=['release', 'debug'], default='release')
    ap.add_argument('--crate-name', help='library: e.g. vircgroup_v2_devices')
    ap.add_argument('--bin', help='build this binary of the package instead of the library')
    ap.add_argument('--output', required=True, help='versioned output file')
    ap.add_argument('--links', nargs='*', default=[], help='symlinks to make to --output')
    ap.add_argument('--depfile', required=True)
    args = ap.parse_args()
    if not args.bin and not args.crate_name:
        ap.error('--crate-name is needed to build the library')

    source_dir = os.path.abspath(args.source_dir)
    target_dir = os.path.abspath(args.target_dir)
    manifest = os.path.join(source_dir, 'Cargo.toml')
    if args.bin:
        cmd = [args.cargo, 'rustc', '--locked', '--bin', args.bin]
    else:
        cmd = [args.cargo, 'rustc', '--locked', '--lib', '--crate-type', 'cdylib']
    cmd += ['--manifest-path', manifest, '--target-dir', target_dir]
    if args.profile == 'release':
        cmd.append('--release')
    # cargo's release profile strips debug info unless told otherwise.
    cmd += ['--', '-C', 'debuginfo=2', '-C', 'strip=none']
    # RUSTFLAGS from the environment would silently change what is built;
    # CARGO_BUILD_TARGET would move the output.
    env = dict(os.environ)
    env.pop('CARGO_BUILD_TARGET', None)
    print('+', ' '.join(cmd), flush=True)
    # From the source directory, whatever Meson's build directory: cargo reads
    # .cargo/config.toml (the release tarball's vendored sources) from there.
    rc = subprocess.run(cmd, env=env, cwd=source_dir).returncode
    if rc != 0:
        return rc

    built_dir = os.path.join(target_dir, args.profile)
    if args.bin:
        artefact = args.bin
        built = os.path.join(built_dir, artefact)
    else:
        artefact = f'lib{args.crate_name}'
        built = os.path.join(built_dir, f'{artefact}.so')
    output = os.path.abspath(args.output)
    tmp = output + '.tmp'
    shutil.copy2(built, tmp)
    os.replace(tmp, output)
    # copy2 keeps cargo's mtime, which may be older than the previous output
    # if cargo did not relink: touch so Ninja sees the output as fresh.
    os.utime(output)
    for link in args.links:
        link = os.path.abspath(link)
        target = os.path.basename(output)
        if os.path.islink(link) and os.readlink(link) == target:
            continue
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(target, link)

    deps = set()
    cargo_d = os.path.join(built_dir, f'{artefact}.d')
    if os.path.exists(cargo_d):
        deps.update(parse_cargo_depfile(cargo_d))
    else:
        for root, _, files in os.walk(os.path.join(source_dir, 'src')):
            deps.update(os.path.join(root, f) for f in files if f.endswith('.rs'))
    for extra in ('Cargo.toml', 'Cargo.lock', 'build.rs'):
        p = os.path.join(source_dir, extra)
        if os.path.exists(p):
            deps.add(p)
    with open(args.depfile, 'w', encoding='utf-8') as f:
        f.write(escape(args.output) + ': ' + ' '.join(escape(d) for d in sorted(deps)) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
