//! The extra signals' recommendations (KEDA's `prometheus` and `redis-streams` scalers with
//! HPA's `AverageValue` target): `ceil(value / target)` replicas, "stay" inside the tolerance
//! band, nothing at or below the activation threshold. Pure: the values are read by
//! `observe::triggers`; `decide` takes the largest of these and the queue and latency
//! recommendations.
//!
//! The readings are `Copy` (a fixed array, names inline) like the rest of [`super::Signals`].

use super::ceil_u32;

/// At most this many triggers per Campaign (the CRD's `maxItems`).
pub const MAX_TRIGGERS: usize = 8;
const NAME_MAX: usize = 63;

/// A trigger's name, inline (the CRD limits it to 63 ASCII characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TriggerName {
    len: u8,
    bytes: [u8; NAME_MAX],
}

impl TriggerName {
    /// The first 63 bytes of `name` (cut at a character boundary).
    pub fn new(name: &str) -> Self {
        let mut end = name.len().min(NAME_MAX);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; NAME_MAX];
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        Self {
            len: end as u8,
            bytes,
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("?")
    }
}

/// One trigger as read this resync.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TriggerReading {
    pub name: TriggerName,
    /// The metric's value; `None` when it could not be read.
    pub value: Option<f64>,
    /// Target value per replica (> 0).
    pub target: f64,
    /// At or below this value the trigger asks for nothing.
    pub activation: Option<f64>,
}

/// The campaign's trigger readings, in spec order.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TriggerReadings {
    items: [Option<TriggerReading>; MAX_TRIGGERS],
}

