//! Cron expressions, parsed once into bit sets.
//!
//! A [`CronExpr`] knows nothing about zones: it answers "which local
//! (wall-clock) date-times match" and "what is the next matching local
//! date-time after this one". The zone layer (`zone.rs`) turns those
//! nominal local times into instants under the DST policy.
//!
//! Field syntax (docs/time.md, "Cron syntax"):
//!
//! | field        | values          | extras                              |
//! |--------------|-----------------|-------------------------------------|
//! | second (opt) | 0-59            |                                     |
//! | minute       | 0-59            |                                     |
//! | hour         | 0-23            |                                     |
//! | day-of-month | 1-31            | `?`, `L`, `L-n`, `nW`, `LW`         |
//! | month        | 1-12, JAN-DEC   |                                     |
//! | day-of-week  | 0-7, SUN-SAT    | `?`, `nL` (last), `n#k` (k-th)      |
//!
//! Every field takes `*`, values, ranges `a-b`, lists `a,b` and steps
//! (`*/15`, `10-40/5`, `5/10` = `5-max/10`). Names are case-insensitive.
//! Day of week 0 and 7 are both Sunday; `*` and `a/step` in day-of-week run
//! over 0-6 (so `1/2` is Mon, Wed, Fri), an explicit range may end at 7
//! (`5-7` is Fri-Sun). Ranges must not run backwards (`FRI-MON` is an
//! error: write `FRI-SAT,SUN-MON`). A step may not exceed the field's
//! largest value. When day-of-month and day-of-week are both restricted a
//! day matches if either matches (Vixie); a day field is unrestricted only
//! when it is exactly `*` or `?`.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The field a parse error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CronField {
    /// The expression as a whole (field count, unknown macro).
    Expression,
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl CronField {
    /// The field's name as written in error messages.
    pub fn name(self) -> &'static str {
        match self {
            CronField::Expression => "expression",
            CronField::Second => "second",
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
        }
    }

    /// The prefix of an error message: none for the expression as a whole.
    fn prefix(self) -> &'static str {
        match self {
            CronField::Expression => "",
            CronField::Second => "second: ",
            CronField::Minute => "minute: ",
            CronField::Hour => "hour: ",
            CronField::DayOfMonth => "day-of-month: ",
            CronField::Month => "month: ",
            CronField::DayOfWeek => "day-of-week: ",
        }
    }

    fn range(self) -> (u32, u32) {
        match self {
            CronField::Expression => (0, 0),
            CronField::Second | CronField::Minute => (0, 59),
            CronField::Hour => (0, 23),
            CronField::DayOfMonth => (1, 31),
            CronField::Month => (1, 12),
            CronField::DayOfWeek => (0, 7),
        }
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an expression did not parse: the field and the problem in words.
///
/// Displays as `"<field>: <message>"`, or just the message when the problem
/// is with the expression as a whole (`"expected 5 or 6 fields, got 4"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{prefix}{message}", prefix = .field.prefix())]
pub struct CronError {
    /// Which field is wrong, so an API can point at it.
    pub field: CronField,
    /// What is wrong with it, for a person.
    pub message: String,
}

impl CronError {
    fn new(field: CronField, message: impl Into<String>) -> Self {
        CronError {
            field,
            message: message.into(),
        }
    }
}

/// Whether a schedule is fixed-time or interval, which selects its default
/// DST behaviour (docs/time.md, "Daylight saving").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CronKind {
    /// Second, minute and hour hold only values or lists of values
    /// (`30 2 * * *`, `15,45 1 * * *`): a fire lost in a gap is shifted, a
    /// repeated local time fires once.
    FixedTime,
    /// Any `*`, `?`, range or step in second, minute or hour (`*/15 * * * *`,
    /// `0 0-4 * * *`): ticks in a gap are skipped, repeated local times fire
    /// in both passes.
    Interval,
}

/// Day-of-month matchers other than plain days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct DomSet {
    /// Bit `d` set: day `d` (1-31).
    pub(super) days: u64,
    /// Bit `n` set: `L-n` (`L` is `L-0`), the n-th day before the last.
    pub(super) from_last: u64,
    /// Bit `d` set: `dW`, the weekday nearest to day `d` within the month.
    pub(super) nearest_weekday: u64,
    /// `LW`: the last weekday (Mon-Fri) of the month.
    pub(super) last_weekday: bool,
}

/// Day-of-week matchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct DowSet {
    /// Bit `w` set: every weekday `w` (0 = Sunday).
    pub(super) days: u8,
    /// Bit `w` set: `wL`, the last weekday `w` of the month.
    pub(super) last: u8,
    /// `nth[w]` bit `k` set: `w#k`, the k-th weekday `w` of the month (1-5).
    pub(super) nth: [u8; 7],
}

