//! A small tmpfs mounted for one test: a real disk that fills up. Shared by the storage and the
//! node disk-full tests (the node's includes this file by path).
//!
//! Mounting needs root (CAP_SYS_ADMIN), which the test machines and CI have. Where it is
//! refused the test fails and says why: a disk-full test must never pass without a full disk.
//! To leave these tests out on purpose, skip them by name (`cargo nextest run -E
//! 'not test(full_disk)'`), which the run then reports as skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs; unmounted (lazily) when dropped.
pub struct Tmpfs {
    mountpoint: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `2m`) at the existing directory `at`, or panics with the
    /// reason.
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output();
        let reason = match output {
            Ok(out) if out.status.success() => {
                return Tmpfs {
                    mountpoint: at.to_owned(),
                };
            }
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(err) => format!("cannot run mount: {err}"),
        };
        panic!(
            "this test needs a {size} tmpfs at {} and could not mount it ({reason}); run the \
             tests as root, or skip the disk-full tests by name: -E 'not test(full_disk)'",
            at.display()
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so a straggling file handle cannot keep the mount (and the test dir) alive.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .status();
    }
}
