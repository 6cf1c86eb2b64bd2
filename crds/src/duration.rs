//! Durations written as short human strings: `250ms`, `30s`, `5m`, `2h`, `1d`.
//!
//! Kubernetes users write durations this way (HPA behaviour, Knative, KEDA), so the custom
//! resources and the runtime document use the same spelling and one parser.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The regular expression every duration string must match (also used in the CRD schemas).
pub const DURATION_PATTERN: &str = r"^[0-9]{1,9}(ms|s|m|h|d)$";

/// A non-negative duration that serializes as a human string such as `30s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {0:?}: expected a whole number followed by ms, s, m, h or d (e.g. 250ms, 30s, 5m)"
)]
pub struct DurationError(pub String);

impl Dur {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    pub const fn as_duration(self) -> Duration {
        self.0
    }

    pub const fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl From<Dur> for Duration {
    fn from(d: Dur) -> Self {
        d.0
    }
}

impl FromStr for Dur {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationError(s.to_owned());
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (digits, unit) = s.split_at(split);
        if digits.is_empty() || digits.len() > 9 {
            return Err(err());
        }
        let n: u64 = digits.parse().map_err(|_| err())?;
        let ms_per_unit = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(err()),
        };
        Ok(Self::from_millis(n * ms_per_unit))
    }
}

impl fmt::Display for Dur {
    /// The largest unit that represents the value exactly, so `parse(display(d)) == d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        for (unit, per) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms != 0 && ms.is_multiple_of(per) {
                return write!(f, "{}{unit}", ms / per);
            }
        }
        if ms == 0 {
            return f.write_str("0s");
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// In a CRD a duration is a string checked by [`DURATION_PATTERN`], so the API server refuses
/// `5 minutes` before the operator ever sees it.
#[cfg(feature = "kube")]
impl schemars::JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!("250ms".parse::<Dur>().unwrap(), Dur::from_millis(250));
        assert_eq!("30s".parse::<Dur>().unwrap(), Dur::from_secs(30));
        assert_eq!("5m".parse::<Dur>().unwrap(), Dur::from_secs(300));
        assert_eq!("2h".parse::<Dur>().unwrap(), Dur::from_secs(7200));
        assert_eq!("1d".parse::<Dur>().unwrap(), Dur::from_secs(86_400));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "s",
            "5",
            "-5s",
            "5 s",
            "5x",
            "1.5s",
            "5sec",
            "9999999999s",
        ] {
            assert!(bad.parse::<Dur>().is_err(), "{bad} should be rejected");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(ms in 0u64..1_000_000_000) {
            let d = Dur::from_millis(ms);
            prop_assert_eq!(d.to_string().parse::<Dur>().unwrap(), d);
        }
    }
}