/// A parsed cron expression: one bit set per field, so matching and
/// searching never look at the text again.
#[derive(Clone, PartialEq, Eq)]
pub struct CronExpr {
    /// The text as written (trimmed), for display and serialisation.
    source: Box<str>,
    pub(super) seconds: u64,
    pub(super) minutes: u64,
    pub(super) hours: u64,
    /// Bit `m` set: month `m` (1-12).
    pub(super) months: u64,
    pub(super) dom: DomSet,
    pub(super) dow: DowSet,
    /// Day-of-month is anything but exactly `*` or `?`.
    pub(super) dom_restricted: bool,
    /// Day-of-week is anything but exactly `*` or `?`.
    pub(super) dow_restricted: bool,
    kind: CronKind,
    /// Worked out at parse time so an expression that matches no day of
    /// any year (`0 0 30 2 *`) answers "never" at once instead of searching.
    can_fire: bool,
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronExpr").field(&self.source).finish()
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for CronExpr {
    type Err = CronError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronExpr::parse(s)
    }
}

impl Serialize for CronExpr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for CronExpr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        CronExpr::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How far ahead a search for the next match goes. The Gregorian calendar
/// repeats every 400 years, so an expression that matches at all matches
/// within any 400-year window; the bound only guards the loop.
pub(super) const HORIZON_YEARS: i32 = 400;

const MACROS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

impl CronExpr {
    /// Parses 5 fields (minute hour day-of-month month day-of-week), 6
    /// fields (a leading second) or a macro (`@daily` …).
    pub fn parse(text: &str) -> Result<CronExpr, CronError> {
        let source = text.trim();
        let expanded = if source.starts_with('@') {
            MACROS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(source))
                .map(|(_, fields)| *fields)
                .ok_or_else(|| {
                    CronError::new(
                        CronField::Expression,
                        format!(
                            "unknown macro '{source}'; expected one of @yearly, @annually, \
                             @monthly, @weekly, @daily, @midnight, @hourly"
                        ),
                    )
                })?
        } else {
            source
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (second, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(CronError::new(
                    CronField::Expression,
                    format!("expected 5 or 6 fields, got {n}"),
                ));
            }
        };
        let (minute, hour, dom, month, dow) = (rest[0], rest[1], rest[2], rest[3], rest[4]);

        let seconds = parse_plain(CronField::Second, second)?;
        let minutes = parse_plain(CronField::Minute, minute)?;
        let hours = parse_plain(CronField::Hour, hour)?;
        let dom_set = parse_dom(dom)?;
        let months = parse_plain(CronField::Month, month)?;
        let dow_set = parse_dow(dow)?;

        let kind = if [second, minute, hour].iter().all(|f| is_value_list(f)) {
            CronKind::FixedTime
        } else {
            CronKind::Interval
        };
        let mut expr = CronExpr {
            source: source.into(),
            seconds: seconds.bits,
            minutes: minutes.bits,
            hours: hours.bits,
            months: months.bits,
            dom: dom_set,
            dow: dow_set,
            dom_restricted: !is_unrestricted(dom),
            dow_restricted: !is_unrestricted(dow),
            kind,
            can_fire: false,
        };
        expr.can_fire = expr.compute_can_fire();
        Ok(expr)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Fixed-time or interval: selects the default DST behaviour.
    pub fn kind(&self) -> CronKind {
        self.kind
    }

    /// False when no day of any year matches (`0 0 30 2 *`): such an
    /// expression never fires, and a validator may want to say so.
    pub fn can_fire(&self) -> bool {
        self.can_fire
    }

    /// Whether a local date-time matches (sub-second part ignored).
    pub fn matches(&self, local: NaiveDateTime) -> bool {
        bit(self.seconds, local.second())
            && bit(self.minutes, local.minute())
            && bit(self.hours, local.hour())
            && bit(self.months, local.month())
            && self
                .day_mask(local.year(), local.month())
                .is_some_and(|mask| bit(mask, local.day()))
    }

