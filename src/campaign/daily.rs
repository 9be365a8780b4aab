//! The daily report across batches: per day of the configured time zone, what was sent,
//! reached, read, failed and replied to, and the day's top error codes. Built from
//! counters kept per quarter-hour (every zone's offset is a whole number of them), so a
//! day in any zone adds up exactly, and a report of a month reads a few thousand rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{slot_of, slot_start};
use crate::store::queries::{end_of_time, start_of_time};
use crate::store::{Store, StoreResult};

/// Most days one report covers.
pub const MAX_DAYS: u64 = 366;
/// Error codes listed per day.
pub const TOP_ERRORS: usize = 3;

/// One day of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Day {
    /// The date, in the report's time zone (`YYYY-MM-DD`).
    pub date: String,
    /// Listed sends sent that day (the send list's `sentAt`).
    pub sent: i64,
    /// Messages that first reached the phone that day (delivered, or read first).
    pub reached: i64,
    /// Messages read that day.
    pub read: i64,
    /// Messages that failed that day.
    pub failed: i64,
    /// Customers' replies and reactions to a message, sent that day.
    pub replies: i64,
    /// The day's most frequent error codes, the most first.
    pub top_errors: Vec<ErrorCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    pub code: String,
    pub messages: i64,
}

/// The report from `from` to `to` (inclusive) in `zone`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyReport {
    pub timezone: String,
    pub from: String,
    pub to: String,
    pub days: Vec<Day>,
}

/// When a date starts in `zone`: its first instant. A day whose midnight falls in a gap
/// (a clock moved forward at midnight) starts when the gap ends; a day skipped whole (as
/// Samoa's 2011-12-30) starts where the next does.
pub fn day_start(zone: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    // Every zone's offsets and gaps are whole quarter-hours; no gap is longer than a day.
    (0..=26 * 4)
        .find_map(|q| {
            zone.from_local_datetime(&(midnight + chrono::Duration::minutes(15 * q)))
                .earliest()
        })
        .map_or_else(|| midnight.and_utc(), |t| t.to_utc())
}

/// The date of an instant in `zone`.
pub fn date_in(zone: Tz, at: &DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&zone).date_naive()
}

/// A date written as RFC 3339's full-date (`2026-03-01`: four, two and two digits) and
/// nothing else, which is what the OpenAPI document's `format: date` means (chrono alone
/// also reads `2026-3-1`).
pub fn day(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    shaped
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
}

/// `day`, or the sentence that says what `name` must be.
pub fn day_named(name: &str, s: &str) -> Result<NaiveDate, String> {
    day(s).ok_or_else(|| format!("{name} must be a date such as 2026-03-01, not {s:?}."))
}

/// Reads a `from`..`to` range of dates; `to` at or after `from`, at most [`MAX_DAYS`].
pub fn range(from: &str, to: &str) -> Result<(NaiveDate, NaiveDate), String> {
    let (from, to) = (day_named("from", from)?, day_named("to", to)?);
    if to < from {
        return Err("to must not be before from.".into());
    }
    if to.signed_duration_since(from).num_days() as u64 >= MAX_DAYS {
        return Err(format!("A report covers at most {MAX_DAYS} days."));
    }
    Ok((from, to))
}

/// The span of the days `from` to `to` (inclusive) in `zone`, either open-ended when not
/// given (empty counts as not given); `None` when neither is.
#[allow(clippy::type_complexity)]
pub fn span(
    zone: Tz,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, String> {
    let date = |name: &str, s: Option<&str>| -> Result<Option<NaiveDate>, String> {
        match s.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => day_named(name, s).map(Some),
        }
    };
    let (from, to) = (date("from", from)?, date("to", to)?);
    if from.is_none() && to.is_none() {
        return Ok(None);
    }
    if let (Some(f), Some(t)) = (from, to)
        && t < f
    {
        return Err("to must not be before from.".into());
    }
    let start = from.map_or_else(start_of_time, |d| day_start(zone, d));
    let end = match to.and_then(|d| d.checked_add_days(Days::new(1))) {
        Some(next) => day_start(zone, next),
        None => end_of_time(),
    };
    Ok(Some((start, end)))
}

