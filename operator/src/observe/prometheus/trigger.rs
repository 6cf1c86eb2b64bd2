//! A `scaling.triggers[].prometheus` query: one instant query whose answer must be exactly
//! one finite number. Every other answer is the trigger's "unavailable" with a message that
//! says what came back, so MetricsAvailable=False tells the user what to fix in the query.

use serde_json::Value;

use super::{PromClient, query_url};

/// The value of `query` on the Prometheus at `base_url` (`http` carries the credentials).
pub async fn value(http: &PromClient, base_url: &str, query: &str) -> Result<f64, String> {
    let url = query_url(base_url, query).map_err(|e| e.to_string())?;
    let (status, body) = http.fetch(url.as_str()).await?;
    if let Some(why) = super::refused(status, http) {
        return Err(why);
    }
    let json: Value = serde_json::from_slice(&body).map_err(|_| {
        format!(
            "Prometheus answered HTTP {status} with a body that is not its JSON: {}",
            snippet(&body)
        )
    })?;
    parse(&json)
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// The number in an instant-query answer, or why there is none.
pub fn parse(json: &Value) -> Result<f64, String> {
    if json["status"] != "success" {
        let why = json["error"].as_str().unwrap_or("no reason given");
        return Err(format!("the query failed: {why}"));
    }
    let data = &json["data"];
    let raw = match data["resultType"].as_str() {
        Some("scalar") => &data["result"][1],
        Some("vector") => {
            let series = data["result"].as_array().map_or(&[][..], Vec::as_slice);
            match series {
                [] => return Err("the query returned no series (empty result)".into()),
                [one] => &one["value"][1],
                many => {
                    let labels: Vec<String> = many
                        .iter()
                        .take(3)
                        .map(|s| s["metric"].to_string())
                        .collect();
                    return Err(format!(
                        "the query returned {} series ({}{}); it must return one: aggregate it (sum, max)",
                        many.len(),
                        labels.join(", "),
                        if many.len() > 3 { ", …" } else { "" }
                    ));
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "the query returned a {other}; it must return one number (an instant vector of one series or a scalar)"
            ));
        }
        None => return Err("the answer has no resultType".into()),
    };
    let text = raw.as_str().unwrap_or("");
    let value: f64 = text
        .parse()
        .map_err(|_| format!("the query returned {raw}, not a number"))?;
    if value.is_nan() {
        return Err("the query returned NaN (a division by zero, or no data in its window)".into());
    }
    if value.is_infinite() {
        return Err(format!("the query returned {text}"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::parse;

    fn vector(series: &[(&str, &str)]) -> serde_json::Value {
        let result: Vec<_> = series
            .iter()
            .map(|(job, v)| json!({"metric": {"job": job}, "value": [1.0, v]}))
            .collect();
        json!({"status": "success", "data": {"resultType": "vector", "result": result}})
    }

    #[test]
    fn one_series_or_a_scalar_is_the_value() {
        assert_eq!(parse(&vector(&[("a", "42.5")])), Ok(42.5));
        let scalar =
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "7"]}});
        assert_eq!(parse(&scalar), Ok(7.0));
    }

    #[test]
    fn every_other_answer_says_what_came_back() {
        let err = |v| parse(&v).expect_err("not a value");
        assert!(err(vector(&[])).contains("no series"));
        let many = err(vector(&[("a", "1"), ("b", "2")]));
        assert!(
            many.contains("2 series") && many.contains(r#"{"job":"a"}"#),
            "{many}"
        );
        assert!(err(vector(&[("a", "NaN")])).contains("NaN"));
        assert!(err(vector(&[("a", "+Inf")])).contains("+Inf"));
        let matrix = json!({"status": "success", "data": {"resultType": "matrix", "result": []}});
        assert!(err(matrix).contains("returned a matrix"));
        let failed = json!({"status": "error", "error": "parse error at char 3"});
        assert!(err(failed).contains("parse error at char 3"));
    }
}
