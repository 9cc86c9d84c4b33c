//! From a response to the step's result: the status check, the body kept in
//! the output (capped), and the extracted values.

use meridian_sdk::http::Response;
use meridian_sdk::{Output, StepError};
use serde_json::{Map, Value, json};

use crate::extract;
use crate::plan::Plan;
use crate::status;

/// How much of the body an error message quotes.
const SNIPPET_CHARS: usize = 200;

/// The step's result for `response`: an [`Output`] when the status is
/// expected and every required extraction resolves, else the error.
///
/// The output is
/// `{ status, method, url, headers, body, body_bytes, body_truncated, extracted, elapsed_ms }`:
/// `body` is the parsed JSON when the body is JSON and fits under the cap,
/// otherwise its text cut at the cap (null when empty); each extracted value
/// is also exported as a variable of the same name.
pub fn to_output(plan: &Plan, response: &Response, elapsed_ms: u64) -> Result<Output, StepError> {
    if !plan.expected.contains(response.status) {
        return Err(unexpected_status(plan, response));
    }

    let json_body = parse_json(response, !plan.extractions.is_empty());
    let extracted = extract::extract(json_body.as_ref(), &plan.extractions)
        .map_err(|e| StepError::failed(format!("{} {}: {e}", plan.method, plan.url)))?;

    let (body, body_truncated) = kept_body(response, json_body, plan.max_body_bytes);
    let mut headers = Map::new();
    for (name, value) in &response.headers {
        let lower = name.to_ascii_lowercase();
        if plan.response_headers.contains(&lower) {
            headers
                .entry(lower)
                .and_modify(|v| {
                    if let Value::String(s) = v {
                        s.push_str(", ");
                        s.push_str(value);
                    }
                })
                .or_insert_with(|| Value::String(value.clone()));
        }
    }

    let mut output = Output::new(json!({
        "status": response.status,
        "method": plan.method,
        "url": plan.url.as_str(),
        "headers": headers,
        "body": body,
        "body_bytes": response.body.len(),
        "body_truncated": body_truncated,
        "extracted": extracted,
        "elapsed_ms": elapsed_ms,
    }));
    for (name, value) in extracted {
        output = output.export(name, value);
    }
    Ok(output)
}

/// The error for a status outside `expected_status`: retryable for the
/// transient ones (see [`status::is_transient`]), failed otherwise, quoting
/// the start of the body either way.
pub fn unexpected_status(plan: &Plan, response: &Response) -> StepError {
    let mut message = format!(
        "{} {} answered HTTP {}, expected {}",
        plan.method, plan.url, response.status, plan.expected
    );
    let snippet = snippet(&response.text(), SNIPPET_CHARS);
    if !snippet.is_empty() {
        message.push_str(": ");
        message.push_str(&snippet);
    }
    if let Some(retry_after) = response.header("retry-after") {
        message.push_str(&format!(" (Retry-After: {retry_after})"));
    }
    if status::is_transient(response.status) {
        StepError::Retryable(message)
    } else {
        StepError::Failed(message)
    }
}

/// Parses the body as JSON when it says it is JSON, says nothing, or JSON is
/// needed for extraction.
fn parse_json(response: &Response, needed: bool) -> Option<Value> {
    if response.body.is_empty() {
        return None;
    }
    let declared_json = match response.content_type() {
        Some(media_type) => media_type == "application/json" || media_type.ends_with("+json"),
        None => true,
    };
    if declared_json || needed {
        serde_json::from_slice(&response.body).ok()
    } else {
        None
    }
}

/// The body as kept in the output, and whether it was cut.
fn kept_body(response: &Response, json_body: Option<Value>, cap: usize) -> (Value, bool) {
    if response.body.is_empty() {
        return (Value::Null, false);
    }
    if response.body.len() <= cap
        && let Some(json) = json_body
    {
        return (json, false);
    }
    let text = response.text();
    if response.body.len() <= cap {
        return (Value::String(text), false);
    }
    // Cut the text at the byte cap, on a character boundary.
    let mut end = cap.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (Value::String(text[..end].to_string()), true)
}

