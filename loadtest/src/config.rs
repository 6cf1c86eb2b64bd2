//! Test options in k6's shape (`scenarios` with executors, `thresholds`), read from a YAML
//! (or TOML-free YAML) scenario file and overridden by command-line flags, then scaled.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::{format_duration, parse_duration};

/// A duration that reads and writes as a k6 string (`"30s"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Dur(pub Duration);

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Secs(f64),
        }
        match Repr::deserialize(d)? {
            Repr::Text(t) => parse_duration(&t)
                .map(Dur)
                .map_err(serde::de::Error::custom),
            Repr::Secs(s) if s >= 0.0 && s.is_finite() => Ok(Dur(Duration::from_secs_f64(s))),
            Repr::Secs(s) => Err(serde::de::Error::custom(format!("bad duration {s}"))),
        }
    }
}

/// One k6 stage: reach `target` (VUs or iterations per `timeUnit`) linearly over `duration`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub duration: Dur,
    pub target: f64,
}

fn one_second() -> Dur {
    Dur(Duration::from_secs(1))
}
fn thirty_seconds() -> Dur {
    Dur(Duration::from_secs(30))
}

/// The four k6 executors this generator implements, with k6's field names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "executor",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Executor {
    ConstantVus {
        vus: u64,
        duration: Dur,
    },
    RampingVus {
        #[serde(default, rename = "startVUs")]
        start_vus: u64,
        stages: Vec<Stage>,
        #[serde(default = "thirty_seconds")]
        graceful_ramp_down: Dur,
    },
    ConstantArrivalRate {
        rate: f64,
        #[serde(default = "one_second")]
        time_unit: Dur,
        duration: Dur,
        #[serde(rename = "preAllocatedVUs")]
        pre_allocated_vus: u64,
        #[serde(default, rename = "maxVUs")]
        max_vus: u64,
    },
    RampingArrivalRate {
        #[serde(default)]
        start_rate: f64,
        #[serde(default = "one_second")]
        time_unit: Dur,
        #[serde(rename = "preAllocatedVUs")]
        pre_allocated_vus: u64,
        #[serde(default, rename = "maxVUs")]
        max_vus: u64,
        stages: Vec<Stage>,
    },
}

impl Executor {
    pub fn name(&self) -> &'static str {
        match self {
            Executor::ConstantVus { .. } => "constant-vus",
            Executor::RampingVus { .. } => "ramping-vus",
            Executor::ConstantArrivalRate { .. } => "constant-arrival-rate",
            Executor::RampingArrivalRate { .. } => "ramping-arrival-rate",
        }
    }

    /// How long the executor schedules new iterations (graceful stop comes on top).
    pub fn duration(&self) -> Duration {
        match self {
            Executor::ConstantVus { duration, .. }
            | Executor::ConstantArrivalRate { duration, .. } => duration.0,
            Executor::RampingVus { stages, .. } | Executor::RampingArrivalRate { stages, .. } => {
                stages.iter().map(|s| s.duration.0).sum()
            }
        }
    }

    /// The most VUs this executor may hold at once (k6's `vus_max`).
    pub fn max_vus(&self) -> u64 {
        match self {
            Executor::ConstantVus { vus, .. } => *vus,
            Executor::RampingVus {
                start_vus, stages, ..
            } => stages
                .iter()
                .map(|s| s.target.max(0.0).ceil() as u64)
                .fold(*start_vus, u64::max),
            Executor::ConstantArrivalRate {
                pre_allocated_vus,
                max_vus,
                ..
            }
            | Executor::RampingArrivalRate {
                pre_allocated_vus,
                max_vus,
                ..
            } => (*max_vus).max(*pre_allocated_vus),
        }
    }

    /// Multiplies load (VUs and rates, never durations) so a report's shape fits this machine.
    pub fn scale(&mut self, factor: f64) {
        let vus = |v: &mut u64| {
            if *v > 0 {
                *v = ((*v as f64) * factor).round().max(1.0) as u64;
            }
        };
        let stages = |st: &mut Vec<Stage>| {
            for s in st {
                s.target *= factor;
            }
        };
        match self {
            Executor::ConstantVus { vus: v, .. } => vus(v),
            Executor::RampingVus {
                start_vus,
                stages: st,
                ..
            } => {
                vus(start_vus);
                stages(st);
                for s in st.iter_mut() {
                    s.target = s.target.round();
                }
            }
            Executor::ConstantArrivalRate {
                rate,
                pre_allocated_vus,
                max_vus,
                ..
            } => {
                *rate *= factor;
                vus(pre_allocated_vus);
                vus(max_vus);
            }
            Executor::RampingArrivalRate {
                start_rate,
                pre_allocated_vus,
                max_vus,
                stages: st,
                ..
            } => {
                *start_rate *= factor;
                stages(st);
                vus(pre_allocated_vus);
                vus(max_vus);
            }
        }
    }
}

