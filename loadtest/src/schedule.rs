//! Pure schedules behind the executors: when each open-model iteration is due (the
//! integral of a piecewise-linear rate) and how many VUs a ramping-vus stage plan wants.
//! Kept free of clocks and tasks so they can be tested exactly.

use crate::config::Stage;
use crate::segment::Segment;

/// One linear piece of a profile: from `t0` for `len` seconds, value goes `v0` → `v1`.
#[derive(Clone, Copy, Debug)]
struct Piece {
    t0: f64,
    len: f64,
    v0: f64,
    v1: f64,
}

/// A piecewise-linear function of time built from k6 stages.
#[derive(Clone, Debug)]
pub struct Profile {
    pieces: Vec<Piece>,
}

impl Profile {
    /// `start` is the value at t=0; each stage moves linearly to its target. `unit` divides
    /// targets (arrival rates are per `timeUnit`; VU targets use 1).
    pub fn from_stages(start: f64, stages: &[Stage], unit_secs: f64) -> Profile {
        let mut t0 = 0.0;
        let mut v0 = start / unit_secs;
        let pieces = stages
            .iter()
            .map(|s| {
                let p = Piece {
                    t0,
                    len: s.duration.0.as_secs_f64(),
                    v0,
                    v1: s.target / unit_secs,
                };
                t0 += p.len;
                v0 = p.v1;
                p
            })
            .collect();
        Profile { pieces }
    }

    pub fn constant(value: f64, secs: f64) -> Profile {
        Profile {
            pieces: vec![Piece {
                t0: 0.0,
                len: secs,
                v0: value,
                v1: value,
            }],
        }
    }

    pub fn end(&self) -> f64 {
        self.pieces.last().map_or(0.0, |p| p.t0 + p.len)
    }

    /// The value at `t` (0 outside the stages).
    pub fn value(&self, t: f64) -> f64 {
        self.pieces
            .iter()
            .find(|p| t >= p.t0 && t < p.t0 + p.len)
            .map_or(0.0, |p| {
                if p.len == 0.0 {
                    p.v1
                } else {
                    p.v0 + (p.v1 - p.v0) * (t - p.t0) / p.len
                }
            })
    }

    /// ∫₀ᵗ value — for a rate profile, the expected number of iterations started by `t`.
    pub fn integral(&self, t: f64) -> f64 {
        self.pieces
            .iter()
            .filter(|p| t > p.t0)
            .map(|p| {
                let tau = (t - p.t0).min(p.len);
                let slope = if p.len == 0.0 {
                    0.0
                } else {
                    (p.v1 - p.v0) / p.len
                };
                p.v0 * tau + slope * tau * tau / 2.0
            })
            .sum()
    }