    /// The first local date-time strictly after `after` that matches, on
    /// whole seconds. Jumps field by field (month, day, hour, minute,
    /// second), never second by second; `None` when nothing matches within
    /// 400 years.
    pub fn next_local_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let horizon = after.year().checked_add(HORIZON_YEARS)?;
        self.next_local_within(after, horizon)
    }

    /// As [`CronExpr::next_local_after`], giving up after the end of year
    /// `last_year`.
    pub(super) fn next_local_within(
        &self,
        after: NaiveDateTime,
        last_year: i32,
    ) -> Option<NaiveDateTime> {
        if !self.can_fire {
            return None;
        }
        let start = after
            .with_nanosecond(0)?
            .checked_add_signed(chrono::TimeDelta::seconds(1))?;
        let (mut y, mut mo, mut d) = (start.year(), start.month(), start.day());
        let (mut h, mut mi, mut s) = (start.hour(), start.minute(), start.second());
        loop {
            if y > last_year {
                return None;
            }
            match next_bit(self.months, mo) {
                Some(m) if m == mo => {}
                Some(m) => (mo, d, h, mi, s) = (m, 1, 0, 0, 0),
                None => {
                    (y, mo, d, h, mi, s) = (y + 1, 1, 1, 0, 0, 0);
                    continue;
                }
            }
            let days = self.day_mask(y, mo)?;
            match next_bit(days, d) {
                Some(x) if x == d => {}
                Some(x) => (d, h, mi, s) = (x, 0, 0, 0),
                None => {
                    (mo, d, h, mi, s) = (mo + 1, 1, 0, 0, 0);
                    continue;
                }
            }
            match next_bit(self.hours, h) {
                Some(x) if x == h => {}
                Some(x) => (h, mi, s) = (x, 0, 0),
                None => {
                    (d, h, mi, s) = (d + 1, 0, 0, 0);
                    continue;
                }
            }
            match next_bit(self.minutes, mi) {
                Some(x) if x == mi => {}
                Some(x) => (mi, s) = (x, 0),
                None => {
                    (h, mi, s) = (h + 1, 0, 0);
                    continue;
                }
            }
            match next_bit(self.seconds, s) {
                Some(x) => s = x,
                None => {
                    (mi, s) = (mi + 1, 0);
                    continue;
                }
            }
            let time = NaiveTime::from_hms_opt(h, mi, s)?;
            return NaiveDate::from_ymd_opt(y, mo, d).map(|date| date.and_time(time));
        }
    }

    /// The days of a month that match, as bits 1-31; `None` for a month
    /// chrono cannot represent.
    pub(super) fn day_mask(&self, year: i32, month: u32) -> Option<u64> {
        let last = days_in_month(year, month)?;
        if !self.dom_restricted && !self.dow_restricted {
            return Some(((1u64 << last) - 1) << 1);
        }
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        Some(self.day_mask_for(last, first.weekday().num_days_from_sunday()))
    }

    /// The matching days of a month with `last` days whose first day is
    /// weekday `first_wd` (0 = Sunday).
    fn day_mask_for(&self, last: u32, first_wd: u32) -> u64 {
        let all = ((1u64 << last) - 1) << 1;
        let mask = match (self.dom_restricted, self.dow_restricted) {
            (false, false) => all,
            (true, false) => self.dom.mask(last, first_wd),
            (false, true) => self.dow.mask(last, first_wd),
            (true, true) => self.dom.mask(last, first_wd) | self.dow.mask(last, first_wd),
        };
        mask & all
    }

    fn compute_can_fire(&self) -> bool {
        (1..=12u32).filter(|m| bit(self.months, *m)).any(|month| {
            let lengths: &[u32] = match month {
                2 => &[28, 29],
                4 | 6 | 9 | 11 => &[30],
                _ => &[31],
            };
            lengths
                .iter()
                .any(|last| (0..7).any(|wd| self.day_mask_for(*last, wd) != 0))
        })
    }
}

impl DomSet {
    fn mask(&self, last: u32, first_wd: u32) -> u64 {
        let mut mask = self.days;
        let weekday = |d: u32| (first_wd + d - 1) % 7;
        for n in bits(self.from_last) {
            if n < last {
                mask |= 1 << (last - n);
            }
        }
        for d in bits(self.nearest_weekday) {
            if d > last {
                continue; // `31W` does not fire in a 30-day month
            }
            let target = match weekday(d) {
                6 if d == 1 => 3,        // Saturday the 1st: Monday the 3rd
                6 => d - 1,              // Saturday: the Friday before
                0 if d == last => d - 2, // Sunday the last: the Friday before
                0 => d + 1,              // Sunday: the Monday after
                _ => d,
            };
            mask |= 1 << target;
        }
        if self.last_weekday {
            let target = match weekday(last) {
                6 => last - 1,
                0 => last - 2,
                _ => last,
            };
            mask |= 1 << target;
        }
        mask
    }
}

impl DowSet {
    fn mask(&self, last: u32, first_wd: u32) -> u64 {
        // Every weekday `w` in `days`: day 1 + (w - first_wd) mod 7, repeated
        // weekly. Rotating the 7-bit weekday set by the 1st's weekday gives
        // days 1-7; copies 7 days apart give the rest.
        let week = u64::from(self.days & 0x7f);
        let first_week = ((week >> first_wd) | (week << (7 - first_wd))) & 0x7f;
        let mut mask = (first_week * 0x1020_4081) << 1; // copies at 0, 7, 14, 21, 28
        if self.last == 0 && self.nth == [0; 7] {
            return mask;
        }
        for w in 0..7u32 {
            // The first day of the month that falls on weekday `w`.
            let first = 1 + (w + 7 - first_wd) % 7;
            if self.last & (1 << w) != 0 {
                mask |= 1 << (first + (last - first) / 7 * 7);
            }
            for k in bits(u64::from(self.nth[w as usize])) {
                let d = first + 7 * (k - 1);
                if d <= last {
                    mask |= 1 << d;
                }
            }
        }
        mask
    }
}

fn days_in_month(year: i32, month: u32) -> Option<u32> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => Some(31),
        4 | 6 | 9 | 11 => Some(30),
        2 if leap => Some(29),
        2 => Some(28),
        _ => None,
    }
}