impl TriggerReadings {
    /// Adds a reading; `false` (and nothing added) when [`MAX_TRIGGERS`] are already held.
    pub fn push(&mut self, reading: TriggerReading) -> bool {
        match self.items.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => {
                *slot = Some(reading);
                true
            }
            None => false,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &TriggerReading> {
        self.items.iter().flatten()
    }

    /// Some trigger could not be read: the signals are partly unavailable.
    pub fn any_unavailable(&self) -> bool {
        self.iter().any(|r| r.value.is_none())
    }
}

/// One trigger's opinion, `None` when it was not read.
pub fn recommend_one(
    stay: impl Fn(f64) -> bool,
    current: u32,
    r: &TriggerReading,
) -> Option<(u32, String)> {
    let value = r.value?;
    let name = r.name.as_str();
    if let Some(a) = r.activation
        && value <= a
    {
        return Some((
            0,
            format!("trigger {name} {value} at or below activation {a}: inactive"),
        ));
    }
    let ratio = value / (f64::from(current) * r.target);
    if current > 0 && stay(ratio) {
        return Some((
            current,
            format!(
                "trigger {name} {value} within tolerance of {} per replica",
                r.target
            ),
        ));
    }
    let replicas = ceil_u32(value / r.target);
    Some((
        replicas,
        format!(
            "trigger {name} {value} / {} per replica = {replicas}",
            r.target
        ),
    ))
}

/// The largest recommendation over the triggers that were read (the first on a tie);
/// `stay` is HPA's tolerance band around the target (the policy's, per direction).
pub fn recommend(
    stay: impl Fn(f64) -> bool + Copy,
    current: u32,
    readings: &TriggerReadings,
) -> Option<(u32, String)> {
    readings
        .iter()
        .filter_map(|r| recommend_one(stay, current, r))
        .reduce(|best, r| if r.0 > best.0 { r } else { best })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::scaling::{Input, Latency, Policy, Signals, decide};

    const TOLERANCE: f64 = 0.1;

    /// A symmetric ±10 % band, the CRD's default tolerance.
    fn band(ratio: f64) -> bool {
        (ratio - 1.0).abs() <= TOLERANCE
    }

    /// 1 to 1000 replicas, every other field the CRD's default.
    fn policy() -> Policy {
        let spec = serde_json::json!({"minReplicas": 1, "maxReplicas": 1000});
        Policy::from_spec(&serde_json::from_value(spec).expect("a ScalingSpec"))
    }

    fn reading(
        name: &str,
        value: Option<f64>,
        target: f64,
        activation: Option<f64>,
    ) -> TriggerReading {
        TriggerReading {
            name: TriggerName::new(name),
            value,
            target,
            activation,
        }
    }

    #[test]
    fn names_are_kept_and_cut_at_63_bytes_on_a_character_boundary() {
        assert_eq!(TriggerName::new("orders-lag").as_str(), "orders-lag");
        let long = format!("{}é", "a".repeat(62));
        assert_eq!(TriggerName::new(&long).as_str(), "a".repeat(62));
    }

    #[test]
    fn holds_at_most_eight_readings() {
        let mut all = TriggerReadings::default();
        for i in 0..MAX_TRIGGERS {
            assert!(all.push(reading(&format!("t{i}"), Some(1.0), 1.0, None)));
        }
        assert!(!all.push(reading("t9", Some(1.0), 1.0, None)));
        assert_eq!(all.iter().count(), MAX_TRIGGERS);
    }

    proptest! {
        /// Outside the tolerance band the trigger asks for the fewest replicas that keep each
        /// at or under its target value (KEDA AverageValue).
        #[test]
        fn asks_for_the_fewest_replicas_that_meet_the_target(
            value in 0.0f64..1e6, target in 0.01f64..1e4, current in 0u32..500,
        ) {
            let (n, why) = recommend_one(band, current, &reading("q", Some(value), target, None)).unwrap();
            let ratio = value / (f64::from(current) * target);
            if current > 0 && (ratio - 1.0).abs() <= TOLERANCE {
                prop_assert_eq!(n, current);
                prop_assert!(why.contains("within tolerance"));
            } else {
                prop_assert!(f64::from(n) * target >= value - 1e-6);
                prop_assert!(n == 0 || f64::from(n - 1) * target < value);
                prop_assert!(why.starts_with("trigger q "));
            }
        }

        /// At or below the activation threshold the trigger asks for nothing.
        #[test]
        fn inactive_at_or_below_the_activation_threshold(
            activation in 0.0f64..1e4, below in 0.0f64..1.0, target in 0.01f64..100.0, current in 1u32..100,
        ) {
            let value = activation * below;
            let r = reading("q", Some(value), target, Some(activation));
            prop_assert_eq!(recommend_one(band, current, &r).unwrap().0, 0);
        }

        /// The combined trigger recommendation is the largest single one; unread triggers
        /// contribute nothing but mark the signals partly unavailable.
        #[test]
        fn the_largest_read_trigger_wins(
            values in proptest::collection::vec(proptest::option::of(0.0f64..1e5), 0..=MAX_TRIGGERS),
            current in 1u32..200,
        ) {
            let mut all = TriggerReadings::default();
            for (i, v) in values.iter().enumerate() {
                let name = format!("t{i}");
                prop_assert!(all.push(reading(&name, *v, 10.0, None)));
            }
            let singles: Vec<u32> = all.iter().filter_map(|r| recommend_one(band, current, r)).map(|r| r.0).collect();
            prop_assert_eq!(recommend(band, current, &all).map(|r| r.0), singles.iter().copied().max());
            prop_assert_eq!(all.any_unavailable(), values.iter().any(Option::is_none));
        }

        /// Through the whole decision: a trigger that cannot be read never lets the
        /// Deployment shrink, however small the other signals are.
        #[test]
        fn an_unreadable_trigger_never_shrinks_the_deployment(
            current in 2u32..50, waiting in 0u64..1000,
        ) {
            let p = policy();
            let mut triggers = TriggerReadings::default();
            triggers.push(reading("down", None, 10.0, None));
            let input = Input {
                now: 1_000_000,
                current,
                signals: Signals { waiting: Some(waiting), latency: Latency::Idle, triggers },
            };
            let d = decide(&p, &input, &mut Default::default());
            prop_assert!(d.desired >= current, "{d:?}");
        }

        /// A trigger alone (queue empty, app idle) scales the Deployment up to what it asks,
        /// within the step and max limits.
        #[test]
        fn a_trigger_alone_scales_up(value in 100.0f64..1000.0) {
            let p = policy();
            let mut triggers = TriggerReadings::default();
            triggers.push(reading("lag", Some(value), 10.0, None));
            let input = Input {
                now: 1_000_000,
                current: 2,
                signals: Signals { waiting: Some(0), latency: Latency::Idle, triggers },
            };
            let d = decide(&p, &input, &mut Default::default());
            prop_assert_eq!(d.recommendation, ceil_u32(value / 10.0));
            prop_assert!(d.desired > 2 && d.reason.contains("trigger lag"), "{d:?}");
        }
    }
}