    /// The intended start (seconds from the executor's start) of every iteration this segment
    /// owns: iteration `k` is due when the integral reaches `k`, so spacing is fractional and
    /// follows the ramp exactly.
    pub fn arrivals(&self, segment: Segment) -> Arrivals<'_> {
        let total = self.integral(self.end());
        // Floating error must not invent or lose the last iteration of an exact integral.
        let total = if (total - total.round()).abs() < 1e-9 {
            total.round()
        } else {
            total.ceil()
        };
        Arrivals {
            profile: self,
            segment,
            next: segment.index,
            total: total as u64,
            piece: 0,
            before: 0.0,
        }
    }

    /// Ramping-vus target at `t`: the stage value rounded down (a VU joins once it is whole).
    pub fn vus_at(&self, t: f64) -> u64 {
        if t >= self.end() {
            return self
                .pieces
                .last()
                .map_or(0, |p| (p.v1 + 1e-9).floor().max(0.0) as u64);
        }
        (self.value(t) + 1e-9).floor().max(0.0) as u64
    }

    /// Earliest time ≥ `t` at which `pred(value)` holds on the profile, scanning each linear
    /// piece for the crossing of `level`; `rising` picks which side of `level` is wanted.
    fn crossing(&self, t: f64, level: f64, rising: bool) -> Option<f64> {
        let wanted = |v: f64| {
            if rising {
                v + 1e-9 >= level
            } else {
                v + 1e-9 < level
            }
        };
        for p in &self.pieces {
            let end = p.t0 + p.len;
            if end <= t {
                continue;
            }
            let from = t.max(p.t0);
            let v_from = if p.len == 0.0 {
                p.v1
            } else {
                p.v0 + (p.v1 - p.v0) * (from - p.t0) / p.len
            };
            if wanted(v_from) {
                return Some(from);
            }
            if wanted(p.v1) && p.v1 != p.v0 {
                let at = p.t0 + (level - p.v0) / (p.v1 - p.v0) * p.len;
                return Some(at.max(from).min(end));
            }
        }
        None
    }

    /// When VU number `j` (0-based) is next wanted, at or after `t`.
    pub fn vu_starts(&self, j: u64, t: f64) -> Option<f64> {
        self.crossing(t, (j + 1) as f64, true)
    }

    /// When VU number `j` stops being wanted, at or after `t` (its ramp-down moment).
    pub fn vu_stops(&self, j: u64, t: f64) -> Option<f64> {
        self.crossing(t, (j + 1) as f64, false)
    }
}

/// Iterator over intended iteration start times, in seconds.
pub struct Arrivals<'a> {
    profile: &'a Profile,
    segment: Segment,
    next: u64,
    total: u64,
    piece: usize,
    before: f64,
}