fn bit(mask: u64, n: u32) -> bool {
    n < 64 && mask & (1 << n) != 0
}

/// The lowest set bit at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = mask >> from;
    (rest != 0).then(|| from + rest.trailing_zeros())
}

/// The set bits of `mask`, lowest first.
fn bits(mut mask: u64) -> impl Iterator<Item = u32> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let bit = mask.trailing_zeros();
            mask &= mask - 1;
            bit
        })
    })
}

fn is_unrestricted(field: &str) -> bool {
    field == "*" || field == "?"
}

/// Only values and lists of values: no `*`, `?`, range or step.
fn is_value_list(field: &str) -> bool {
    !field.contains(['*', '?', '-', '/'])
}

struct Plain {
    bits: u64,
}

/// A field made only of `*`, values, ranges, lists and steps.
fn parse_plain(field: CronField, text: &str) -> Result<Plain, CronError> {
    if text == "?" {
        return Err(CronError::new(
            field,
            "'?' is only allowed in day-of-month and day-of-week",
        ));
    }
    let mut bits = 0u64;
    for item in items(field, text)? {
        bits |= parse_item(field, item)?;
    }
    Ok(Plain { bits })
}

/// Splits a list, rejecting empty items (`1,,2`, `1,`).
fn items(field: CronField, text: &str) -> Result<Vec<&str>, CronError> {
    let items: Vec<&str> = text.split(',').collect();
    if items.iter().any(|item| item.is_empty()) {
        return Err(CronError::new(
            field,
            format!("empty item in list '{text}'"),
        ));
    }
    Ok(items)
}

/// One list item of a plain field: `*`, `*/s`, `a`, `a-b`, `a/s`, `a-b/s`.
fn parse_item(field: CronField, item: &str) -> Result<u64, CronError> {
    let (min, max) = field.range();
    // `*` and open-ended steps in day-of-week run over 0-6: 7 is only an alias.
    let open_max = if field == CronField::DayOfWeek {
        6
    } else {
        max
    };
    if let Some(bad) = item
        .chars()
        .find(|c| matches!(c, 'L' | 'l' | 'W' | 'w' | '#' | '?'))
        && !has_name_letter(field, item)
    {
        let place = match bad {
            '#' => "day-of-week",
            'W' | 'w' => "day-of-month",
            '?' => {
                return Err(CronError::new(
                    field,
                    "'?' must be the whole field, not part of a list",
                ));
            }
            _ => "day-of-month and day-of-week",
        };
        return Err(CronError::new(
            field,
            format!("'{bad}' is only allowed in {place}"),
        ));
    }
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(parse_step(field, step)?)),
        None => (item, None),
    };
    let (lo, hi) = if range == "*" {
        (min, open_max)
    } else if let Some((a, b)) = range.split_once('-') {
        let lo = parse_value(field, a)?;
        let hi = parse_value(field, b)?;
        if lo > hi {
            return Err(CronError::new(
                field,
                format!("range {range} runs backwards; its start must not be after its end"),
            ));
        }
        (lo, hi)
    } else {
        let value = parse_value(field, range)?;
        // `5/10` means from 5 to the field's end; `5` alone is just 5.
        (
            value,
            if step.is_some() {
                open_max.max(value)
            } else {
                value
            },
        )
    };
    let step = step.unwrap_or(1);
    let mut bits = 0u64;
    let mut v = lo;
    while v <= hi {
        bits |= 1 << v;
        v += step;
    }
    if field == CronField::DayOfWeek && bits & (1 << 7) != 0 {
        bits = (bits & !(1 << 7)) | 1; // 7 is Sunday
    }
    Ok(bits)
}

/// Whether the item may legitimately contain an L/W letter because it is a
/// name (`JUL`, `WED`, `LW` handled elsewhere).
fn has_name_letter(field: CronField, item: &str) -> bool {
    matches!(field, CronField::Month | CronField::DayOfWeek)
        && item.chars().any(|c| c.is_ascii_alphabetic())
        && !item.contains(['#', '?'])
}

fn parse_step(field: CronField, text: &str) -> Result<u32, CronError> {
    let (_, max) = field.range();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CronError::new(
            field,
            format!("expected a number after '/', got '{text}'"),
        ));
    }
    match text.parse::<u32>() {
        Ok(step) if (1..=max).contains(&step) => Ok(step),
        _ => Err(CronError::new(
            field,
            format!("step {text} is out of range 1-{max}"),
        )),
    }
}

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A number in the field's range, or a month or day name.
fn parse_value(field: CronField, text: &str) -> Result<u32, CronError> {
    let (min, max) = field.range();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(CronError::new(
                field,
                format!("{text} is out of range {min}-{max}"),
            )),
        };
    }
    let names: &[&str] = match field {
        CronField::Month => &MONTH_NAMES,
        CronField::DayOfWeek => &DAY_NAMES,
        _ => &[],
    };
    if let Some(index) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        let base = if field == CronField::Month { 1 } else { 0 };
        // index < 12, so this cannot truncate.
        return Ok(index as u32 + base);
    }
    let expected = match field {
        CronField::Month => "a number or a month name (JAN-DEC)",
        CronField::DayOfWeek => "a number or a day name (SUN-SAT)",
        _ => "a number",
    };
    Err(CronError::new(
        field,
        format!("expected {expected}, got '{text}'"),
    ))
}

