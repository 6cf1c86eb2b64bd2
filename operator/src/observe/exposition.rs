//! A reader for the Prometheus / OpenMetrics text exposition the app serves on `/metrics`:
//! just enough to find the queue gauges and the latency histogram, tolerant of everything
//! else (comments, `# EOF`, exemplars, timestamps).

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    pub line: usize,
    pub problem: &'static str,
}

pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |problem| ParseError {
            line: i + 1,
            problem,
        };
        // Exemplars (` # {...} v`) follow the value; they are not part of the sample.
        let line = line.split(" # ").next().unwrap_or(line);
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = find_label_end(line, open).ok_or_else(|| err("unterminated labels"))?;
                (
                    &line[..open],
                    parse_labels(&line[open + 1..close]).ok_or_else(|| err("bad labels"))?,
                    &line[close + 1..],
                )
            }
            None => {
                let sp = line.find(' ').ok_or_else(|| err("no value"))?;
                (&line[..sp], BTreeMap::new(), &line[sp..])
            }
        };
        let value_str = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| err("no value"))?;
        let value = parse_value(value_str).ok_or_else(|| err("bad value"))?;
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(out)
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Index of the `}` closing the label set, skipping braces inside quoted values.
fn find_label_end(line: &str, open: usize) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in line[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(open + i),
            _ => {}
        }
    }
    None
}

fn parse_labels(s: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_owned();
        rest = rest[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key, value);
        rest = rest[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(labels)
}

/// Metric families the text declares with `# TYPE name kind`, sampled or not: a family with
/// no series yet (a gauge family nobody has set) is exported but empty, not missing.
pub fn declared_families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The value of `name{label=value}` summed over its other labels, if present.
pub fn gauge(samples: &[Sample], name: &str, label: &str, value: &str) -> Option<f64> {
    let matching: Vec<_> = samples
        .iter()
        .filter(|s| s.name == name && s.labels.get(label).map(String::as_str) == Some(value))
        .collect();
    (!matching.is_empty()).then(|| matching.iter().map(|s| s.value).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP floodgate_queue_waiting Users waiting.
# TYPE floodgate_queue_waiting gauge
floodgate_queue_waiting{queue="concert-42"} 91000
floodgate_queue_waiting{queue="other"} 3
floodgate_http_request_duration_seconds_bucket{route="/a",le="0.25"} 10 1700000000
floodgate_http_request_duration_seconds_bucket{route="/b{x}",le="+Inf"} 12 # {trace_id="a"} 0.3
weird{msg="quote \" and \\ and \n"} 1.5e3
# EOF
"#;

    #[test]
    fn parses_gauges_buckets_escapes_and_exemplars() {
        let s = parse(TEXT).expect("parses");
        assert_eq!(s.len(), 5);
        assert_eq!(
            gauge(&s, "floodgate_queue_waiting", "queue", "concert-42"),
            Some(91000.0)
        );
        assert_eq!(
            gauge(&s, "floodgate_queue_waiting", "queue", "missing"),
            None
        );
        assert_eq!(s[3].labels["route"], "/b{x}");
        assert_eq!(s[3].value, 12.0);
        assert_eq!(s[4].labels["msg"], "quote \" and \\ and \n");
        assert_eq!(s[4].value, 1500.0);
    }

    #[test]
    fn declared_families_include_empty_ones() {
        let text =
            "# HELP floodgate_queue_waiting Users waiting.\n# TYPE floodgate_queue_waiting gauge\n";
        assert!(parse(text).expect("parses").is_empty());
        assert_eq!(declared_families(text), ["floodgate_queue_waiting"]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("metric{le=\"1\" 3").is_err());
        assert!(parse("metric notanumber").is_err());
    }
}
