//! How a delete's `rw`, `r` and `w` combine into the quorums of its two halves.
//!
//! Riak deletes by writing a tombstone (`riak_kv_delete`): unless the client sent the causal
//! context it read, a GET first fetches the current clock, then a PUT stores a tombstone
//! carrying it. Each half runs the ordinary state machine ([`super::GetFsm`],
//! [`super::PutFsm`]); only their quorums are special, because a delete accepts the legacy
//! `rw` ("read-write quorum") alongside `r` and `w`:
//!
//! * the read uses `r` if the client gave `r` **or `w`** (an unspecified `r` then takes the
//!   bucket's default), and `rw` only if it gave neither;
//! * the write uses `w` if the client gave `w`, else `rw`;
//! * `pr`, `pw` and `dw` are passed to their half unchanged.
//!
//! The read's notfound ends the delete with notfound; any other read error ends it with that
//! error. After an acknowledged tombstone write (and when no custom n_val was requested) Riak
//! reads the key again with `r = all` after a short pause, so that the read's final action can
//! reap tombstones every replica holds; that scheduling is the caller's.

/// A delete's quorum values as the client gave them, each already resolved to a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteRequest {
    /// `r`, if the client gave one.
    pub r: Option<u32>,
    /// `w`, if the client gave one.
    pub w: Option<u32>,
    /// `rw`, as given or else the bucket's default.
    pub rw: u32,
    /// The bucket's default `r`, used when the client gave `w` but not `r`.
    pub bucket_r: u32,
}

/// The R of a delete's read and the W of its tombstone write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteQuorums {
    /// R for the GET that fetches the clock to delete.
    pub r: u32,
    /// W for the PUT of the tombstone.
    pub w: u32,
}

impl DeleteQuorums {
    /// Combines `r`, `w` and `rw` the way Riak's delete does.
    pub fn resolve(req: DeleteRequest) -> Self {
        let r = match (req.r, req.w) {
            (Some(r), _) => r,
            (None, Some(_)) => req.bucket_r,
            (None, None) => req.rw,
        };
        DeleteQuorums {
            r,
            w: req.w.unwrap_or(req.rw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(r: Option<u32>, w: Option<u32>) -> DeleteQuorums {
        DeleteQuorums::resolve(DeleteRequest {
            r,
            w,
            rw: 3,
            bucket_r: 2,
        })
    }

    #[test]
    fn rw_alone_sets_both_halves() {
        assert_eq!(resolve(None, None), DeleteQuorums { r: 3, w: 3 });
    }

    #[test]
    fn explicit_r_and_w_override_rw() {
        assert_eq!(resolve(Some(1), Some(1)), DeleteQuorums { r: 1, w: 1 });
    }

    #[test]
    fn r_alone_leaves_the_write_on_rw() {
        assert_eq!(resolve(Some(1), None), DeleteQuorums { r: 1, w: 3 });
    }

    #[test]
    fn w_alone_puts_the_read_on_the_bucket_r_not_rw() {
        assert_eq!(resolve(None, Some(1)), DeleteQuorums { r: 2, w: 1 });
    }
}
