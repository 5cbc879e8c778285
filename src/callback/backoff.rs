//! When a failed delivery is tried again: exponential backoff with equal
//! jitter, within the attempts and the time a delivery is given.

use std::time::Duration;

use super::config::Callbacks;

/// The default wait after the first failed attempt
/// ([`Callbacks::first_retry`]). The specification's example schedule
/// (Svix's) retries after 5 s first: most failures are a blip (a deploy, a
/// restart) that 5 s outlasts.
pub(crate) const BASE: Duration = Duration::from_secs(5);

/// The longest wait between two attempts. The example schedule stretches to
/// hours apart; an hour keeps a receiver that comes back from an outage
/// from waiting more than an hour for what it missed, at a cost of at most
/// one request an hour per pending delivery.
pub(crate) const CAP: Duration = Duration::from_secs(60 * 60);

/// The nominal wait after `attempts_made` attempts (1 or more), the first
/// wait being `first`: `first · 2^(attempts_made − 1)`, at most [`CAP`].
pub(crate) fn nominal_wait(first: Duration, attempts_made: u32) -> Duration {
    let doublings = attempts_made.saturating_sub(1).min(31);
    first.checked_mul(1 << doublings).map_or(CAP, |wait| wait.min(CAP))
}

impl Callbacks {
    /// When (in ms since the Unix epoch) to make the next attempt of a
    /// delivery whose `attempts_made` attempts all failed, the first at
    /// `first_attempt_ms`; `None` when it should stop: `max_attempts` are
    /// made, or the next would fall after `retry_for` from the first.
    ///
    /// The wait is drawn between half and all of the nominal wait ("equal
    /// jitter"): replicas that failed together spread out, and none retries
    /// sooner than half the schedule (full jitter could retry at once).
    pub(crate) fn next_attempt_at(&self, attempts_made: u32, first_attempt_ms: u64, now_ms: u64) -> Option<u64> {
        if attempts_made >= self.attempts() {
            return None;
        }
        let nominal = u64::try_from(nominal_wait(self.first_wait(), attempts_made).as_millis()).unwrap_or(u64::MAX);
        let half = nominal / 2;
        let wait = half + fastrand::u64(0..=nominal - half);
        let next = now_ms.saturating_add(wait);
        let window = u64::try_from(self.retry_window().as_millis()).unwrap_or(u64::MAX);
        let end = first_attempt_ms.saturating_add(window);
        (next <= end).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callback::WebhookSecret;

    const DAY_MS: u64 = 24 * 60 * 60 * 1000;

    fn callbacks() -> Callbacks {
        Callbacks::new(WebhookSecret::random())
    }

    #[test]
    fn nominal_waits_double_up_to_the_cap() {
        assert_eq!(nominal_wait(BASE, 1), Duration::from_secs(5));
        assert_eq!(nominal_wait(BASE, 2), Duration::from_secs(10));
        assert_eq!(nominal_wait(BASE, 3), Duration::from_secs(20));
        assert_eq!(nominal_wait(BASE, 11), Duration::from_secs(5 * 1024).min(CAP));
        assert_eq!(nominal_wait(BASE, u32::MAX), CAP);
        let mut previous = Duration::ZERO;
        for attempts in 1..100 {
            let wait = nominal_wait(BASE, attempts);
            assert!(wait >= previous && wait <= CAP, "{attempts}: {wait:?}");
            previous = wait;
        }
        assert_eq!(previous, CAP);
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_wait() {
        let callbacks = callbacks();
        let now = 1_000_000;
        for attempts in 1..25 {
            let nominal = nominal_wait(BASE, attempts).as_millis() as u64;
            let mut seen_low = false;
            let mut seen_high = false;
            for _ in 0..200 {
                let next = callbacks.next_attempt_at(attempts, now, now).unwrap();
                let wait = next - now;
                assert!(
                    wait >= nominal / 2 && wait <= nominal,
                    "{attempts}: {wait} of {nominal}"
                );
                seen_low |= wait < nominal * 3 / 4;
                seen_high |= wait >= nominal * 3 / 4;
            }
            assert!(seen_low && seen_high, "{attempts}: no spread");
        }
    }

    #[test]
    fn the_first_retry_sets_the_schedule() {
        let callbacks = callbacks().first_retry(Duration::from_millis(200));
        for (attempts, nominal) in [(1, 200), (2, 400), (3, 800)] {
            for _ in 0..50 {
                let wait = callbacks.next_attempt_at(attempts, 0, 0).unwrap();
                assert!(wait >= nominal / 2 && wait <= nominal, "{attempts}: {wait}");
            }
        }
    }

    #[test]
    fn it_stops_at_max_attempts() {
        let callbacks = callbacks().max_attempts(3);
        assert!(callbacks.next_attempt_at(1, 0, 0).is_some());
        assert!(callbacks.next_attempt_at(2, 0, 0).is_some());
        assert_eq!(callbacks.next_attempt_at(3, 0, 0), None);
        assert_eq!(callbacks.next_attempt_at(4, 0, 0), None);
        // Zero means one attempt, never a retry.
        assert_eq!(self::callbacks().max_attempts(0).next_attempt_at(1, 0, 0), None);
    }

    #[test]
    fn it_stops_at_retry_for() {
        let callbacks = callbacks().max_attempts(u32::MAX);
        let first = 5_000;
        // An hour's wait from 30 min before the end would end past it.
        let late = first + DAY_MS - 30 * 60 * 1000;
        assert_eq!(callbacks.next_attempt_at(20, first, late), None);
        // Early on, a retry within the day is given.
        let next = callbacks.next_attempt_at(20, first, first + 1000).unwrap();
        assert!(next <= first + DAY_MS);
        let short = self::callbacks().retry_for(Duration::from_secs(7));
        // 5 s nominal: at most 5 s, within 7 s; 20 s nominal: at least 10 s.
        assert!(short.next_attempt_at(1, 0, 0).is_some());
        assert_eq!(short.next_attempt_at(3, 0, 0), None);
    }

    #[test]
    fn the_default_schedule_spans_8_to_16_hours() {
        let callbacks = callbacks();
        let (mut now, mut attempts) = (0u64, 1u32);
        while let Some(next) = callbacks.next_attempt_at(attempts, 0, now) {
            assert!(next > now);
            now = next;
            attempts += 1;
        }
        assert_eq!(attempts, 25);
        // Nominal: 5 s doubling to 2560 s (5115 s in all), then 14 hours
        // capped; equal jitter makes it between half and all of that.
        let nominal = (5115 + 14 * 3600) * 1000;
        assert!(now >= nominal / 2 && now <= nominal, "{now} ms");
    }
}
