//! Ways a run reports: the k6-style console summary, the `handleSummary`-shaped JSON,
//! the live progress line and the InfluxDB stream.

pub mod console;
pub mod influx;
pub mod progress;
pub mod summary;
