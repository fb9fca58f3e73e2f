//! Capped exponential backoff with jitter. The first failure after a stable run
//! respawns at once (a long-lived app that died once should come back now); each
//! further consecutive failure doubles the wait, up to `max`.

#[derive(Debug, Clone)]
pub struct Backoff {
    /// Wait after the second consecutive failure, in ms.
    pub min: u64,
    /// Upper bound, in ms.
    pub max: u64,
    /// Jitter as a fraction of the delay, in percent (20 = +-20 %).
    pub jitter_percent: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: 500,
            max: 60_000,
            jitter_percent: 20,
        }
    }
}

impl Backoff {
    /// Delay before attempt number `attempt` (0 = the first retry). `random` is any
    /// u64; jitter spreads restarts of many apps that failed together.
    pub fn delay(&self, attempt: u32, random: u64) -> u64 {
        if attempt == 0 {
            return 0;
        }
        let exp = (attempt - 1).min(32);
        let base = self.min.saturating_mul(1u64 << exp).min(self.max);
        let span = base * self.jitter_percent / 100;
        if span == 0 {
            return base;
        }
        // base - span ..= base + span, never above max.
        (base - span + random % (2 * span + 1)).min(self.max)
    }
}

/// xorshift64*: deterministic, seeded by the shell, good enough for jitter.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_caps() {
        let b = Backoff {
            min: 500,
            max: 8_000,
            jitter_percent: 0,
        };
        let got: Vec<u64> = (0..8).map(|a| b.delay(a, 0)).collect();
        assert_eq!(got, [0, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = Backoff::default();
        let mut rng = Rng::new(7);
        for attempt in 1..20 {
            for _ in 0..200 {
                let d = b.delay(attempt, rng.next());
                let base = (b.min << (attempt - 1).min(32)).min(b.max);
                assert!(
                    d >= base - base / 5 && d <= (base + base / 5).min(b.max),
                    "{attempt}: {d}"
                );
            }
        }
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        assert!(Backoff::default().delay(u32::MAX, u64::MAX) <= 60_000);
    }
}