/// The start of `text` on one line, at most `max` characters, `…` when cut.
fn snippet(text: &str, max: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max {
        collapsed
    } else {
        let mut cut: String = collapsed.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Config;

    fn plan_for(config: Value) -> Plan {
        let config: Config = meridian_sdk::parse_config(&config.to_string()).unwrap();
        crate::plan::plan(&config).unwrap()
    }

    fn response(status: u16, content_type: Option<&str>, body: &str) -> Response {
        Response {
            status,
            headers: content_type
                .map(|ct| vec![("Content-Type".to_string(), ct.to_string())])
                .unwrap_or_default(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn json_responses_are_kept_and_extracted() {
        let plan = plan_for(json!({
            "url": "https://status.example.com/api/v1",
            "extract": {"state": "/status/indicator", "eta": {"pointer": "/eta", "optional": true}}
        }));
        let mut resp = response(
            200,
            Some("application/json; charset=utf-8"),
            r#"{"status":{"indicator":"none"}}"#,
        );
        resp.headers.push(("ETag".into(), "\"v1\"".into()));
        resp.headers.push(("Set-Cookie".into(), "s=1".into()));
        let out = to_output(&plan, &resp, 12).unwrap();
        assert_eq!(
            out.value(),
            &json!({
                "status": 200,
                "method": "GET",
                "url": "https://status.example.com/api/v1",
                "headers": {"content-type": "application/json; charset=utf-8", "etag": "\"v1\""},
                "body": {"status": {"indicator": "none"}},
                "body_bytes": 31,
                "body_truncated": false,
                "extracted": {"eta": null, "state": "none"},
                "elapsed_ms": 12
            })
        );
        assert_eq!(out.exported("state"), Some(&json!("none")));
        assert_eq!(out.exported("eta"), Some(&Value::Null));
    }

    #[test]
    fn text_and_oversized_bodies_are_capped() {
        let plan = plan_for(json!({"url": "https://x.example", "max_body_bytes": 5}));
        let out = to_output(&plan, &response(200, Some("text/plain"), "héllo world"), 1).unwrap();
        assert_eq!(out.value()["body"], "héll");
        assert_eq!(out.value()["body_truncated"], true);
        let out = to_output(&plan, &response(200, None, r#"{"a": [1, 2, 3]}"#), 1).unwrap();
        assert_eq!(out.value()["body"], r#"{"a":"#);
        assert_eq!(out.value()["body_truncated"], true);
        let out = to_output(&plan, &response(204, None, ""), 1).unwrap();
        assert_eq!(out.value()["body"], Value::Null);
        let plan = plan_for(json!({"url": "https://x.example"}));
        let out = to_output(&plan, &response(200, Some("text/html"), "<p>[1]</p>"), 1).unwrap();
        assert_eq!(out.value()["body"], "<p>[1]</p>");
    }

    #[test]
    fn extraction_reads_json_whatever_the_content_type() {
        let plan = plan_for(json!({"url": "https://x.example", "extract": {"n": "/n"}}));
        let out = to_output(&plan, &response(200, Some("text/plain"), r#"{"n": 3}"#), 1).unwrap();
        assert_eq!(out.exported("n"), Some(&json!(3)));
    }

    #[test]
    fn missing_pointers_fail_naming_the_pointer() {
        let plan = plan_for(
            json!({"url": "https://x.example/s", "extract": {"state": "/status/indicator"}}),
        );
        let err = to_output(&plan, &response(200, None, r#"{"status":{}}"#), 1).unwrap_err();
        assert_eq!(
            err,
            StepError::Failed(
                "GET https://x.example/s: extract `state`: JSON pointer `/status/indicator` does not resolve in the response body (mark it `\"optional\": true` if it may be absent)".into()
            )
        );
        let err = to_output(&plan, &response(200, Some("text/html"), "<html>"), 1).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("extract `state`: the response body is not JSON"),
            "{err}"
        );
    }

    #[test]
    fn unexpected_statuses_fail_or_ask_for_a_retry() {
        let plan = plan_for(json!({"url": "https://x.example/a", "expected_status": ["2xx", 304]}));
        let err = to_output(
            &plan,
            &response(
                404,
                Some("application/json"),
                "{\"error\":\n  \"no such thing\"}",
            ),
            1,
        )
        .unwrap_err();
        assert_eq!(
            err,
            StepError::Failed(
                "GET https://x.example/a answered HTTP 404, expected 2xx, 304: {\"error\": \"no such thing\"}".into()
            )
        );
        let mut busy = response(503, None, &"x".repeat(500));
        busy.headers.push(("Retry-After".into(), "30".into()));
        match to_output(&plan, &busy, 1).unwrap_err() {
            StepError::Retryable(m) => {
                assert!(
                    m.contains("HTTP 503") && m.ends_with("… (Retry-After: 30)"),
                    "{m}"
                );
                assert!(m.len() < 320, "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert!(to_output(&plan, &response(304, None, ""), 1).is_ok());
        let plan = plan_for(json!({"url": "https://x.example/a", "expected_status": 404}));
        assert!(to_output(&plan, &response(404, None, ""), 1).is_ok());
        assert!(matches!(
            to_output(&plan, &response(200, None, ""), 1),
            Err(StepError::Failed(_))
        ));
    }
}