impl Iterator for Arrivals<'_> {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        let k = self.next;
        if k >= self.total {
            return None;
        }
        self.next += self.segment.count;
        let need_total = k as f64;
        while let Some(p) = self.profile.pieces.get(self.piece) {
            let area = (p.v0 + p.v1) / 2.0 * p.len;
            if need_total < self.before + area - 1e-12
                || self.piece + 1 == self.profile.pieces.len()
            {
                let need = (need_total - self.before).max(0.0);
                let slope = if p.len == 0.0 {
                    0.0
                } else {
                    (p.v1 - p.v0) / p.len
                };
                // Root of v0·τ + slope·τ²/2 = need in the form that stays stable when the
                // slope is tiny or negative.
                let disc = (p.v0 * p.v0 + 2.0 * slope * need).max(0.0);
                let denom = p.v0 + disc.sqrt();
                let tau = if need == 0.0 {
                    0.0
                } else if denom > 0.0 {
                    2.0 * need / denom
                } else {
                    p.len
                };
                return Some(p.t0 + tau.min(p.len));
            }
            self.before += area;
            self.piece += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_stages;

    fn stages(s: &str) -> Vec<Stage> {
        parse_stages(s).expect("stages")
    }

    #[test]
    fn constant_rate_spaces_iterations_evenly() {
        let p = Profile::constant(4.0, 2.0);
        let times: Vec<f64> = p.arrivals(Segment::WHOLE).collect();
        assert_eq!(times.len(), 8);
        for (k, t) in times.iter().enumerate() {
            assert!((t - k as f64 * 0.25).abs() < 1e-9, "iteration {k} at {t}");
        }
    }

    #[test]
    fn fractional_rates_keep_fractional_spacing() {
        // 3 per 2 s is 1.5/s: spacing 0.666… s, not rounded to whole milliseconds per tick.
        let p = Profile::from_stages(3.0, &stages("10s:3"), 2.0);
        let times: Vec<f64> = p.arrivals(Segment::WHOLE).collect();
        assert_eq!(times.len(), 15);
        assert!((times[1] - 2.0 / 3.0).abs() < 1e-9);
        assert!((times[14] - 14.0 * 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn arrivals_integrate_the_ramp() {
        // 10/s → 1000/s over 10 s, then 1000 → 5000/s over 20 s (the peak_test shape).
        let p = Profile::from_stages(10.0, &stages("10s:1000,20s:5000"), 1.0);
        let expected = (10.0 + 1000.0) / 2.0 * 10.0 + (1000.0 + 5000.0) / 2.0 * 20.0;
        let times: Vec<f64> = p.arrivals(Segment::WHOLE).collect();
        assert_eq!(times.len() as f64, expected);
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "monotonic");
        // At every probe, the number started so far is the integral, give or take one.
        for probe in [0.5, 3.0, 9.99, 10.0, 17.3, 29.9] {
            let started = times.iter().filter(|t| **t < probe).count() as f64;
            assert!(
                (started - p.integral(probe)).abs() <= 1.0,
                "at {probe}: {started} vs {}",
                p.integral(probe)
            );
        }
        // Spacing shrinks as the rate rises: local spacing ≈ 1/rate.
        let k = times.iter().position(|t| *t >= 20.0).expect("reaches 20 s");
        let local = times[k + 1] - times[k];
        assert!(
            (local - 1.0 / p.value(20.0)).abs() < 1e-5,
            "spacing {local}"
        );
    }

    #[test]
    fn a_ramp_down_still_integrates() {
        let p = Profile::from_stages(100.0, &stages("10s:0"), 1.0);
        let times: Vec<f64> = p.arrivals(Segment::WHOLE).collect();
        assert_eq!(times.len(), 500);
        assert!(times.iter().all(|t| *t < 10.0));
        let first_half = times.iter().filter(|t| **t < 5.0).count() as i64;
        assert!(
            (first_half - 375).abs() <= 1,
            "{first_half} iterations in the first half"
        );
    }

    #[test]
    fn segments_split_arrivals_exactly_once() {
        let p = Profile::from_stages(0.0, &stages("5s:300,5s:50"), 1.0);
        let whole: Vec<f64> = p.arrivals(Segment::WHOLE).collect();
        let mut joined: Vec<f64> = (0..3)
            .flat_map(|index| p.arrivals(Segment { index, count: 3 }).collect::<Vec<_>>())
            .collect();
        joined.sort_by(f64::total_cmp);
        assert_eq!(joined, whole);
    }

    #[test]
    fn ramping_vus_counts_over_time() {
        // The concert report: startVUs 10, 10 s → 100, hold 30 s, 10 s → 0.
        let p = Profile::from_stages(10.0, &stages("10s:100,30s:100,10s:0"), 1.0);
        assert_eq!(p.vus_at(0.0), 10);
        assert_eq!(p.vus_at(5.0), 55);
        assert_eq!(p.vus_at(10.0), 100);
        assert_eq!(p.vus_at(25.0), 100);
        assert_eq!(p.vus_at(45.0), 50);
        assert_eq!(p.vus_at(49.99), 0);
        assert_eq!(p.vus_at(50.0), 0);
        // VU #54 (the 55th) joins at 5 s and leaves when the ramp-down passes 55 → 54.
        assert!((p.vu_starts(54, 0.0).expect("joins") - 5.0).abs() < 1e-9);
        assert!((p.vu_stops(54, 6.0).expect("leaves") - 44.5).abs() < 1e-9);
        assert_eq!(p.vu_starts(9, 0.0), Some(0.0));
        assert_eq!(p.vu_starts(100, 0.0), None);
        // Integrating VU joins reproduces the count at every moment.
        for t in [1.0, 7.5, 30.0, 44.95, 47.35] {
            let active = (0..120)
                .filter(|j| {
                    p.vu_starts(*j, 0.0).is_some_and(|s| s <= t)
                        && p.vu_stops(*j, 0.0_f64.max(p.vu_starts(*j, 0.0).unwrap_or(0.0)))
                            .is_none_or(|e| e > t)
                })
                .count();
            assert_eq!(active as u64, p.vus_at(t), "at {t}");
        }
    }
}
