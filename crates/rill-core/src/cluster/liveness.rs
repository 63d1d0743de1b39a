//! A phi-accrual failure detector (Hayashibara et al.), one per peer.
//!
//! Instead of a fixed "no heartbeat for T seconds" rule, it learns the distribution of the gaps
//! between a peer's heartbeats and reports *phi*: the confidence, on a log10 scale, that the
//! peer is gone given how long it has been silent. A peer on a jittery link gets more slack
//! than one whose heartbeats are regular. Two bounds make it predictable for operators: a
//! floor on the learned deviation (so a perfectly regular peer is not declared dead after one
//! late beat) and a hard ceiling (a peer silent for `max_silence` is down whatever the
//! statistics say) — that ceiling is what the "seen unreachable within 5 s" promise rests on.
//!
//! Time is passed in as milliseconds of a monotonic clock; the detector reads no clock itself.

use std::collections::VecDeque;

/// Tuning of the detector.
#[derive(Clone, Copy, Debug)]
pub struct DetectorConfig {
    /// Phi above which the peer is considered down (Akka and Cassandra use 8).
    pub threshold: f64,
    /// Gaps remembered.
    pub window: usize,
    /// Smallest standard deviation assumed, in ms.
    pub min_std_dev_ms: f64,
    /// Silence after which the peer is down regardless, in ms.
    pub max_silence_ms: u64,
    /// The gap assumed before any has been measured (the heartbeat interval), in ms.
    pub first_gap_ms: u64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            threshold: 8.0,
            window: 100,
            min_std_dev_ms: 250.0,
            max_silence_ms: 4000,
            first_gap_ms: 1000,
        }
    }
}

/// Heartbeat history of one peer.
#[derive(Clone, Debug)]
pub struct Detector {
    config: DetectorConfig,
    gaps: VecDeque<u64>,
    last: Option<u64>,
}

impl Detector {
    pub fn new(config: DetectorConfig) -> Detector {
        Detector {
            config,
            gaps: VecDeque::with_capacity(config.window),
            last: None,
        }
    }

    /// A heartbeat (any sign of life) arrived at `now_ms`.
    pub fn heartbeat(&mut self, now_ms: u64) {
        if let Some(last) = self.last {
            if now_ms <= last {
                return;
            }
            if self.gaps.len() == self.config.window {
                self.gaps.pop_front();
            }
            self.gaps.push_back(now_ms - last);
        }
        self.last = Some(now_ms);
    }

    /// Forgets the history (the peer went away for good, or came back as a new process).
    pub fn reset(&mut self) {
        self.gaps.clear();
        self.last = None;
    }

    /// When the last heartbeat arrived.
    pub fn last_heartbeat(&self) -> Option<u64> {
        self.last
    }

    /// Suspicion that the peer is down, at `now_ms`; infinite when it never answered.
    pub fn phi(&self, now_ms: u64) -> f64 {
        let Some(last) = self.last else {
            return f64::INFINITY;
        };
        let elapsed = now_ms.saturating_sub(last) as f64;
        let (mean, std_dev) = self.stats();
        // Logistic approximation of the normal CDF's tail (as Akka's detector uses):
        // P(gap > elapsed) ~= 1 / (1 + e^y) for large y; phi = -log10 of it.
        let y = (elapsed - mean) / std_dev;
        let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
        if elapsed > mean {
            -(e / (1.0 + e)).log10()
        } else {
            -(1.0 - 1.0 / (1.0 + e)).log10()
        }
    }

    /// Whether the peer is considered up at `now_ms`.
    pub fn is_up(&self, now_ms: u64) -> bool {
        let Some(last) = self.last else {
            return false;
        };
        now_ms.saturating_sub(last) < self.config.max_silence_ms
            && self.phi(now_ms) < self.config.threshold
    }

    fn stats(&self) -> (f64, f64) {
        if self.gaps.is_empty() {
            let first = self.config.first_gap_ms as f64;
            return (first, (first / 4.0).max(self.config.min_std_dev_ms));
        }
        let n = self.gaps.len() as f64;
        let mean = self.gaps.iter().sum::<u64>() as f64 / n;
        let var = self
            .gaps
            .iter()
            .map(|&g| (g as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var.sqrt().max(self.config.min_std_dev_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beating(every_ms: u64, beats: u64) -> Detector {
        let mut d = Detector::new(DetectorConfig::default());
        for i in 0..beats {
            d.heartbeat(i * every_ms);
        }
        d
    }

    #[test]
    fn a_peer_never_heard_from_is_down() {
        let d = Detector::new(DetectorConfig::default());
        assert!(!d.is_up(0));
        assert!(d.phi(0).is_infinite());
    }

    #[test]
    fn regular_heartbeats_keep_a_peer_up_and_silence_brings_it_down_within_the_ceiling() {
        let d = beating(1000, 30);
        let last = 29 * 1000;
        assert!(d.is_up(last + 1000));
        assert!(d.is_up(last + 1500));
        // Phi grows with silence.
        assert!(d.phi(last + 2500) > d.phi(last + 1500));
        let down_at = (last..last + 10_000)
            .step_by(100)
            .find(|&t| !d.is_up(t))
            .unwrap();
        assert!(down_at - last <= 4000, "down after {} ms", down_at - last);
        assert!(down_at - last >= 1500, "too eager: {} ms", down_at - last);
    }

    #[test]
    fn jittery_heartbeats_get_more_slack_than_regular_ones() {
        let regular = beating(1000, 50);
        let mut jittery = Detector::new(DetectorConfig::default());
        let mut t = 0;
        for i in 0..50 {
            t += if i % 2 == 0 { 400 } else { 1600 };
            jittery.heartbeat(t);
        }
        let silence = 2200;
        assert!(jittery.phi(t + silence) < regular.phi(49 * 1000 + silence));
    }

    #[test]
    fn a_returning_peer_is_up_again_at_its_first_heartbeat() {
        let mut d = beating(1000, 10);
        assert!(!d.is_up(60_000));
        d.heartbeat(60_000);
        assert!(d.is_up(60_100));
    }

    #[test]
    fn out_of_order_times_are_ignored() {
        let mut d = beating(1000, 5);
        d.heartbeat(100);
        assert_eq!(d.last_heartbeat(), Some(4000));
        d.reset();
        assert!(!d.is_up(5000));
    }
}