fn strip_suffix_ci(text: &str, suffix: char) -> Option<&str> {
    let last = text.chars().last()?;
    last.eq_ignore_ascii_case(&suffix)
        .then(|| &text[..text.len() - last.len_utf8()])
}

fn parse_dom(text: &str) -> Result<DomSet, CronError> {
    const F: CronField = CronField::DayOfMonth;
    let mut set = DomSet::default();
    if text == "?" {
        return Ok(set); // unrestricted: the restriction flag says so
    }
    for item in items(F, text)? {
        if item.eq_ignore_ascii_case("L") {
            set.from_last |= 1;
        } else if item.eq_ignore_ascii_case("LW") {
            set.last_weekday = true;
        } else if let Some(offset) = item
            .strip_prefix(['L', 'l'])
            .and_then(|rest| rest.strip_prefix('-'))
        {
            if offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CronError::new(
                    F,
                    format!("expected a number after 'L-', got '{offset}'"),
                ));
            }
            match offset.parse::<u32>() {
                Ok(n) if n <= 30 => set.from_last |= 1 << n,
                _ => {
                    return Err(CronError::new(
                        F,
                        format!("offset {offset} in {item} is out of range 0-30"),
                    ));
                }
            }
        } else if let Some(day) = strip_suffix_ci(item, 'W') {
            if day.is_empty() || !day.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CronError::new(
                    F,
                    format!("'W' needs a single day before it (like 15W), got '{item}'"),
                ));
            }
            set.nearest_weekday |= 1 << parse_value(F, day)?;
        } else if item.contains(['L', 'l']) {
            return Err(CronError::new(
                F,
                format!("expected L, L-n or LW, got '{item}'"),
            ));
        } else {
            set.days |= parse_item(F, item)?;
        }
    }
    Ok(set)
}

