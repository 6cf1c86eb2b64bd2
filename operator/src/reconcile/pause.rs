//! Pausing a Campaign by annotation, as KEDA's `autoscaling.keda.sh/paused` and
//! `paused-replicas`: `floodgate.dev/paused: "true"` holds the target's current replica count
//! (no scale write at all), `floodgate.dev/paused-replicas: "N"` scales it to N once and
//! holds it there; removing the annotation resumes. Pure: the annotations in, what to do out.

use std::collections::BTreeMap;

pub const PAUSED: &str = "floodgate.dev/paused";
pub const PAUSED_REPLICAS: &str = "floodgate.dev/paused-replicas";

/// What the annotations ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pause {
    /// Not paused: the campaign scales as its spec says.
    Off,
    /// Write no replica count; `why` is the condition message.
    Hold { why: String },
    /// Scale to this count and hold it.
    Replicas(u32),
    /// An annotation the operator cannot read: held like [`Pause::Hold`] (whoever wrote it
    /// meant to pause), and the message says exactly what is wrong.
    Invalid(String),
}

impl Pause {
    /// True when no scale write may happen except the paused-replicas one.
    pub fn is_paused(&self) -> bool {
        *self != Self::Off
    }
}

/// Reads the two annotations. `paused-replicas` wins over `paused` (as in KEDA).
pub fn of(annotations: Option<&BTreeMap<String, String>>) -> Pause {
    let get = |k: &str| annotations.and_then(|a| a.get(k)).map(|v| v.trim());
    if let Some(v) = get(PAUSED_REPLICAS) {
        return match v.parse::<u32>() {
            Ok(n) if n <= 100_000 => Pause::Replicas(n),
            _ => Pause::Invalid(format!(
                "annotation {PAUSED_REPLICAS}: {v:?} is not a replica count (a whole number \
                 0-100000); holding the current replicas until it is fixed or removed"
            )),
        };
    }
    match get(PAUSED) {
        None => Pause::Off,
        Some(v) if v.eq_ignore_ascii_case("false") => Pause::Off,
        Some(v) if v.eq_ignore_ascii_case("true") => Pause::Hold {
            why: format!("{PAUSED}: \"true\": holding the current replicas"),
        },
        Some(v) => Pause::Invalid(format!(
            "annotation {PAUSED}: {v:?} is neither \"true\" nor \"false\"; holding the current \
             replicas until it is fixed or removed"
        )),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_annotations_pause_hold_or_pin() {
        assert_eq!(of(None), Pause::Off);
        assert_eq!(of(Some(&ann(&[("other", "x")]))), Pause::Off);
        assert_eq!(of(Some(&ann(&[(PAUSED, "false")]))), Pause::Off);
        assert!(matches!(
            of(Some(&ann(&[(PAUSED, "true")]))),
            Pause::Hold { .. }
        ));
        assert_eq!(
            of(Some(&ann(&[(PAUSED_REPLICAS, "5")]))),
            Pause::Replicas(5)
        );
        // paused-replicas wins, as in KEDA
        let both = ann(&[(PAUSED, "true"), (PAUSED_REPLICAS, " 0 ")]);
        assert_eq!(of(Some(&both)), Pause::Replicas(0));
    }

    #[test]
    fn bad_values_are_held_with_a_precise_message() {
        let Pause::Invalid(msg) = of(Some(&ann(&[(PAUSED_REPLICAS, "five")]))) else {
            panic!("not invalid")
        };
        assert!(
            msg.contains("floodgate.dev/paused-replicas: \"five\" is not a replica count"),
            "{msg}"
        );
        let Pause::Invalid(msg) = of(Some(&ann(&[(PAUSED, "yes")]))) else {
            panic!("not invalid")
        };
        assert!(
            msg.contains("floodgate.dev/paused: \"yes\" is neither"),
            "{msg}"
        );
        assert!(of(Some(&ann(&[(PAUSED_REPLICAS, "-1")]))).is_paused());
    }

    proptest! {
        /// Any value of either annotation gives an answer (never a panic); a whole number is
        /// pinned, anything else with paused-replicas set is held.
        #[test]
        fn any_value_is_an_answer(v in ".{0,12}", n in 0u32..100_000) {
            let p = of(Some(&ann(&[(PAUSED_REPLICAS, &v)])));
            match v.trim().parse::<u32>() {
                Ok(k) if k <= 100_000 => prop_assert_eq!(p, Pause::Replicas(k)),
                _ => prop_assert!(matches!(p, Pause::Invalid(_))),
            }
            prop_assert_eq!(of(Some(&ann(&[(PAUSED_REPLICAS, &n.to_string())]))), Pause::Replicas(n));
            let _ = of(Some(&ann(&[(PAUSED, &v)])));
        }
    }
}
