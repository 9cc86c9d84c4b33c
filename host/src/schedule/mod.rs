//! Cron and timezone maths: when does a schedule fire? Pure code, no IO.
//!
//! A [`CronExpr`] is parsed once into bit sets and proposes nominal local
//! (wall-clock) times; a [`Schedule`] puts it in an IANA zone with a
//! [`DstPolicy`] and turns those local times into [`Fire`]s, each with its
//! UTC instant, nominal local time, UTC offset and a [`DstFlag`] when a
//! transition touched it. (schedule, nominal, offset) is a fire's identity.
//! [`preview`] lists the next N fires for people and the API;
//! [`resolve_one_off`] places a one-off run at a local date-time.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use meridian::schedule::{CronExpr, DstFlag, Schedule};
//!
//! let cron = CronExpr::parse("30 2 * * *").unwrap();
//! let berlin = Schedule::new(cron, chrono_tz::Europe::Berlin);
//! let fire = berlin
//!     .next_after(Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap())
//!     .unwrap();
//! // 02:30 does not exist on 2026-03-29: it runs at 03:00 CEST instead.
//! assert_eq!(fire.local().to_rfc3339(), "2026-03-29T03:00:00+02:00");
//! assert_eq!(fire.flag, Some(DstFlag::ShiftedFromGap));
//! ```
//!
//! # DST rules (docs/time.md, "Daylight saving")
//!
//! An expression is *fixed-time* when its second, minute and hour fields
//! hold only values or lists of values (`30 2 * * *`), otherwise
//! *interval* (`*/15 * * * *`, `0 0-4 * * *`, `@hourly`).
//!
//! - Spring-forward gap. Default for fixed-time, `shift`: a fire whose local
//!   time does not exist runs at the first instant after the gap (Berlin
//!   2026-03-29 02:30 runs at 03:00+02:00), and several such fires of one
//!   schedule in one gap run once, under the first skipped time's identity.
//!   Default for interval, `skip`: ticks that do not exist do not run. A
//!   whole missing day is the same rule (Pacific/Apia 2011-12-30: a fire
//!   due that day runs at 2011-12-31T00:00+14:00).
//! - Fall-back overlap. Default for fixed-time, `first`: a repeated local
//!   time runs once, at its first occurrence. Default for interval, `both`:
//!   it runs in both passes, in elapsed-time order (New York 2026-11-01
//!   `*/15`: 01:00…01:45 EDT, then 01:00…01:45 EST). `last` runs only the
//!   second occurrence.
//! - Overrides apply to either kind: [`DstPolicy`] `gap: shift|skip`,
//!   `overlap: first|last|both`.
//! - Decided here: fires at one instant run once. A fire shifted out of a
//!   gap onto an instant where the schedule fires anyway (`0 2,3 * * *`
//!   shifts 02:00 onto the genuine 03:00; Apia's `@daily` shifts 12-30 onto
//!   12-31 00:00) is absorbed by the genuine fire, which keeps its own
//!   identity; [`preview`] reports the absorbed nominal times.
//! - Searches give up after 400 years (one Gregorian cycle); an expression
//!   that no calendar can satisfy (`0 0 30 2 *`) is known at parse time and
//!   answers `None` at once.
//! - Zone data is chrono-tz's: its tables list transitions up to 2099, so
//!   from 2100 a zone keeps the offset in force after its last 2099
//!   transition (New York stays on EST).
//!
//! # Why our own parser
//!
//! We write the cron parser and the next-fire search ourselves rather than
//! use a crate, because none we evaluated gives the semantics of docs/time.md.
//! croner 3.0.1, the closest, rejects `LW` and `L-3`, returns fires in a
//! New York fall-back in wall-clock rather than elapsed-time order (01:00
//! EDT, 01:00 EST, 01:15 EDT, …: time runs backwards), and returns no fire
//! at all for `0 12 * * *` in Pacific/Apia across the skipped 2011-12-30.
//! cron 0.15 silently drops Berlin's 02:30 fire on 2026-03-29, ANDs the two
//! day fields instead of the Vixie OR, reads day-of-week 7 as Saturday and
//! rejects 0, `L`, `W` and `5L`. Neither offers per-schedule gap/overlap
//! overrides or reports a fire's nominal local time and DST flag, which
//! fire identities and previews need, so we would have re-done the zone
//! mapping anyway; the parser (bit sets, one pass) is the smaller half.
//! The search jumps field by field in local time and maps to instants with
//! chrono-tz, so a next-fire costs a handful of bit operations and two zone
//! look-ups.

mod cron;
mod oneoff;
mod preview;
mod zone;

#[cfg(test)]
mod proptests;

pub use cron::{CronError, CronExpr, CronField, CronKind};
pub use oneoff::{AmbiguousTime, NonexistentTime, OneOffError, OneOffPolicy, resolve_one_off};
pub use preview::{DropReason, DroppedFires, Preview, PreviewFire, preview};
pub use zone::{DstFlag, DstPolicy, Fire, Fires, GapPolicy, OverlapPolicy, Schedule};
