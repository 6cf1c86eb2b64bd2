//! floodgate-loadtest: a load generator that speaks k6's language (executors, stages,
//! thresholds, summary JSON) and is honest about latency: open-model iterations are
//! measured from their intended start, dropped iterations and generator lag are reported,
//! and histograms from many shards merge into exact global percentiles.
//!
//! Layout: `config`/`cli`/`flags` read options; `schedule`/`segment` are the pure timing maths;
//! `executor` runs VUs; `vu`/`client` are the scenario API, and `wire` the HTTP/1.1 they
//! speak; `recorder`/`metrics`/`values` hold measurements; `thresholds`, `report` and
//! `output` judge and print; `scenarios` holds the source reports' load tests; `ceiling` is
//! the bare HTTP ceiling server.

pub mod ceiling;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod duration;
pub mod executor;
pub mod flags;
pub mod metrics;
pub mod output;
pub mod recorder;
pub mod report;
pub mod runner;
pub mod scenarios;
pub mod schedule;
pub mod segment;
pub mod think;
pub mod thresholds;
pub mod values;
pub mod vu;
pub mod wire;
