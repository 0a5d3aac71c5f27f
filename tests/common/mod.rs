//! Shared pieces of the privileged tests: the cgroup2 mount, scratch
//! cgroups that clean up after themselves, device nodes, and the probe.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use vircgroup_v2_devices::cgroup::cgroup2_mount;
use vircgroup_v2_devices::devices;
use vircgroup_v2_devices::rules::Rule;

/// The cgroup2 mount when the test can run (root, cgroup2 mounted); else
/// None after printing why, or a panic under CI=true, where a privileged
/// test that cannot run is a failure.
pub fn privileged() -> Option<PathBuf> {
    let reason = // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        "not running as root"
    } else if let Some(mount) = cgroup2_mount() {
        return Some(mount);
    } else {
        "no cgroup2 filesystem mounted"
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("privileged test cannot run under CI=true: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A cgroup created for one test under the cgroup2 mount; on drop the
/// library forgets it and it is removed, whether the test passed or not.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(mount: &Path) -> Scratch {
        let path = mount.join(unique("vcg2-test"));
        std::fs::create_dir(&path).expect("create scratch cgroup");
        Scratch { path }
    }

    pub fn p(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Runs the probe in this cgroup: one result per access (`ok`,
    /// `EPERM`, `ENXIO`...).
    pub fn probe(&self, accesses: &[String]) -> Vec<String> {
        let out = Command::new(env!("CARGO_BIN_EXE_vcg2-probe"))
            .arg(&self.path)
            .args(accesses)
            .output()
            .expect("run vcg2-probe");
        assert!(
            out.status.success(),
            "vcg2-probe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Whether `access` (as vcg2-probe takes it) is allowed: EPERM is a
    /// denial; success or any other errno (ENXIO: no driver) got past the
    /// cgroup.
    pub fn allowed(&self, access: &str) -> bool {
        self.probe(&[access.to_string()])[0] != "EPERM"
    }

    pub fn list(&self) -> String {
        devices::list(self.p()).expect("list")
    }

    pub fn state(&self) -> devices::State {
        devices::state(self.p()).expect("state")
    }

    /// Ids of the device programs attached to this cgroup.
    pub fn attached(&self) -> Vec<u32> {
        vircgroup_v2_devices::cgroup::Cgroup::open(self.p())
            .and_then(|c| c.attached())
            .expect("query")
            .ids
    }

    /// Probes every access at once; asserts the kernel's answer and, where
    /// a rule is given, that `check` answers the same.
    pub fn expect(&self, cases: &[(String, Option<Rule>, bool)]) {
        let accesses: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
        let results = self.probe(&accesses);
        for ((access, rule, allowed), result) in cases.iter().zip(&results) {
            assert_eq!(
                result != "EPERM",
                *allowed,
                "{access}: kernel said {result}, expected {}; rules:\n{}",
                if *allowed { "allowed" } else { "EPERM" },
                self.list()
            );
            if let Some(rule) = rule {
                assert_eq!(
                    devices::check(self.p(), rule).expect("check"),
                    *allowed,
                    "check({rule}) disagrees with the kernel on {access}"
                );
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = devices::remove_prog(self.p());
        for _ in 0..50 {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => {
                    eprintln!("cannot remove {}: {e}", self.path.display());
                    return;
                }
            }
        }
    }
}

/// A temporary directory of device nodes, removed on drop.
pub struct Nodes {
    pub dir: PathBuf,
}

impl Nodes {
    pub fn new() -> Nodes {
        let dir = std::env::temp_dir().join(unique("vcg2-nodes"));
        std::fs::create_dir(&dir).expect("create node dir");
        Nodes { dir }
    }

    /// Makes node `name` of type `ty` ('c' or 'b') and returns its path.
    pub fn node(&self, name: &str, ty: char, major: u64, minor: u64) -> String {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        let path = self.dir.join(name);
        let kind = if ty == 'b' {
            SFlag::S_IFBLK
        } else {
            SFlag::S_IFCHR
        };
        mknod(
            &path,
            kind,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .expect("mknod");
        path.to_str().unwrap().to_string()
    }

    /// A path for a node the probe will try to create.
    pub fn fresh(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
