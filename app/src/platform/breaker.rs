//! The circuit-breaker state machine, resilience4j semantics, pure (time is an argument).
//!
//! - Closed: every call is let through and recorded in a sliding window (the last `size`
//!   calls, or the calls of the last `size` seconds). Once the window holds `minimum_calls`
//!   (capped at the window size for count windows), a failure rate or slow-call rate at or
//!   above its threshold opens the breaker.
//! - Open: calls are refused until `wait_in_open` has passed; the first call after that turns
//!   it half-open.
//! - Half-open: exactly `permitted_in_half_open` trial calls are let through; when all have
//!   reported, the same two thresholds decide between open (again) and closed.
//! - Forced states from the runtime config override all of it: forced-open refuses every
//!   call, disabled lets every call through and records nothing. Leaving a forced state
//!   starts closed with an empty window.
//! - Reconfiguration keeps the state and the recorded calls when the window shape (kind and
//!   size) is unchanged; a new shape starts an empty window.
//!
//! Why not a crate: `tower-resilience-circuitbreaker` fixes its config at build time (no live
//! reconfiguration), has no disabled state and only wraps tower services, while our
//! chokepoints are pool acquires and Redis calls; `recloser` has neither slow calls, time
//! windows nor forced states.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use floodgate_crds::runtime::{BreakerSettings, BreakerState, SlidingWindowType};

/// What the breaker reports, with the gauge value of `floodgate_circuit_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
    ForcedOpen = 3,
    Disabled = 4,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::ForcedOpen => "forced-open",
            State::Disabled => "disabled",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// An infrastructure failure (timeout, connection error, pool exhaustion).
    Failure,
}

/// The answer to "may this call go ahead?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; `trial` calls are the half-open state's probes and must report back.
    Allowed {
        trial: bool,
    },
    Rejected {
        retry_after: Duration,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    calls: u32,
    failures: u32,
    slow: u32,
}

impl Tally {
    fn add(&mut self, failed: bool, slow: bool) {
        self.calls += 1;
        self.failures += u32::from(failed);
        self.slow += u32::from(slow);
    }

    fn sub(&mut self, other: Tally) {
        self.calls -= other.calls;
        self.failures -= other.failures;
        self.slow -= other.slow;
    }

    /// True when either rate is at or above its threshold (percentages).
    fn exceeds(&self, failure_rate: f64, slow_rate: f64) -> bool {
        if self.calls == 0 {
            return false;
        }
        let pct = |n: u32| f64::from(n) * 100.0 / f64::from(self.calls);
        pct(self.failures) >= failure_rate || pct(self.slow) >= slow_rate
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Count(u32),
    TimeSecs(u32),
}

/// The calls the rates are computed over; the running total avoids re-summing per call.
#[derive(Debug)]
struct Window {
    shape: Shape,
    /// One entry per call (count) or per second (time, keyed by seconds since `origin`).
    slots: VecDeque<(u64, Tally)>,
    total: Tally,
}

impl Window {
    fn new(shape: Shape) -> Self {
        Self {
            shape,
            slots: VecDeque::new(),
            total: Tally::default(),
        }
    }

    fn record(&mut self, second: u64, failed: bool, slow: bool) {
        self.expire(second);
        let mut one = Tally::default();
        one.add(failed, slow);
        match self.shape {
            Shape::Count(size) => {
                self.slots.push_back((second, one));
                while self.slots.len() > size as usize {
                    if let Some((_, old)) = self.slots.pop_front() {
                        self.total.sub(old);
                    }
                }
            }
            Shape::TimeSecs(_) => match self.slots.back_mut() {
                Some((s, t)) if *s == second => t.add(failed, slow),
                _ => self.slots.push_back((second, one)),
            },
        }
        self.total.add(failed, slow);
    }

    /// Drops the seconds that fell out of a time window.
    fn expire(&mut self, second: u64) {
        if let Shape::TimeSecs(size) = self.shape {
            while let Some(&(s, t)) = self.slots.front() {
                if s + u64::from(size) > second {
                    break;
                }
                self.slots.pop_front();
                self.total.sub(t);
            }
        }
    }

