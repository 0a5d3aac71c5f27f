// SPDX-License-Identifier: LGPL-2.1-or-later
//! Test helper: moves itself into a cgroup, then tries each access and
//! prints one line per access: `ok` or the errno name (`EPERM`, `ENXIO`...).
//!
//! Usage: `vcg2-probe [--join DIR]... [--thread DIR] CGROUP_DIR ACCESS...`
//! where ACCESS is `r:PATH`, `w:PATH`, `rw:PATH` (open with O_RDONLY /
//! O_WRONLY / O_RDWR), `f:PATH` (access(F_OK)), `ar:PATH`, `aw:PATH`,
//! `arw:PATH` (access(2) with R_OK, W_OK, both: the device cgroup check
//! without opening the node) or `mknod:c|b:MAJOR:MINOR:PATH`. Each `--join`
//! names a cgroup of another hierarchy to join first (a process is in one
//! cgroup of each, and the kernel checks a device access in the cgroup v1
//! devices hierarchy and in cgroup v2). `--thread DIR`: after joining
//! CGROUP_DIR (a domain cgroup), the probe's thread moves into the threaded
//! cgroup DIR below it (its `cgroup.threads`), as QEMU's threads sit in
//! libvirt's `emulator` and `vcpuN` cgroups.
//!
//! Loop mode, `vcg2-probe CGROUP_DIR loop:MS ACCESS...`: tries the accesses
//! over and over until stdin is closed or MS milliseconds have passed,
//! prints `ready` once every access was tried once, and at the end one
//! line per access, `ACCESS RESULT=COUNT...` (results sorted), then
//! `iterations N`. A test runs it with a piped stdin while it changes the
//! cgroup's program, and closes the pipe to stop it.
//!
//! It is a separate program so that tests never fork a multi-threaded
//! process without exec.
#![forbid(unsafe_code)]

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{access, AccessFlags};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Read;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn open(path: &str, flags: OFlag) -> nix::Result<()> {
    let mut o = OpenOptions::new();
    match flags {
        OFlag::O_RDONLY => o.read(true),
        OFlag::O_WRONLY => o.write(true),
        _ => o.read(true).write(true),
    };
    o.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map(drop)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

fn probe(spec: &str) -> Result<nix::Result<()>, String> {
    let (kind, rest) = spec.split_once(':').ok_or(format!("bad access {spec:?}"))?;
    Ok(match kind {
        "r" => open(rest, OFlag::O_RDONLY),
        "w" => open(rest, OFlag::O_WRONLY),
        "rw" => open(rest, OFlag::O_RDWR),
        "f" => access(rest, AccessFlags::F_OK),
        "ar" => access(rest, AccessFlags::R_OK),
        "aw" => access(rest, AccessFlags::W_OK),
        "arw" => access(rest, AccessFlags::R_OK | AccessFlags::W_OK),
        "mknod" => {
            let parts: Vec<&str> = rest.splitn(4, ':').collect();
            let [ty, major, minor, path] = parts[..] else {
                return Err(format!("bad mknod access {spec:?}"));
            };
            let kind = if ty == "b" {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFCHR
            };
            let num = |s: &str| s.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
            let dev = makedev(num(major)?, num(minor)?);
            let r = mknod(path, kind, Mode::from_bits_truncate(0o600), dev);
            if r.is_ok() {
                let _ = std::fs::remove_file(path);
            }
            r
        }
        _ => return Err(format!("unknown access kind {kind:?}")),
    })
}

fn result_name(r: nix::Result<()>) -> String {
    match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{e:?}"),
    }
}

/// Loop mode: counts of each result per access.
fn run_loop(ms: &str, specs: &[&str]) -> Result<(), String> {
    let ms: u64 = ms.parse().map_err(|e| format!("loop:{ms}: {e}"))?;
    let deadline = Instant::now() + Duration::from_millis(ms);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        flag.store(true, Ordering::SeqCst);
    });
    let mut counts: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); specs.len()];
    let mut out = std::io::stdout().lock();
    let mut iterations = 0u64;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        for (spec, count) in specs.iter().zip(&mut counts) {
            *count.entry(result_name(probe(spec)?)).or_default() += 1;
        }
        if iterations == 0 {
            writeln!(out, "ready")
                .and_then(|()| out.flush())
                .expect("stdout");
        }
        iterations += 1;
    }
    for (spec, count) in specs.iter().zip(&counts) {
        let results: Vec<String> = count.iter().map(|(r, n)| format!("{r}={n}")).collect();
        writeln!(out, "{spec} {}", results.join(" ")).expect("stdout");
    }
    writeln!(out, "iterations {iterations}").expect("stdout");
    Ok(())
}

fn main() -> ExitCode {
    // Directories are bytes (a cgroup's name need not be UTF-8); the
    // accesses are text.
    let mut args: &[std::ffi::OsString] = &std::env::args_os().skip(1).collect::<Vec<_>>();
    let mut cgroups = Vec::new();
    while let [flag, dir, rest @ ..] = args {
        if flag != "--join" {
            break;
        }
        cgroups.push(dir);
        args = rest;
    }
    let mut thread = None;
    if let [flag, dir, rest @ ..] = args {
        if flag == "--thread" {
            thread = Some(dir);
            args = rest;
        }
    }
    let Some((cgroup, specs)) = args.split_first() else {
        eprintln!("usage: vcg2-probe [--join DIR]... [--thread DIR] CGROUP_DIR ACCESS...");
        return ExitCode::from(2);
    };
    let Some(specs) = specs.iter().map(|s| s.to_str()).collect::<Option<Vec<_>>>() else {
        eprintln!("vcg2-probe: an ACCESS is not UTF-8");
        return ExitCode::from(2);
    };
    cgroups.push(cgroup);
    for cgroup in cgroups {
        let procs = std::path::Path::new(cgroup).join("cgroup.procs");
        if let Err(e) = std::fs::write(&procs, "0") {
            eprintln!("vcg2-probe: cannot join {}: {e}", procs.display());
            return ExitCode::from(2);
        }
    }
    // "0" names the writing thread: the probe has only this one here.
    if let Some(dir) = thread {
        let threads = std::path::Path::new(&dir).join("cgroup.threads");
        if let Err(e) = std::fs::write(&threads, "0") {
            eprintln!(
                "vcg2-probe: cannot move the thread into {}: {e}",
                threads.display()
            );
            return ExitCode::from(2);
        }
    }
    if let Some(ms) = specs.first().and_then(|s| s.strip_prefix("loop:")) {
        return match run_loop(ms, &specs[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("vcg2-probe: {msg}");
                ExitCode::from(2)
            }
        };
    }
    let mut out = std::io::stdout().lock();
    for spec in specs {
        match probe(spec) {
            Ok(Ok(())) => writeln!(out, "ok"),
            Ok(Err(e)) => writeln!(out, "{e:?}"),
            Err(msg) => {
                eprintln!("vcg2-probe: {msg}");
                return ExitCode::from(2);
            }
        }
        .expect("stdout");
    }
    ExitCode::SUCCESS
}
