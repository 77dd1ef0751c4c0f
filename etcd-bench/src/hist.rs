//! The contract's constant-memory latency histogram (log-linear, 64 sub-buckets per power of
//! two, values in ns capped at 2^40-1), shared by all workers.

use std::sync::atomic::{AtomicU64, Ordering};

const BUCKETS: usize = 2240;

/// Latency histogram with atomic buckets.
pub struct Hist {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist::new()
    }
}

impl Hist {
    /// An empty histogram.
    pub fn new() -> Hist {
        Hist {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    fn index(v: u64) -> usize {
        let v = v.min((1u64 << 40) - 1);
        if v < 128 {
            v as usize
        } else {
            let msb = 63 - u64::from(v.leading_zeros());
            let shift = msb - 6;
            ((shift + 1) * 64 + ((v >> shift) - 64)) as usize
        }
    }

    fn value(idx: usize) -> u64 {
        let i = idx as u64;
        if i < 128 {
            i
        } else {
            let shift = i / 64 - 1;
            (((i % 64) + 64) << shift) + (1u64 << shift) / 2
        }
    }

    /// Records one latency in nanoseconds.
    #[inline]
    pub fn record(&self, ns: u64) {
        self.buckets[Self::index(ns)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(ns, Ordering::Relaxed);
        self.max.fetch_max(ns, Ordering::Relaxed);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// `{p50, p90, p99, p999, max, mean}` in µs, or `null` when empty.
    pub fn json(&self) -> String {
        let n = self.count();
        if n == 0 {
            return "null".into();
        }
        let max = self.max.load(Ordering::Relaxed);
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let pct = |q: f64| {
            let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
            let mut cum = 0;
            for (i, c) in counts.iter().enumerate() {
                cum += c;
                if cum >= rank {
                    return Self::value(i).min(max) as f64 / 1000.0;
                }
            }
            max as f64 / 1000.0
        };
        format!(
            "{{\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"p999\":{:.1},\"max\":{:.1},\"mean\":{:.1}}}",
            pct(0.50),
            pct(0.90),
            pct(0.99),
            pct(0.999),
            max as f64 / 1000.0,
            self.sum.load(Ordering::Relaxed) as f64 / n as f64 / 1000.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Hist;

    #[test]
    fn buckets_round_trip_within_one_percent() {
        for v in [0u64, 1, 127, 128, 129, 1000, 123_456, 9_999_999, 1 << 39] {
            let back = Hist::value(Hist::index(v));
            assert!(
                back.abs_diff(v) as f64 <= v as f64 * 0.008 + 1.0,
                "{v} -> {back}"
            );
        }
        assert_eq!(Hist::index((1 << 40) - 1), 2239);
    }
}
