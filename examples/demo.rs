//! The library in one minute, as root: a scratch cgroup gets libvirt's
//! default device policy for a VM, a shell inside it tries some devices,
//! then everything is cleaned up.
//!
//! Run: `cargo run --example demo`

use std::process::Command;
use vircgroup_v2_devices::cgroup::cgroup2_mount;
use vircgroup_v2_devices::devices;
use vircgroup_v2_devices::rules::{Rule, RW};

/// A shell moved into the cgroup tries to read each path.
fn try_devices(cgroup: &str, paths: &[&str]) {
    let script = r#"echo 0 > "$0/cgroup.procs" || exit 1
        for dev in "$@"; do
            if err=$(exec 2>&1; : < "$dev"); then echo "  $dev: allowed"
            else echo "  $dev: ${err##*: }"; fi
        done"#;
    let status = Command::new("sh")
        .args(["-c", script, cgroup])
        .args(paths)
        .status()
        .expect("run sh");
    assert!(status.success());
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mount = cgroup2_mount().ok_or("no cgroup2 filesystem is mounted")?;
    let dir = mount.join(format!("vcg2-demo-{}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| format!("{}: {e} (run as root)", dir.display()))?;
    let cg = dir.to_str().ok_or("path")?.to_string();
    let result = run(&cg);
    devices::remove_prog(&cg)?;
    std::fs::remove_dir(&dir)?;
    result
}

fn run(cg: &str) -> Result<(), Box<dyn std::error::Error>> {
    let devs = ["/dev/null", "/dev/zero", "/dev/full", "/dev/urandom"];
    println!("scratch cgroup {cg}");
    println!("no program yet, so everything is allowed:");
    try_devices(cg, &devs);

    // What libvirt does when a VM starts: deny everything, then allow the
    // pseudo-terminals and a few harmless nodes.
    devices::deny_all(cg)?;
    devices::allow(cg, &Rule::new(b'c', 136, -1, RW)?)?;
    for dev in ["/dev/null", "/dev/urandom"] {
        if let Some(rule) = devices::device_rule(dev, RW)? {
            devices::allow(cg, &rule)?;
        }
    }
    println!("\nrules (devices.list):\n{}", devices::list(cg)?.trim_end());
    let s = devices::state(cg)?;
    println!(
        "state: mapfd {} progfd {} count {} max {}",
        s.mapfd, s.progfd, s.count, s.max
    );
    println!("\nfrom inside the cgroup:");
    try_devices(cg, &devs);
    Ok(())
}