/// A k6 scenario entry: an executor plus when it starts and which Rust scenario it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioOptions {
    #[serde(flatten)]
    pub executor: Executor,
    #[serde(default)]
    pub start_time: Dur,
    #[serde(default = "thirty_seconds")]
    pub graceful_stop: Dur,
    /// Name of the Rust scenario; defaults to the one named on the command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl ScenarioOptions {
    pub fn new(executor: Executor) -> Self {
        ScenarioOptions {
            executor,
            start_time: Dur::default(),
            graceful_stop: thirty_seconds(),
            exec: None,
            tags: BTreeMap::new(),
        }
    }
}

/// A threshold as k6 accepts it: a bare expression or an object with abort settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ThresholdSpec {
    Expr(String),
    #[serde(rename_all = "camelCase")]
    Full {
        threshold: String,
        #[serde(default)]
        abort_on_fail: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delay_abort_eval: Option<Dur>,
    },
}

/// The options block of a test, as in k6's `export const options`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Options {
    #[serde(default)]
    pub scenarios: BTreeMap<String, ScenarioOptions>,
    #[serde(default)]
    pub thresholds: BTreeMap<String, Vec<ThresholdSpec>>,
}

impl Options {
    /// Reads a scenario file. TOML is not a dependency here, so files are YAML (JSON is YAML).
    pub fn from_yaml(text: &str) -> anyhow::Result<Options> {
        Ok(serde_yaml::from_str(text)?)
    }

    pub fn scale(&mut self, factor: f64) {
        for s in self.scenarios.values_mut() {
            s.executor.scale(factor);
        }
    }

    /// Wall time from the start of the run until every scenario must have stopped.
    pub fn total_duration(&self) -> Duration {
        self.scenarios
            .values()
            .map(|s| s.start_time.0 + s.executor.duration() + s.graceful_stop.0)
            .max()
            .unwrap_or_default()
    }
}

/// Parses `10s:100,30s:100` into stages (the form of `--stages` in k6's CLI).
pub fn parse_stages(text: &str) -> Result<Vec<Stage>, String> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|part| {
            let (d, t) = part
                .split_once(':')
                .ok_or_else(|| format!("stage {part:?} is not DURATION:TARGET"))?;
            let target: f64 = t
                .trim()
                .parse()
                .map_err(|_| format!("bad stage target {t:?}"))?;
            Ok(Stage {
                duration: Dur(parse_duration(d)?),
                target,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_e_commerce_report_options() {
        let yaml = r#"
scenarios:
  load_test:
    executor: ramping-vus
    startVUs: 0
    stages:
      - { duration: 10s, target: 1000 }
      - { duration: 30s, target: 1000 }
  peak_test:
    executor: ramping-arrival-rate
    startRate: 10
    timeUnit: 1s
    preAllocatedVUs: 200
    maxVUs: 500
    startTime: 40s
    stages:
      - { duration: 10s, target: 1000 }
thresholds:
  http_req_duration: ['p(95)<2000']
  http_req_failed:
    - { threshold: 'rate<0.01', abortOnFail: true, delayAbortEval: 10s }
"#;
        let o = Options::from_yaml(yaml).expect("valid yaml");
        let peak = &o.scenarios["peak_test"];
        assert_eq!(peak.start_time, Dur(Duration::from_secs(40)));
        match &peak.executor {
            Executor::RampingArrivalRate {
                start_rate,
                max_vus,
                ..
            } => {
                assert_eq!((*start_rate, *max_vus), (10.0, 500));
            }
            other => panic!("wrong executor {other:?}"),
        }
        assert_eq!(o.scenarios["load_test"].executor.max_vus(), 1000);
        assert_eq!(o.total_duration(), Duration::from_secs(40 + 10 + 30));
        assert!(matches!(
            &o.thresholds["http_req_failed"][0],
            ThresholdSpec::Full {
                abort_on_fail: true,
                ..
            }
        ));
    }

    #[test]
    fn shipped_example_files_parse() {
        for text in [
            include_str!("../examples/ecommerce.yaml"),
            include_str!("../examples/concert-flow.yaml"),
        ] {
            let o = Options::from_yaml(text).expect("example parses");
            assert!(!o.scenarios.is_empty());
            crate::thresholds::parse_all(&o.thresholds).expect("example thresholds parse");
        }
    }

    #[test]
    fn scaling_touches_load_not_time() {
        let mut e = Executor::RampingVus {
            start_vus: 0,
            stages: parse_stages("10s:1000,30s:3000").expect("stages"),
            graceful_ramp_down: thirty_seconds(),
        };
        e.scale(0.01);
        assert_eq!(e.max_vus(), 30);
        assert_eq!(e.duration(), Duration::from_secs(40));
    }
}
