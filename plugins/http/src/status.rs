//! Which response statuses count as success (`expected_status`), and which
//! unexpected ones are worth a retry.

use std::fmt;
use std::ops::RangeInclusive;

use crate::config::StatusSpec;

/// A set of status codes, parsed from `expected_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet {
    /// Each spec as written, with the codes it covers.
    ranges: Vec<(String, RangeInclusive<u16>)>,
}

impl Default for StatusSet {
    /// `2xx`.
    fn default() -> Self {
        StatusSet {
            ranges: vec![("2xx".to_string(), 200..=299)],
        }
    }
}

impl StatusSet {
    /// Builds the set from already-parsed ranges.
    pub fn new(ranges: Vec<(String, RangeInclusive<u16>)>) -> Self {
        StatusSet { ranges }
    }

    /// Whether `status` is in the set.
    pub fn contains(&self, status: u16) -> bool {
        self.ranges.iter().any(|(_, r)| r.contains(&status))
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let specs: Vec<&str> = self.ranges.iter().map(|(s, _)| s.as_str()).collect();
        f.write_str(&specs.join(", "))
    }
}

/// Parses one spec: a code (`204` or `"204"`), a class (`"2xx"`) or an
/// inclusive range (`"200-299"`). Codes are 100 to 599.
pub fn parse_spec(spec: &StatusSpec) -> Result<(String, RangeInclusive<u16>), String> {
    match spec {
        StatusSpec::Code(code) => {
            check_code(*code)?;
            Ok((code.to_string(), *code..=*code))
        }
        StatusSpec::Text(text) => {
            let t = text.trim();
            let range = parse_text(t).ok_or_else(|| {
                format!(
                    "`{text}` is not a status code (`404`), a class (`2xx`) or a range (`200-299`)"
                )
            })??;
            Ok((t.to_ascii_lowercase(), range))
        }
    }
}

/// `None` when the text has none of the three shapes; `Some(Err)` when it
/// has one but the numbers are wrong.
fn parse_text(t: &str) -> Option<Result<RangeInclusive<u16>, String>> {
    let lower = t.to_ascii_lowercase();
    if let Some(class) = lower.strip_suffix("xx") {
        let digit = single_digit(class)?;
        return Some(if (1..=5).contains(&digit) {
            Ok(digit * 100..=digit * 100 + 99)
        } else {
            Err(format!(
                "`{t}` is not a status class: classes are 1xx to 5xx"
            ))
        });
    }
    if let Some((lo, hi)) = t.split_once('-') {
        let (lo, hi) = (number(lo.trim())?, number(hi.trim())?);
        return Some(check_code(lo).and(check_code(hi)).and_then(|()| {
            if lo <= hi {
                Ok(lo..=hi)
            } else {
                Err(format!("the range `{t}` is empty: {lo} is above {hi}"))
            }
        }));
    }
    let code = number(t)?;
    Some(check_code(code).map(|()| code..=code))
}

fn single_digit(s: &str) -> Option<u16> {
    let mut chars = s.chars();
    let d = chars.next()?.to_digit(10)?;
    if chars.next().is_some() {
        return None;
    }
    u16::try_from(d).ok()
}

fn number(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn check_code(code: u16) -> Result<(), String> {
    if (100..=599).contains(&code) {
        Ok(())
    } else {
        Err(format!("{code} is not an HTTP status code (100 to 599)"))
    }
}

/// Whether an unexpected status is worth a retry: the server asked for one
/// (408 Request Timeout, 429 Too Many Requests) or had a transient failure
/// (500, 502, 503, 504). Other statuses mean the request itself is wrong
/// and a retry would only repeat the answer.
pub fn is_transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> StatusSpec {
        StatusSpec::Text(s.to_string())
    }

    #[test]
    fn parses_codes_classes_and_ranges() {
        assert_eq!(
            parse_spec(&StatusSpec::Code(204)),
            Ok(("204".into(), 204..=204))
        );
        assert_eq!(parse_spec(&text("2xx")), Ok(("2xx".into(), 200..=299)));
        assert_eq!(parse_spec(&text(" 4XX ")), Ok(("4xx".into(), 400..=499)));
        assert_eq!(
            parse_spec(&text("200-204")),
            Ok(("200-204".into(), 200..=204))
        );
        assert_eq!(
            parse_spec(&text("301 - 302")),
            Ok(("301 - 302".into(), 301..=302))
        );
        assert_eq!(parse_spec(&text("404")), Ok(("404".into(), 404..=404)));
    }

    #[test]
    fn rejects_bad_specs_with_reasons() {
        let err = |s: &str| parse_spec(&text(s)).unwrap_err();
        assert!(
            err("abc").contains("is not a status code"),
            "{}",
            err("abc")
        );
        assert!(err("").contains("is not a status code"));
        assert!(err("2x").contains("is not a status code"));
        assert!(err("22xx").contains("is not a status code"));
        assert_eq!(
            err("6xx"),
            "`6xx` is not a status class: classes are 1xx to 5xx"
        );
        assert_eq!(
            err("0xx"),
            "`0xx` is not a status class: classes are 1xx to 5xx"
        );
        assert_eq!(
            err("299-200"),
            "the range `299-200` is empty: 299 is above 200"
        );
        assert_eq!(err("99"), "99 is not an HTTP status code (100 to 599)");
        assert_eq!(
            err("200-700"),
            "700 is not an HTTP status code (100 to 599)"
        );
        assert!(err("-200").contains("is not a status code"));
        assert!(err("+200").contains("is not a status code"));
        assert_eq!(
            parse_spec(&StatusSpec::Code(600)).unwrap_err(),
            "600 is not an HTTP status code (100 to 599)"
        );
    }

    #[test]
    fn sets_match_and_describe_themselves() {
        let set = StatusSet::default();
        assert!(set.contains(200) && set.contains(299) && !set.contains(300) && !set.contains(199));
        let set = StatusSet::new(vec![
            parse_spec(&text("2xx")).unwrap(),
            parse_spec(&StatusSpec::Code(304)).unwrap(),
        ]);
        assert!(set.contains(304) && !set.contains(305));
        assert_eq!(set.to_string(), "2xx, 304");
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_transient(s), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 501, 505] {
            assert!(!is_transient(s), "{s}");
        }
    }
}
