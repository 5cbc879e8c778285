//! Warnings that a flood must not turn into a flood of log lines: at most
//! one per reason per [`INTERVAL`], the next one saying how many were held
//! back meanwhile.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one warning per reason within this long.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// One reason's limit. Process-wide (a `static`), as the log it protects is.
pub(crate) struct Limited {
    /// When the last warning went out, in milliseconds since [`epoch`],
    /// plus one (0: never).
    last: AtomicU64,
    /// Warnings held back since.
    held: AtomicU64,
}

impl Default for Limited {
    fn default() -> Self {
        Self::new()
    }
}

impl Limited {
    pub(crate) const fn new() -> Self {
        Self {
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last one)` when a warning may go out now,
    /// `None` when it is held back (and counted).
    pub(crate) fn allow(&self) -> Option<u64> {
        self.allow_at(now_ms() + 1)
    }

    fn allow_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= INTERVAL.as_millis() as u64;
        // One caller wins the slot; the others of the same instant are held.
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::AcqRel));
        }
        self.held.fetch_add(1, Ordering::AcqRel);
        None
    }
}

fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_interval_then_the_count_held_back() {
        let limit = Limited::new();
        let interval = INTERVAL.as_millis() as u64;
        assert_eq!(limit.allow_at(10), Some(0));
        for at in 11..16 {
            assert_eq!(limit.allow_at(at), None);
        }
        assert_eq!(limit.allow_at(10 + interval - 1), None);
        assert_eq!(limit.allow_at(10 + interval), Some(6));
        assert_eq!(limit.allow_at(11 + interval), None);
    }
}