    fn minimum(&self, minimum_calls: u32) -> u32 {
        match self.shape {
            Shape::Count(size) => minimum_calls.min(size),
            Shape::TimeSecs(_) => minimum_calls,
        }
    }
}

/// The subset of [`BreakerSettings`] the machine needs, in machine units.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub failure_rate_threshold: f64,
    pub slow_call_rate_threshold: f64,
    pub slow_call_duration: Duration,
    shape: Shape,
    pub minimum_calls: u32,
    pub wait_in_open: Duration,
    pub permitted_in_half_open: u32,
    pub forced: BreakerState,
}

impl From<&BreakerSettings> for Config {
    fn from(s: &BreakerSettings) -> Self {
        let size = s.sliding_window.size.max(1);
        Self {
            failure_rate_threshold: s.failure_rate_threshold,
            slow_call_rate_threshold: s.slow_call_rate_threshold,
            slow_call_duration: s.slow_call_duration.as_duration(),
            shape: match s.sliding_window.kind {
                SlidingWindowType::Count => Shape::Count(size),
                SlidingWindowType::Time => Shape::TimeSecs(size),
            },
            minimum_calls: s.minimum_calls.max(1),
            wait_in_open: s.wait_in_open.as_duration(),
            permitted_in_half_open: s.permitted_in_half_open.max(1),
            forced: s.state,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { admitted: u32, reported: Tally },
}

#[derive(Debug)]
pub struct Machine {
    cfg: Config,
    phase: Phase,
    window: Window,
    origin: Instant,
}

impl Machine {
    pub fn new(cfg: Config, now: Instant) -> Self {
        Self {
            window: Window::new(cfg.shape),
            cfg,
            phase: Phase::Closed,
            origin: now,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The state as of `now` (an open breaker whose wait has passed still reads open until a
    /// call arrives, as in resilience4j without automatic transition).
    pub fn state(&self) -> State {
        match (self.cfg.forced, self.phase) {
            (BreakerState::ForcedOpen, _) => State::ForcedOpen,
            (BreakerState::Disabled, _) => State::Disabled,
            (BreakerState::Auto, Phase::Closed) => State::Closed,
            (BreakerState::Auto, Phase::Open { .. }) => State::Open,
            (BreakerState::Auto, Phase::HalfOpen { .. }) => State::HalfOpen,
        }
    }

    /// How long calls will still be refused without asking (open or forced-open), else None.
    /// Half-open and an open breaker whose wait has passed answer None: the next call decides.
    pub fn refusing_for(&self, now: Instant) -> Option<Duration> {
        match (self.cfg.forced, self.phase) {
            (BreakerState::ForcedOpen, _) => Some(self.cfg.wait_in_open),
            (BreakerState::Auto, Phase::Open { until }) if until > now => Some(until - now),
            _ => None,
        }
    }

    pub fn acquire(&mut self, now: Instant) -> (Admission, Option<Transition>) {
        match self.cfg.forced {
            BreakerState::Disabled => return (Admission::Allowed { trial: false }, None),
            BreakerState::ForcedOpen => {
                return (
                    Admission::Rejected {
                        retry_after: self.cfg.wait_in_open,
                    },
                    None,
                );
            }
            BreakerState::Auto => {}
        }
        match self.phase {
            Phase::Closed => (Admission::Allowed { trial: false }, None),
            Phase::Open { until } if now < until => (
                Admission::Rejected {
                    retry_after: until - now,
                },
                None,
            ),
            Phase::Open { .. } => {
                let t = self.go(Phase::HalfOpen {
                    admitted: 1,
                    reported: Tally::default(),
                });
                (Admission::Allowed { trial: true }, t)
            }
            Phase::HalfOpen { admitted, reported }
                if admitted < self.cfg.permitted_in_half_open =>
            {
                self.phase = Phase::HalfOpen {
                    admitted: admitted + 1,
                    reported,
                };
                (Admission::Allowed { trial: true }, None)
            }
            // the trials are out; their verdict comes soon
            Phase::HalfOpen { .. } => (
                Admission::Rejected {
                    retry_after: Duration::from_secs(1),
                },
                None,
            ),
        }
    }

    /// Records a finished call admitted by [`Self::acquire`].
    pub fn record(
        &mut self,
        now: Instant,
        trial: bool,
        outcome: Outcome,
        took: Duration,
    ) -> Option<Transition> {
        if self.cfg.forced != BreakerState::Auto {
            return None;
        }
        let failed = outcome == Outcome::Failure;
        let slow = took >= self.cfg.slow_call_duration;
        match (self.phase, trial) {
            (Phase::Closed, false) => {
                let second = now.saturating_duration_since(self.origin).as_secs();
                self.window.record(second, failed, slow);
                let t = self.window.total;
                if t.calls >= self.window.minimum(self.cfg.minimum_calls)
                    && t.exceeds(
                        self.cfg.failure_rate_threshold,
                        self.cfg.slow_call_rate_threshold,
                    )
                {
                    return self.open(now);
                }
                None
            }
            (
                Phase::HalfOpen {
                    admitted,
                    mut reported,
                },
                true,
            ) => {
                reported.add(failed, slow);
                self.phase = Phase::HalfOpen { admitted, reported };
                if reported.calls < self.cfg.permitted_in_half_open {
                    return None;
                }
                if reported.exceeds(
                    self.cfg.failure_rate_threshold,
                    self.cfg.slow_call_rate_threshold,
                ) {
                    self.open(now)
                } else {
                    self.go(Phase::Closed)
                }
            }
            // a call admitted in an earlier phase: the state it measured is gone
            _ => None,
        }
    }

    /// A call admitted but abandoned before it could report (e.g. the client went away):
    /// a trial gives its slot back so half-open is not stuck waiting for it.
    pub fn release(&mut self, trial: bool) {
        if let (Phase::HalfOpen { admitted, reported }, true) = (self.phase, trial) {
            self.phase = Phase::HalfOpen {
                admitted: admitted.saturating_sub(1).max(reported.calls),
                reported,
            };
        }
    }

    /// Applies new settings, keeping the state (and the window, if its shape is unchanged).
    pub fn reconfigure(&mut self, cfg: Config, now: Instant) -> Option<Transition> {
        let before = self.state();
        let leaving_forced =
            self.cfg.forced != BreakerState::Auto && cfg.forced == BreakerState::Auto;
        if cfg.shape != self.cfg.shape || leaving_forced {
            self.window = Window::new(cfg.shape);
        }
        if leaving_forced {
            self.phase = Phase::Closed;
        }
        self.cfg = cfg;
        // a shorter half-open trial count may already be complete
        if let Phase::HalfOpen { reported, .. } = self.phase
            && self.cfg.forced == BreakerState::Auto
            && reported.calls >= self.cfg.permitted_in_half_open
        {
            let t = if reported.exceeds(
                self.cfg.failure_rate_threshold,
                self.cfg.slow_call_rate_threshold,
            ) {
                self.open(now)
            } else {
                self.go(Phase::Closed)
            };
            return t.map(|t| Transition {
                from: before,
                to: t.to,
            });
        }
        let after = self.state();
        (after != before).then_some(Transition {
            from: before,
            to: after,
        })
    }

    fn open(&mut self, now: Instant) -> Option<Transition> {
        self.go(Phase::Open {
            until: now + self.cfg.wait_in_open,
        })
    }

    fn go(&mut self, phase: Phase) -> Option<Transition> {
        let from = self.state();
        self.phase = phase;
        // every new phase measures afresh
        self.window = Window::new(self.cfg.shape);
        let to = self.state();
        (from != to).then_some(Transition { from, to })
    }
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
