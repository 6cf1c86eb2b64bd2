//! The typed values of the command line: the executor names as a closed set (so `--help`
//! lists them with their meaning and a wrong name is a usage error naming the valid ones),
//! and parsers that reject a rate, duration or stage list k6 would reject, with the reason.

use std::time::Duration;

use clap::ValueEnum;

use crate::config::{Stage, parse_stages};
use crate::duration::parse_duration;

/// k6's executors, as `--executor` takes them (kebab-case, as in a scenario file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExecutorKind {
    /// Closed model: --vus VUs loop the scenario back to back for --duration.
    ConstantVus,
    /// Closed model: VUs ramp from 0 through --stages (DURATION:VUS,...), then 30s gracefulRampDown.
    RampingVus,
    /// Open model: --rate iterations per --time-unit for --duration, whatever the latency; VUs from --vus up to --max-vus.
    ConstantArrivalRate,
    /// Open model: the rate ramps from --start-rate through --stages (DURATION:RATE,...) per --time-unit.
    RampingArrivalRate,
}

impl ExecutorKind {
    /// The name k6 and scenario files use, e.g. `constant-arrival-rate`.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// The parsed `--stages` list (a newtype so clap takes it as one value, not a repeated flag).
#[derive(Clone, Debug, PartialEq)]
pub struct Stages(pub Vec<Stage>);

/// `--stages 10s:100,30s:100`: at least one stage, each DURATION:TARGET with a target ≥ 0.
pub fn stages(text: &str) -> Result<Stages, String> {
    let list = parse_stages(text)?;
    if list.is_empty() {
        return Err(
            "no stages: give DURATION:TARGET[,DURATION:TARGET...], e.g. 10s:100,30s:100".into(),
        );
    }
    if let Some(s) = list
        .iter()
        .find(|s| !(s.target >= 0.0 && s.target.is_finite()))
    {
        return Err(format!("stage target {} must be a number >= 0", s.target));
    }
    Ok(Stages(list))
}

/// `--rate`: iterations per time unit, a finite number above 0.
pub fn positive_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        Ok(_) => Err("must be a number above 0 (iterations per --time-unit)".into()),
        Err(_) => Err("not a number (iterations per --time-unit, e.g. 50 or 0.5)".into()),
    }
}

/// `--start-rate`: like `--rate`, but a ramp may start from 0.
pub fn non_negative_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        Ok(_) => Err("must be a number >= 0 (iterations per --time-unit)".into()),
        Err(_) => Err("not a number (iterations per --time-unit, e.g. 0 or 10)".into()),
    }
}

/// `--duration`, `--time-unit`, `--timeout`: a k6 duration longer than zero.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    let d =
        parse_duration(text).map_err(|e| format!("{e} (k6 durations: 500ms, 30s, 1m30s, 2h)"))?;
    if d.is_zero() {
        return Err("must be longer than 0 (k6 durations: 500ms, 30s, 1m30s, 2h)".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_k6s() {
        let names: Vec<String> = ExecutorKind::value_variants()
            .iter()
            .map(|e| e.name())
            .collect();
        assert_eq!(
            names,
            [
                "constant-vus",
                "ramping-vus",
                "constant-arrival-rate",
                "ramping-arrival-rate"
            ]
        );
    }

    #[test]
    fn values_k6_rejects_are_rejected_with_the_reason() {
        assert_eq!(positive_rate("2.5"), Ok(2.5));
        assert!(positive_rate("0").unwrap_err().contains("above 0"));
        assert!(positive_rate("NaN").unwrap_err().contains("above 0"));
        assert!(positive_rate("fast").unwrap_err().contains("not a number"));
        assert_eq!(non_negative_rate("0"), Ok(0.0));
        assert!(non_negative_rate("-1").unwrap_err().contains(">= 0"));
        assert_eq!(positive_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(
            positive_duration("0s")
                .unwrap_err()
                .contains("longer than 0")
        );
        assert!(
            positive_duration("5x")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert_eq!(stages("10s:100").map(|s| s.0.len()), Ok(1));
        assert!(stages("").unwrap_err().contains("no stages"));
        assert!(stages("10s-100").unwrap_err().contains("DURATION:TARGET"));
        assert!(stages("10s:-5").unwrap_err().contains(">= 0"));
    }
}
