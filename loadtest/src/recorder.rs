//! The live side of metrics: VUs record into one of several mutex-guarded worker shards
//! (picked by VU id, so locks are almost never contended) plus a few atomics that the
//! progress line reads without locking. `snapshot` merges the shards exactly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::metrics::{Metrics, PassFail, ReqKey, ReqStats, TagSet, record};
use crate::output::influx::InfluxSink;

/// Tags of a check: which scenario and group it ran in and its name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckKey {
    pub scenario: Arc<str>,
    pub group: Arc<str>,
    pub name: Arc<str>,
}

/// FNV-1a: the keys are a handful of short tag strings hashed on every request, where
/// SipHash's DoS resistance buys nothing and costs time.
#[derive(Default)]
pub struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FastHash = std::hash::BuildHasherDefault<Fnv>;

#[derive(Default)]
struct Worker {
    requests: HashMap<ReqKey, ReqStats, FastHash>,
    checks: HashMap<CheckKey, PassFail, FastHash>,
    rest: Metrics,
}

/// Counters the progress line and the open-model scheduler read while the run goes on.
#[derive(Default)]
pub struct Live {
    pub reqs: AtomicU64,
    pub failed: AtomicU64,
    pub iterations: AtomicU64,
    pub dropped: AtomicU64,
    pub vus: AtomicU64,
    pub vus_max: AtomicU64,
}

pub struct Recorder {
    pub start: Instant,
    workers: Vec<Mutex<Worker>>,
    pub live: Live,
    influx: Option<InfluxSink>,
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

impl Recorder {
    pub fn new(start: Instant, influx: Option<InfluxSink>) -> Recorder {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = (0..threads * 2)
            .map(|_| Mutex::new(Worker::default()))
            .collect();
        Recorder {
            start,
            workers,
            live: Live::default(),
            influx,
        }
    }

    fn worker(&self, vu: u64) -> MutexGuard<'_, Worker> {
        let m = &self.workers[(vu as usize) % self.workers.len()];
        // A panic while holding the lock only means a VU died mid-record; the data is intact.
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn second_of(&self, at: Instant) -> usize {
        at.saturating_duration_since(self.start).as_secs() as usize
    }

    /// One HTTP request: `intended` is when it should have been sent (the scheduled
    /// iteration start for an iteration's first request), `sent` when it was.
    pub fn request(&self, vu: u64, key: &ReqKey, intended: Instant, sent: Instant, done: Instant) {
        let failed = !key.expected;
        let duration = micros(done.saturating_duration_since(intended));
        let service = micros(done.saturating_duration_since(sent));
        {
            let mut w = self.worker(vu);
            let stats = match w.requests.get_mut(key) {
                Some(s) => s,
                None => w.requests.entry(key.clone()).or_default(),
            };
            record(&mut stats.duration, duration);
            record(&mut stats.service, service);
            stats.reqs += 1;
            stats.failed += u64::from(failed);
            let sec = self.second_of(done);
            let s = w.rest.second(sec);
            s.reqs += 1;
            s.errors += u64::from(failed);
            s.duration_us_sum += duration;
        }
        self.live.reqs.fetch_add(1, Relaxed);
        if failed {
            self.live.failed.fetch_add(1, Relaxed);
        }
        if let Some(sink) = &self.influx {
            sink.request(key, duration, failed);
        }
    }

    pub fn check(&self, vu: u64, key: &CheckKey, ok: bool) {
        let mut w = self.worker(vu);
        let pf = match w.checks.get_mut(key) {
            Some(p) => p,
            None => w.checks.entry(key.clone()).or_default(),
        };
        if ok {
            pf.passes += 1
        } else {
            pf.fails += 1
        }
        if let Some(sink) = &self.influx {
            sink.check(key, ok);
        }
    }

    pub fn iteration(&self, vu: u64, intended: Instant, done: Instant, interrupted: bool) {
        let mut w = self.worker(vu);
        if interrupted {
            w.rest.interrupted_iterations += 1;
            return;
        }
        let us = micros(done.saturating_duration_since(intended));
        w.rest.iterations += 1;
        record(&mut w.rest.iteration_duration, us);
        w.rest.second(self.second_of(done)).iterations += 1;
        drop(w);
        self.live.iterations.fetch_add(1, Relaxed);
        if let Some(sink) = &self.influx {
            sink.iteration(us);
        }
    }

    pub fn dropped(&self, worker: u64) {
        self.worker(worker).rest.dropped_iterations += 1;
        self.live.dropped.fetch_add(1, Relaxed);
    }

    pub fn scheduler_lag(&self, worker: u64, lag: Duration) {
        record(&mut self.worker(worker).rest.scheduler_lag, micros(lag));
    }

    /// Samples the VU gauges; called once a second by the run's ticker.
    pub fn sample_vus(&self) {
        let (vus, max) = (self.live.vus.load(Relaxed), self.live.vus_max.load(Relaxed));
        let mut w = self.worker(0);
        w.rest.vus.sample(vus);
        w.rest.vus_max.sample(max);
        drop(w);
        if let Some(sink) = &self.influx {
            sink.vus(vus, max);
        }
    }

    pub fn influx(&self) -> Option<&InfluxSink> {
        self.influx.as_ref()
    }

    /// All workers merged into one exact `Metrics`.
    pub fn snapshot(&self) -> Metrics {
        let mut out = Metrics::default();
        for w in &self.workers {
            let w = w.lock().unwrap_or_else(|p| p.into_inner());
            out.merge(&w.rest);
            for (k, v) in &w.requests {
                out.requests.entry(k.tags()).or_default().merge(v);
            }
            for (k, v) in &w.checks {
                let e = out.checks.entry(check_tags(k)).or_default();
                e.passes += v.passes;
                e.fails += v.fails;
            }
        }
        out.duration_ms = self.start.elapsed().as_millis() as u64;
        out
    }
}

fn check_tags(k: &CheckKey) -> TagSet {
    TagSet::from([
        ("scenario".to_string(), k.scenario.to_string()),
        ("group".to_string(), k.group.to_string()),
        ("check".to_string(), k.name.to_string()),
    ])
}
