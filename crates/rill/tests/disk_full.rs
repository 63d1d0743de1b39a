//! A node whose disk fills up: writes are refused with a clear 503, nothing crashes, and what
//! was written before stays readable. The data directory is a small tmpfs mounted for the test
//! (tests run as root); where mounting is not permitted the test fails saying so.

mod common;

// The storage crate's tmpfs helper, shared rather than copied.
#[path = "../../rill-storage/tests/support/tmpfs.rs"]
mod tmpfs;

use common::{TestNode, http};
use tmpfs::Tmpfs;

#[test]
fn a_full_disk_refuses_writes_with_503_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let _mount = Tmpfs::mount(dir.path(), "24m");
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
    // The storage error of kind NoSpace, whichever write met the full disk first: a journal
    // append (the kernel's ENOSPC) or a background flush (the engine then refuses every write).
    assert!(
        body.starts_with("storage: NoSpace: "),
        "the reason is the full disk: {body}"
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
