//! What the decision remembers between calls, and its status form ([`DecisionMemory`]) so a
//! restarted operator honours the windows. Recommendations are kept as runs (a new entry only
//! when the value changes), changes only when applied, failed reads counted up to the
//! threshold: a steady campaign leaves the status unchanged, so persisting adds no writes.
//! The signal samples of the KPA windows stay in memory only (like the p95 window): after a
//! restart the averages start afresh.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{DecisionMemory, TimedChange, TimedReplicas};

use super::{Latency, Millis, Signals};

/// Most entries kept per list (the status schema's `maxItems`).
pub const MAX_ENTRIES: usize = 200;

/// One read of the signals that succeeded, for the KPA windows.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    at: Millis,
    waiting: Option<u64>,
    /// `None` when the read was Idle or Unavailable.
    p95_ms: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    samples: VecDeque<Sample>,
    /// Raw recommendations as runs: (since, replicas) until the next entry's `since`.
    recommendations: VecDeque<(Millis, u32)>,
    /// Changes this decision's caller applied (time, signed delta), for the step policies.
    changes: VecDeque<(Millis, i64)>,
    /// Last time the panic window saw a burst; panic lasts a stable window after it.
    pub(super) last_burst: Option<Millis>,
    /// Consecutive reads in which every signal failed, counted up to the threshold.
    pub(super) failed_reads: u32,
}

impl History {
    /// Records that the caller applied `from → to` at `now` (only applied changes count
    /// against the step policies).
    pub fn record_change(&mut self, now: Millis, from: u32, to: u32) {
        if from != to {
            self.changes
                .push_back((now, i64::from(to) - i64::from(from)));
            while self.changes.len() > MAX_ENTRIES {
                // Merge the two oldest at the later time: they stay in the periods longer,
                // which only slows the steps.
                let (_, d0) = self.changes.pop_front().unwrap_or_default();
                if let Some(next) = self.changes.front_mut() {
                    next.1 += d0;
                }
            }
        }
    }

    /// Adds this read to the KPA windows (kept for `keep_ms`).
    pub(super) fn observe(&mut self, now: Millis, s: &Signals, keep_ms: u64) {
        self.samples.retain(|x| now.saturating_sub(x.at) < keep_ms);
        let p95_ms = match s.latency {
            Latency::P95Ms(ms) => Some(ms),
            Latency::Idle | Latency::Unavailable => None,
        };
        self.samples.push_back(Sample {
            at: now,
            waiting: s.waiting,
            p95_ms,
        });
    }

    /// The signals averaged over the samples younger than `window_ms`. A signal unavailable
    /// now stays unavailable (an outage is not hidden by older reads); latency is Idle only
    /// when no sample in the window had a p95.
    pub(super) fn average(&self, now: Millis, window_ms: u64, s: &Signals) -> Signals {
        let inside = || {
            self.samples
                .iter()
                .filter(move |x| now.saturating_sub(x.at) < window_ms.max(1))
        };
        let mean = |vals: Vec<f64>| {
            (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
        };
        let waiting = s.waiting.and_then(|_| {
            mean(
                inside()
                    .filter_map(|x| x.waiting)
                    .map(|w| w as f64)
                    .collect(),
            )
            .map(|m| m.round() as u64)
        });
        let latency = match s.latency {
            Latency::Unavailable => Latency::Unavailable,
            _ => mean(inside().filter_map(|x| x.p95_ms).collect())
                .map_or(Latency::Idle, Latency::P95Ms),
        };
        // Triggers pass through as read (KEDA reads its scalers as they are).
        let mut out = *s;
        out.waiting = waiting.or(s.waiting);
        out.latency = latency;
        out
    }

    /// Remembers `raw` as the recommendation at `now`, keeping what `keep_ms` windows need.
    pub(super) fn push_recommendation(&mut self, now: Millis, raw: u32, keep_ms: u64) {
        while self.recommendations.len() > 1
            && self
                .recommendations
                .get(1)
                .is_some_and(|(next, _)| now.saturating_sub(*next) >= keep_ms)
        {
            self.recommendations.pop_front();
        }
        if self.recommendations.back().map(|r| r.1) != Some(raw) {
            self.recommendations.push_back((now, raw));
        }
        while self.recommendations.len() > MAX_ENTRIES {
            // Merge the two oldest runs into one with the larger value: the scale-down
            // window may only hold longer for it.
            let (since, r0) = self.recommendations.pop_front().unwrap_or_default();
            if let Some(next) = self.recommendations.front_mut() {
                *next = (since, next.1.max(r0));
            }
        }
    }

    /// Recommendations of the runs that had a sample within `window_ms` of `now` (a run
    /// lasts until the next one starts; the last one until now).
    pub(super) fn recommendations_within(
        &self,
        now: Millis,
        window_ms: u64,
    ) -> impl Iterator<Item = u32> + '_ {
        let ends = self
            .recommendations
            .iter()
            .skip(1)
            .map(|(since, _)| Some(*since))
            .chain([None]);
        self.recommendations
            .iter()
            .zip(ends)
            .filter(move |(_, end)| end.is_none_or(|e| now.saturating_sub(e) < window_ms))
            .map(|((_, r), _)| *r)
    }

    /// Drops changes older than the longest period.
    pub(super) fn prune_changes(&mut self, now: Millis, keep_ms: u64) {
        self.changes
            .retain(|(t, _)| now.saturating_sub(*t) < keep_ms);
    }

    /// Net change applied within `period_ms` of `now`.
    pub(super) fn changed_within(&self, now: Millis, period_ms: u64) -> i64 {
        self.changes
            .iter()
            .filter(|(t, _)| now.saturating_sub(*t) < period_ms)
            .map(|(_, d)| *d)
            .sum()
    }

    /// The status form.
    pub fn to_status(&self) -> DecisionMemory {
        DecisionMemory {
            recommendations: self
                .recommendations
                .iter()
                .map(|(t, r)| TimedReplicas {
                    since: time(*t),
                    replicas: i32::try_from(*r).unwrap_or(i32::MAX),
                })
                .collect(),
            changes: self
                .changes
                .iter()
                .map(|(t, d)| TimedChange {
                    at: time(*t),
                    delta: i32::try_from(*d).unwrap_or(if *d < 0 { i32::MIN } else { i32::MAX }),
                })
                .collect(),
            last_burst: self.last_burst.map(time),
            failed_reads: i32::try_from(self.failed_reads).unwrap_or(i32::MAX),
        }
    }

    /// Loads what a previous operator (or this one before a restart) wrote.
    pub fn from_status(m: &DecisionMemory) -> Self {
        let mut recommendations: Vec<(Millis, u32)> = m
            .recommendations
            .iter()
            .map(|r| (millis(r.since), u32::try_from(r.replicas).unwrap_or(0)))
            .collect();
        recommendations.sort_by_key(|r| r.0);
        let mut changes: Vec<(Millis, i64)> = m
            .changes
            .iter()
            .map(|c| (millis(c.at), i64::from(c.delta)))
            .collect();
        changes.sort_by_key(|c| c.0);
        Self {
            samples: VecDeque::new(),
            recommendations: recommendations.into(),
            changes: changes.into(),
            last_burst: m.last_burst.map(millis),
            failed_reads: u32::try_from(m.failed_reads).unwrap_or(0),
        }
    }
}

fn time(ms: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or_default()
}

fn millis(t: DateTime<Utc>) -> Millis {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}
