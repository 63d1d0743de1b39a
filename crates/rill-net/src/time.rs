//! Monotonic time and timers for everything the node schedules.
//!
//! These are tokio's: under a normal runtime they follow the system's monotonic clock, under
//! `tokio::time::pause` (tests) or a simulator they follow virtual time, so code that only
//! takes time from here runs unchanged in both. Wall-clock time (for object timestamps and
//! metadata versions) is not here but on [`crate::Net::now_us`], because a simulator must
//! also control what "now" means for data.

pub use tokio::time::{
    Instant, Interval, MissedTickBehavior, interval, sleep, sleep_until, timeout,
};
