//! Per-check cost of this library's device program against libvirt's (the
//! seed's), measured side by side by the kernel itself
//! (`kernel.bpf_stats_enabled`: run time and run count per program).
//!
//! Two scratch cgroups get the same rules (libvirt's default VM set), one
//! with each program. Rounds alternate between them; in each round a shell
//! inside the cgroup opens a device N times. Reported: mean ns per program
//! run for each program and case, and the ratio ours / libvirt's.
//!
//! Run as root: `cargo run --release --example check_cost [ROUNDS] [N]`

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Command;
use vircgroup_v2_devices::cgroup::cgroup2_mount;
use vircgroup_v2_devices::program::libvirt_program;
use vircgroup_v2_devices::rules::{self, Rule, RW};
use vircgroup_v2_devices::{devices, sys};

const RULES: &[(u8, i32, i32)] = &[
    (b'c', 136, -1),
    (b'c', 1, 3),
    (b'c', 1, 5),
    (b'c', 1, 7),
    (b'c', 1, 8),
    (b'c', 1, 9),
    (b'c', 5, 0),
    (b'c', 5, 2),
    (b'c', 10, 232),
];

/// libvirt's setup: its map encoding and program, attached without flags.
fn attach_libvirt(cg: &str) -> Result<OwnedFd, Box<dyn std::error::Error>> {
    let map = sys::map_create(sys::BPF_MAP_TYPE_HASH, 8, 4, 64, "")?;
    for &(t, ma, mi) in RULES {
        sys::map_update(map.as_fd(), rules::get_key(ma, mi), rules::get_perms(RW, t))?;
    }
    let prog = sys::prog_load(
        sys::BPF_PROG_TYPE_CGROUP_DEVICE,
        &libvirt_program(map.as_raw_fd()),
        "GPL",
        "",
    )?;
    let dir = std::fs::File::open(cg)?;
    sys::prog_attach(dir.as_fd(), prog.as_fd(), sys::BPF_CGROUP_DEVICE, 0, None)?;
    Ok(prog)
}

/// N opens of `dev` from a shell inside `cg`.
/// (`true` is not a special builtin: a failed redirection does not end the
/// shell. stderr goes to /dev/null once, before the loop.)
fn opens(cg: &str, dev: &str, n: u32) -> Result<(), String> {
    let script = r#"echo 0 > "$0/cgroup.procs" || exit 1
        exec 2>/dev/null
        i=0; while [ $i -lt "$1" ]; do true < "$2"; i=$((i+1)); done"#;
    let ok = Command::new("sh")
        .args(["-c", script, cg, &n.to_string(), dev])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(()).ok_or(format!("shell in {cg} failed"))
}

fn stats(prog: &OwnedFd) -> (u64, u64) {
    let info = sys::prog_info(prog.as_fd()).expect("prog info");
    (info.run_time_ns, info.run_cnt)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let rounds = args.first().copied().unwrap_or(10);
    let n = args.get(1).copied().unwrap_or(20_000);
    let mount = cgroup2_mount().ok_or("no cgroup2 filesystem is mounted")?;
    let tmp = std::env::temp_dir().join(format!("vcg2-bench-{}", std::process::id()));
    std::fs::create_dir(&tmp)?;
    let theirs = mount.join(format!("vcg2-bench-libvirt-{}", std::process::id()));
    let ours = mount.join(format!("vcg2-bench-ours-{}", std::process::id()));
    std::fs::create_dir(&theirs)?;
    std::fs::create_dir(&ours)?;
    let stats_before = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")?;
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")?;
    let result = bench(
        &tmp,
        theirs.to_str().unwrap(),
        ours.to_str().unwrap(),
        rounds,
        n,
    );
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", stats_before.trim());
    let _ = devices::remove_prog(ours.to_str().unwrap());
    let _ = std::fs::remove_dir(&theirs);
    let _ = std::fs::remove_dir(&ours);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn bench(
    tmp: &std::path::Path,
    theirs: &str,
    ours: &str,
    rounds: u32,
    n: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let libvirt_prog = attach_libvirt(theirs)?;
    devices::deny_all(ours)?;
    for &(t, ma, mi) in RULES {
        devices::allow(ours, &Rule::new(t, ma, mi, RW)?)?;
    }
    let our_prog = {
        let s = devices::state(ours)?;
        // A second fd on the library's program, to read its stats.
        sys::prog_get_fd_by_id(sys::prog_info(unsafe_borrow(s.progfd))?.id)?
    };
    let node = |name: &str, major, minor| -> Result<String, Box<dyn std::error::Error>> {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        let p = tmp.join(name);
        mknod(
            &p,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )?;
        Ok(p.to_str().unwrap().to_string())
    };
    let cases = [
        ("allowed, exact rule (c 1:3)", node("null", 1, 3)?),
        ("allowed, major wildcard (c 136:5)", node("pts", 136, 5)?),
        ("denied, no rule (c 240:1)", node("none", 240, 1)?),
    ];
    println!("{rounds} rounds x {n} opens per case and program, alternating");
    println!(
        "{:<36} {:>14} {:>14} {:>8}",
        "case", "libvirt ns/run", "ours ns/run", "ratio"
    );
    for (name, dev) in &cases {
        let mut sum = [(0u64, 0u64); 2];
        for _ in 0..rounds {
            for (i, (cg, prog)) in [(theirs, &libvirt_prog), (ours, &our_prog)]
                .iter()
                .enumerate()
            {
                let (t0, c0) = stats(prog);
                opens(cg, dev, n)?;
                let (t1, c1) = stats(prog);
                sum[i].0 += t1 - t0;
                sum[i].1 += c1 - c0;
            }
        }
        let per = |(t, c): (u64, u64)| t as f64 / c.max(1) as f64;
        let (l, o) = (per(sum[0]), per(sum[1]));
        println!("{name:<36} {l:>14.1} {o:>14.1} {:>8.3}", o / l);
    }
    Ok(())
}

fn unsafe_borrow(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the library keeps the fd open until remove_prog, after the
    // benchmark.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}
