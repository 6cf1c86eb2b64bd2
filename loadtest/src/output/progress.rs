//! The line k6 keeps redrawing during a run: elapsed time, VUs, iterations, request rate.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::recorder::Recorder;

/// Formats one progress line from the live counters; `last_reqs` gives the rate.
pub fn line(rec: &Recorder, total: Duration, last_reqs: u64, interval: Duration) -> String {
    let l = &rec.live;
    let reqs = l.reqs.load(Relaxed);
    let rate = (reqs - last_reqs.min(reqs)) as f64 / interval.as_secs_f64().max(1e-9);
    format!(
        "running ({:.1}s/{:.0}s), {}/{} VUs, {} complete iterations, {} dropped, {} reqs ({} failed), {:.0} req/s",
        rec.start.elapsed().as_secs_f64(),
        total.as_secs_f64(),
        l.vus.load(Relaxed),
        l.vus_max.load(Relaxed),
        l.iterations.load(Relaxed),
        l.dropped.load(Relaxed),
        reqs,
        l.failed.load(Relaxed),
        rate
    )
}

/// Prints to stderr: redrawn in place on a terminal, one line per tick otherwise.
pub fn print(text: &str) {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[2K{text}");
    } else {
        let _ = writeln!(err, "{text}");
    }
    let _ = err.flush();
}