/// The report of the days `from` to `to` in `zone`.
pub async fn report(
    store: &dyn Store,
    zone: Tz,
    from: NaiveDate,
    to: NaiveDate,
) -> StoreResult<DailyReport> {
    let start = day_start(zone, from);
    let end = day_start(zone, to.checked_add_days(Days::new(1)).unwrap_or(to));
    let (activity, sent, replies) = tokio::join!(
        store.activity(slot_of(&start), slot_of(&end)),
        store.sends_per_slot(slot_of(&start), slot_of(&end)),
        store.replies_sent_between(start, end),
    );
    let mut days: BTreeMap<NaiveDate, Day> = BTreeMap::new();
    let mut errors: BTreeMap<NaiveDate, BTreeMap<String, i64>> = BTreeMap::new();
    let mut date = from;
    while date <= to {
        days.insert(
            date,
            Day {
                date: date.to_string(),
                ..Default::default()
            },
        );
        date = match date.checked_add_days(Days::new(1)) {
            Some(next) => next,
            None => break,
        };
    }
    for (slot, kind, code, n) in activity? {
        let date = date_in(zone, &slot_start(slot));
        let Some(day) = days.get_mut(&date) else {
            continue;
        };
        match kind.as_str() {
            "reached" => day.reached += n,
            "read" => day.read += n,
            "failed" => day.failed += n,
            "error" => *errors.entry(date).or_default().entry(code).or_default() += n,
            _ => {}
        }
    }
    for (slot, n) in sent? {
        if let Some(day) = days.get_mut(&date_in(zone, &slot_start(slot))) {
            day.sent += n;
        }
    }
    for at in replies? {
        if let Some(day) = days.get_mut(&date_in(zone, &at)) {
            day.replies += 1;
        }
    }
    // A message stored before the counters existed can take back a mark it never added
    // (a late report moving it to another day): a day never shows less than nothing.
    for day in days.values_mut() {
        for n in [&mut day.reached, &mut day.read, &mut day.failed] {
            *n = (*n).max(0);
        }
    }
    for (date, codes) in errors {
        let mut top: Vec<ErrorCount> = codes
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(code, messages)| ErrorCount { code, messages })
            .collect();
        top.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.code.cmp(&b.code)));
        top.truncate(TOP_ERRORS);
        if let Some(day) = days.get_mut(&date) {
            day.top_errors = top;
        }
    }
    Ok(DailyReport {
        timezone: zone.name().to_owned(),
        from: from.to_string(),
        to: to.to_string(),
        days: days.into_values().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_at_local_midnight_in_zones_off_the_hour() {
        let date = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(
            day_start(kolkata, date).to_rfc3339(),
            "2026-02-28T18:30:00+00:00"
        );
        let kathmandu: Tz = "Asia/Kathmandu".parse().unwrap();
        assert_eq!(
            day_start(kathmandu, date).to_rfc3339(),
            "2026-02-28T18:15:00+00:00"
        );
        // A midnight in a gap: Santiago moved 00:00 to 01:00 on 2026-09-06.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let gap = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        assert_eq!(
            day_start(santiago, gap).to_rfc3339(),
            "2026-09-06T04:00:00+00:00"
        );
        // A day skipped whole: Samoa went from 2011-12-29 to 2011-12-31.
        let apia: Tz = "Pacific/Apia".parse().unwrap();
        let skipped = NaiveDate::from_ymd_opt(2011, 12, 30).unwrap();
        let next = NaiveDate::from_ymd_opt(2011, 12, 31).unwrap();
        assert_eq!(day_start(apia, skipped), day_start(apia, next));
        // Every day start falls on a quarter-hour.
        for zone in [
            kolkata,
            kathmandu,
            chrono_tz::UTC,
            chrono_tz::America::St_Johns,
        ] {
            assert_eq!(day_start(zone, date).timestamp() % 900, 0, "{zone}");
        }
    }

    #[test]
    fn a_range_is_checked() {
        assert!(range("2026-03-01", "2026-03-31").is_ok());
        assert!(range("2026-03-02", "2026-03-01").is_err());
        assert!(
            range("2026-3-1x", "2026-03-01")
                .unwrap_err()
                .contains("from")
        );
        assert!(range("2025-01-01", "2026-12-31").is_err());
    }
}