fn parse_dow(text: &str) -> Result<DowSet, CronError> {
    const F: CronField = CronField::DayOfWeek;
    let mut set = DowSet::default();
    if text == "?" {
        return Ok(set); // unrestricted: the restriction flag says so
    }
    for item in items(F, text)? {
        if let Some((day, nth)) = item.split_once('#') {
            let w = parse_value(F, day)? % 7;
            if nth.is_empty() || !nth.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CronError::new(
                    F,
                    format!("expected a number after '#', got '{nth}'"),
                ));
            }
            match nth.parse::<u32>() {
                Ok(k) if (1..=5).contains(&k) => set.nth[w as usize] |= 1 << k,
                _ => {
                    return Err(CronError::new(
                        F,
                        format!("occurrence {nth} in {item} is out of range 1-5"),
                    ));
                }
            }
        } else if let Some(day) = strip_suffix_ci(item, 'L')
            && !day.is_empty()
            && !DAY_NAMES.iter().any(|n| n.eq_ignore_ascii_case(item))
        {
            if day.contains(['-', '/', '*']) {
                return Err(CronError::new(
                    F,
                    format!("'L' needs a single weekday before it (like 5L), got '{item}'"),
                ));
            }
            set.last |= 1 << (parse_value(F, day)? % 7);
        } else if item.eq_ignore_ascii_case("L") {
            return Err(CronError::new(
                F,
                "'L' needs a weekday before it (like 5L for the last Friday)",
            ));
        } else {
            // parse_item folds 7 into 0 and keeps bits 0-6.
            set.days |= parse_item(F, item)? as u8;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").unwrap()
    }

    /// The next `n` matches after `from`, as `YYYY-MM-DDTHH:MM:SS`.
    fn next(expr: &str, from: &str, n: usize) -> Vec<String> {
        let cron = CronExpr::parse(expr).unwrap();
        let mut cursor = at(from);
        let mut out = Vec::new();
        for _ in 0..n {
            let Some(found) = cron.next_local_after(cursor) else {
                break;
            };
            out.push(found.format("%Y-%m-%dT%H:%M:%S").to_string());
            cursor = found;
        }
        out
    }

    /// The next `n` matching dates after `from` (midnight schedules).
    fn days(expr: &str, from: &str, n: usize) -> Vec<String> {
        next(expr, &format!("{from}T00:00:00"), n)
            .into_iter()
            .map(|s| s[..10].to_owned())
            .collect()
    }

    fn err(expr: &str) -> String {
        CronExpr::parse(expr).unwrap_err().to_string()
    }

    #[test]
    fn every_parse_error_names_the_field_and_the_problem() {
        let cases = [
            ("0 0 1 1", "expected 5 or 6 fields, got 4"),
            ("", "expected 5 or 6 fields, got 0"),
            ("1 2 3 4 5 6 7", "expected 5 or 6 fields, got 7"),
            (
                "@reboot",
                "unknown macro '@reboot'; expected one of @yearly, @annually, @monthly, \
                 @weekly, @daily, @midnight, @hourly",
            ),
            ("x * * * *", "minute: expected a number, got 'x'"),
            ("+5 * * * *", "minute: expected a number, got '+5'"),
            ("60 * * * * *", "second: 60 is out of range 0-59"),
            (
                "99999999999 * * * *",
                "minute: 99999999999 is out of range 0-59",
            ),
            ("* 24 * * *", "hour: 24 is out of range 0-23"),
            ("0 0 32 * *", "day-of-month: 32 is out of range 1-31"),
            ("0 0 0 * *", "day-of-month: 0 is out of range 1-31"),
            ("* * * 13 *", "month: 13 is out of range 1-12"),
            (
                "* * * FOO *",
                "month: expected a number or a month name (JAN-DEC), got 'FOO'",
            ),
            ("* * * * 8", "day-of-week: 8 is out of range 0-7"),
            (
                "* * * * FUN",
                "day-of-week: expected a number or a day name (SUN-SAT), got 'FUN'",
            ),
            ("*/0 * * * *", "minute: step 0 is out of range 1-59"),
            ("*/60 * * * *", "minute: step 60 is out of range 1-59"),
            (
                "*/x * * * *",
                "minute: expected a number after '/', got 'x'",
            ),
            ("5/ * * * *", "minute: expected a number after '/', got ''"),
            (
                "30-10 * * * *",
                "minute: range 30-10 runs backwards; its start must not be after its end",
            ),
            (
                "* * * * FRI-MON",
                "day-of-week: range FRI-MON runs backwards; its start must not be after its end",
            ),
            ("1,,2 * * * *", "minute: empty item in list '1,,2'"),
            ("* 1, * * *", "hour: empty item in list '1,'"),
            (
                "? * * * *",
                "minute: '?' is only allowed in day-of-month and day-of-week",
            ),
            (
                "* * 1,? * *",
                "day-of-month: '?' must be the whole field, not part of a list",
            ),
            (
                "L * * * *",
                "minute: 'L' is only allowed in day-of-month and day-of-week",
            ),
            ("* 15W * * *", "hour: 'W' is only allowed in day-of-month"),
            (
                "* * 1#2 * *",
                "day-of-month: '#' is only allowed in day-of-week",
            ),
            (
                "* * L-31 * *",
                "day-of-month: offset 31 in L-31 is out of range 0-30",
            ),
            (
                "* * L-x * *",
                "day-of-month: expected a number after 'L-', got 'x'",
            ),
            (
                "* * 1-5W * *",
                "day-of-month: 'W' needs a single day before it (like 15W), got '1-5W'",
            ),
            ("* * 32W * *", "day-of-month: 32 is out of range 1-31"),
            (
                "* * 5L * *",
                "day-of-month: expected L, L-n or LW, got '5L'",
            ),
            (
                "* * * * L",
                "day-of-week: 'L' needs a weekday before it (like 5L for the last Friday)",
            ),
            (
                "* * * * 1-5L",
                "day-of-week: 'L' needs a single weekday before it (like 5L), got '1-5L'",
            ),
            ("* * * * 8L", "day-of-week: 8 is out of range 0-7"),
            (
                "* * * * 1#6",
                "day-of-week: occurrence 6 in 1#6 is out of range 1-5",
            ),
            (
                "* * * * 1#x",
                "day-of-week: expected a number after '#', got 'x'",
            ),
            (
                "* * * * 1#",
                "day-of-week: expected a number after '#', got ''",
            ),
        ];
        for (expr, message) in cases {
            assert_eq!(err(expr), message, "for {expr:?}");
        }
    }

    #[test]
    fn errors_are_typed_and_serialise_with_field_and_message() {
        let error = CronExpr::parse("0 0 32 * *").unwrap_err();
        assert_eq!(error.field, CronField::DayOfMonth);
        assert_eq!(error.message, "32 is out of range 1-31");
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"field":"day-of-month","message":"32 is out of range 1-31"}"#
        );
        let error = CronExpr::parse("* *").unwrap_err();
        assert_eq!(error.field, CronField::Expression);
    }

    #[test]
    fn names_are_case_insensitive_and_0_and_7_are_sunday() {
        let named = CronExpr::parse("0 0 * jan,Feb,DEC mon-FRI").unwrap();
        let numbered = CronExpr::parse("0 0 * 1,2,12 1-5").unwrap();
        assert_eq!(named.months, numbered.months);
        assert_eq!(named.dow, numbered.dow);
        let sun0 = CronExpr::parse("0 0 * * 0").unwrap();
        let sun7 = CronExpr::parse("0 0 * * 7").unwrap();
        let sun = CronExpr::parse("0 0 * * sun").unwrap();
        assert_eq!(sun0.dow.days, 1);
        assert_eq!(sun7.dow, sun0.dow);
        assert_eq!(sun.dow, sun0.dow);
        // 5-7 is Friday to Sunday.
        assert_eq!(CronExpr::parse("0 0 * * 5-7").unwrap().dow.days, 0b110_0001);
        // 2026-04-05 is a Sunday.
        assert_eq!(
            days("0 0 * * 7", "2026-04-01", 2),
            ["2026-04-05", "2026-04-12"]
        );
    }

    #[test]
    fn steps_ranges_and_lists() {
        let bits = |e: &str| CronExpr::parse(e).unwrap().minutes;
        let set = |v: &[u32]| v.iter().fold(0u64, |m, b| m | 1 << b);
        assert_eq!(bits("*/15 * * * *"), set(&[0, 15, 30, 45]));
        assert_eq!(bits("10-40/5 * * * *"), set(&[10, 15, 20, 25, 30, 35, 40]));
        assert_eq!(bits("5/10 * * * *"), set(&[5, 15, 25, 35, 45, 55]));
        assert_eq!(bits("1,2,40-42 * * * *"), set(&[1, 2, 40, 41, 42]));
        assert_eq!(bits("07 * * * *"), set(&[7]));
        let dom = CronExpr::parse("0 0 */10 * *").unwrap().dom.days;
        assert_eq!(dom, set(&[1, 11, 21, 31]));
        // `*` and open steps in day-of-week run over 0-6.
        let dow = |e: &str| CronExpr::parse(e).unwrap().dow.days;
        assert_eq!(dow("0 0 * * */2"), 0b101_0101);
        assert_eq!(dow("0 0 * * 1/2"), 0b010_1010);
        let months = CronExpr::parse("0 0 1 jan-dec/3 *").unwrap().months;
        assert_eq!(months, set(&[1, 4, 7, 10]));
    }

    #[test]
    fn macros_expand_to_their_five_fields() {
        let pairs = [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
            ("@DAILY", "0 0 * * *"),
        ];
        for (name, fields) in pairs {
            let a = CronExpr::parse(name).unwrap();
            let b = CronExpr::parse(fields).unwrap();
            assert_eq!(a.as_str(), name);
            assert_eq!(
                (
                    a.seconds, a.minutes, a.hours, a.months, a.dom, a.dow, a.kind
                ),
                (
                    b.seconds, b.minutes, b.hours, b.months, b.dom, b.dow, b.kind
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn fixed_time_means_values_or_lists_in_second_minute_and_hour() {
        let fixed = [
            "30 2 * * *",
            "15,45 1 * * *",
            "0 30 2 * * *",
            "0 0 */2 * *",
            "0 0 L * 5L",
            "@daily",
            "@weekly",
        ];
        for expr in fixed {
            assert_eq!(
                CronExpr::parse(expr).unwrap().kind(),
                CronKind::FixedTime,
                "{expr}"
            );
        }
        let interval = [
            "*/15 * * * *",
            "0 0-4 * * *",
            "0 */2 * * *",
            "* 2 * * *",
            "*/10 30 2 * * *",
            "0-1 2 * * *",
            "5/10 2 * * *",
            "@hourly",
        ];
        for expr in interval {
            assert_eq!(
                CronExpr::parse(expr).unwrap().kind(),
                CronKind::Interval,
                "{expr}"
            );
        }
    }

    #[test]
    fn last_day_and_days_before_it() {
        assert_eq!(
            days("0 0 L * *", "2024-01-15", 3),
            ["2024-01-31", "2024-02-29", "2024-03-31"]
        );
        assert_eq!(days("0 0 L 2 *", "2025-01-01", 1), ["2025-02-28"]);
        assert_eq!(
            days("0 0 L-3 * *", "2024-01-01", 2),
            ["2024-01-28", "2024-02-26"]
        );
    }

    #[test]
    fn nearest_weekday_stays_in_the_month_and_does_not_fire_when_the_day_is_missing() {
        // 2026-02-15 and 2026-03-15 are Sundays (Monday 16th); 2026-08-15 is a
        // Saturday (Friday 14th).
        assert_eq!(
            days("0 0 15W * *", "2026-01-31", 3),
            ["2026-02-16", "2026-03-16", "2026-04-15"]
        );
        assert_eq!(days("0 0 15W 8 *", "2026-01-01", 1), ["2026-08-14"]);
        // 2026-08-01 is a Saturday: the nearest weekday in August is Monday the 3rd.
        assert_eq!(days("0 0 1W 8 *", "2026-01-01", 1), ["2026-08-03"]);
        // 31W skips months without a 31st; 2026-05-31 is a Sunday (Friday 29th).
        assert_eq!(
            days("0 0 31W * *", "2026-01-01", 7),
            [
                "2026-01-30",
                "2026-03-31",
                "2026-05-29",
                "2026-07-31",
                "2026-08-31",
                "2026-10-30",
                "2026-12-31"
            ]
        );
        assert_eq!(
            days("0 0 LW * *", "2026-01-01", 5),
            [
                "2026-01-30",
                "2026-02-27",
                "2026-03-31",
                "2026-04-30",
                "2026-05-29"
            ]
        );
    }

    #[test]
    fn last_and_nth_weekday_of_the_month() {
        assert_eq!(
            days("0 0 ? * 5L", "2026-01-01", 3),
            ["2026-01-30", "2026-02-27", "2026-03-27"]
        );
        assert_eq!(days("0 0 ? * FRIL", "2026-01-01", 1), ["2026-01-30"]);
        assert_eq!(
            days("0 0 ? * 1#2", "2026-01-01", 3),
            ["2026-01-12", "2026-02-09", "2026-03-09"]
        );
        assert_eq!(days("0 0 ? * mon#2", "2026-01-01", 1), ["2026-01-12"]);
        assert_eq!(
            days("0 0 ? * 1#5", "2026-01-01", 4),
            ["2026-03-30", "2026-06-29", "2026-08-31", "2026-11-30"]
        );
        // A fifth Monday in February needs a leap year starting on a Monday.
        assert_eq!(days("0 0 ? 2 1#5", "2017-01-01", 1), ["2044-02-29"]);
    }

    #[test]
    fn vixie_rule_either_day_field_matches_when_both_are_restricted() {
        // 2026-04-13 is a Monday, not a Friday: it matches through the 13.
        assert_eq!(
            days("0 0 13 * 5", "2026-04-01", 4),
            ["2026-04-03", "2026-04-10", "2026-04-13", "2026-04-17"]
        );
        // `*/2` is a restriction: odd days or Mondays (2026-04-06 is a Monday).
        assert_eq!(
            days("0 0 */2 * MON", "2026-04-01", 5),
            [
                "2026-04-03",
                "2026-04-05",
                "2026-04-06",
                "2026-04-07",
                "2026-04-09"
            ]
        );
        // `*` and `?` are not restrictions: only the other field counts.
        assert_eq!(
            days("0 0 * * MON", "2026-04-01", 2),
            ["2026-04-06", "2026-04-13"]
        );
        assert_eq!(
            days("0 0 ? * MON", "2026-04-01", 2),
            ["2026-04-06", "2026-04-13"]
        );
        assert_eq!(
            days("0 0 1 * ?", "2026-04-01", 2),
            ["2026-05-01", "2026-06-01"]
        );
        assert_eq!(
            days("0 0 ? * ?", "2026-04-01", 2),
            ["2026-04-02", "2026-04-03"]
        );
        // Special forms combine the same way: the last day or any Monday.
        assert_eq!(
            days("0 0 L 5 MON", "2026-05-20", 3),
            ["2026-05-25", "2026-05-31", "2027-05-03"]
        );
    }

    #[test]
    fn next_jumps_field_by_field_with_seconds_and_leap_days() {
        assert_eq!(
            next("*/20 * * * * *", "2026-01-01T10:00:05", 3),
            [
                "2026-01-01T10:00:20",
                "2026-01-01T10:00:40",
                "2026-01-01T10:01:00"
            ]
        );
        assert_eq!(
            next("0 0 29 2 *", "2025-01-01T00:00:00", 2),
            ["2028-02-29T00:00:00", "2032-02-29T00:00:00"]
        );
        assert_eq!(
            next("59 23 31 12 *", "2026-12-31T23:59:00", 1),
            ["2027-12-31T23:59:00"]
        );
        // Strictly after, ignoring a sub-second part.
        let cron = CronExpr::parse("* * * * * *").unwrap();
        let after = at("2026-01-01T00:00:00") + chrono::TimeDelta::milliseconds(500);
        assert_eq!(
            cron.next_local_after(after),
            Some(at("2026-01-01T00:00:01"))
        );
    }

    #[test]
    fn an_expression_no_calendar_satisfies_never_fires() {
        for expr in [
            "0 0 30 2 *",
            "0 0 31 4,6,9,11 *",
            "0 0 31W 2 *",
            "0 0 L-30 2 *",
        ] {
            let cron = CronExpr::parse(expr).unwrap();
            assert!(!cron.can_fire(), "{expr}");
            assert_eq!(cron.next_local_after(at("2026-01-01T00:00:00")), None);
        }
        for expr in ["0 0 29 2 *", "0 0 ? 2 1#5", "0 0 L-28 2 *", "0 0 30 2 MON"] {
            assert!(CronExpr::parse(expr).unwrap().can_fire(), "{expr}");
        }
    }

    #[test]
    fn serialises_as_its_text_and_parses_back() {
        let cron = CronExpr::parse(" 0 30 2 * * MON ").unwrap();
        assert_eq!(cron.to_string(), "0 30 2 * * MON");
        let json = serde_json::to_string(&cron).unwrap();
        assert_eq!(json, r#""0 30 2 * * MON""#);
        let back: CronExpr = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cron);
        let bad = serde_json::from_str::<CronExpr>(r#""0 0 32 * *""#).unwrap_err();
        assert!(
            bad.to_string()
                .contains("day-of-month: 32 is out of range 1-31")
        );
    }
}
