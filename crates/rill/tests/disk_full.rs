//! A node whose disk fills up: writes are refused with a clear 503, nothing crashes, and what
//! was written before stays readable. The data directory is a small tmpfs mounted for the test
//! (tests run as root); where mounting is not permitted the test says so loudly and stops.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestNode, http};

/// A tmpfs mounted for the duration of the test; unmounted (lazily) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_refuses_writes_with_503_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = Tmpfs::mount(dir.path(), "24m") else {
        // Visible despite output capture: a skip must not pass silently.
        let _ = std::fs::write(
            "/dev/tty",
            "disk_full: SKIPPED (cannot mount a tmpfs here)\n",
        );
        eprintln!("SKIPPED: cannot mount a tmpfs (not root?)");
        return;
    };
    let node = TestNode::start_in(&dir.path().join("data"), &[]);
    let h = http();
    let value = vec![b'x'; 64 * 1024];
    let mut stored = 0;
    let mut refusal = None;
    for i in 0..2000 {
        let resp = h
            .put(&node.url(&format!("/buckets/b/keys/k{i}")))
            .header("Content-Type", "application/octet-stream")
            .send(&value[..])
            .unwrap();
        if resp.status() == 204 {
            stored += 1;
        } else {
            let status = resp.status().as_u16();
            refusal = Some((status, resp.into_body().read_to_string().unwrap()));
            break;
        }
    }
    let (status, body) = refusal.expect("24 MB cannot hold 2000 x 3 replicas of 64 KB");
    assert!(stored > 0, "some writes fit before the disk filled");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("storage"),
        "the reason is the storage: {body}"
    );
    assert!(
        body.contains("NoSpace") || body.contains("disk is full"),
        "and names the full disk: {body}"
    );

    // The node is alive, and what it acknowledged is still there.
    assert_eq!(h.get(&node.url("/ping")).call().unwrap().status(), 200);
    let first = h.get(&node.url("/buckets/b/keys/k0")).call().unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.into_body().read_to_vec().unwrap().len(), value.len());
    println!(
        "disk full after {stored} acknowledged 64 KB writes: {status} {}",
        body.trim()
    );
}
