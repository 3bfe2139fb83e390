//! Time ranges, UTC buckets and timestamp parsing.
//!
//! Every aggregate is keyed by UTC minute buckets (`MINUTE_MS`); larger timeline buckets are
//! whole multiples of a minute, so they are exact sums of minute rollups. Nothing here looks at
//! the server's time zone: the origin shifted buckets by it.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub(crate) const MINUTE_MS: i64 = 60_000;
pub(crate) const HOUR_MS: i64 = 60 * MINUTE_MS;
pub(crate) const DAY_MS: i64 = 24 * HOUR_MS;

/// A half-open range `[start_ms, end_ms)` in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start_ms: i64,
    pub end_ms: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum RangeError {
    #[error("start must be before end")]
    Inverted,
    #[error("range is longer than {max_days} days")]
    TooLong { max_days: i64 },
}

/// The longest range any aggregate read accepts; bounds the rows a read can touch.
pub(crate) const MAX_RANGE_MS: i64 = 400 * DAY_MS;

impl TimeRange {
    /// Everything until the end of the minute of `now_ms`: for all-time sums (the usage
    /// counters `/metrics` exposes), which read whole-hour rollups and never the raw rows,
    /// so they are exempt from [`MAX_RANGE_MS`].
    pub(crate) fn all_until(now_ms: i64) -> Self {
        Self {
            start_ms: 0,
            end_ms: floor_to(now_ms, MINUTE_MS) + MINUTE_MS,
        }
    }

    pub(crate) fn new(start_ms: i64, end_ms: i64) -> Result<Self, RangeError> {
        if start_ms >= end_ms {
            return Err(RangeError::Inverted);
        }
        if end_ms - start_ms > MAX_RANGE_MS {
            return Err(RangeError::TooLong {
                max_days: MAX_RANGE_MS / DAY_MS,
            });
        }
        Ok(Self { start_ms, end_ms })
    }

    /// The last `duration_ms` up to and including `now_ms`.
    pub(crate) fn last(duration_ms: i64, now_ms: i64) -> Self {
        Self {
            start_ms: now_ms + 1 - duration_ms,
            end_ms: now_ms + 1,
        }
    }

    /// The current UTC day: what "today" means in `executions_today`. The whole day, not
    /// "up to now", so that every read during the day asks for the same range (one cache key).
    pub(crate) fn today(now_ms: i64) -> Self {
        let start_ms = floor_to(now_ms, DAY_MS);
        Self {
            start_ms,
            end_ms: start_ms + DAY_MS,
        }
    }

    pub(crate) fn duration_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }

    /// The whole minutes inside the range, `[ceil(start), floor(end))`. Rollups answer for
    /// these; the partial minutes at either edge are read from detail rows.
    pub(crate) fn whole_minutes(&self) -> (i64, i64) {
        whole_steps(self.start_ms, self.end_ms, MINUTE_MS)
    }

    /// How a range splits across the rollup levels, so that a read touches O(hours + 120
    /// minutes + edge rows), whatever the range's length.
    pub(crate) fn spans(&self) -> RangeSpans {
        let minutes = self.whole_minutes();
        let hours = whole_steps(minutes.0, minutes.1, HOUR_MS);
        let hours = if hours.0 < hours.1 {
            hours
        } else {
            (minutes.1, minutes.1)
        };
        RangeSpans {
            hours,
            minutes_before: (minutes.0, hours.0),
            minutes_after: (hours.1, minutes.1),
            whole_minutes: minutes,
        }
    }
}

/// A range cut into hourly rollups, minute rollups on either side, and (outside
/// `whole_minutes`) partial minutes read from detail rows. Every pair is half-open `[a, b)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RangeSpans {
    pub hours: (i64, i64),
    pub minutes_before: (i64, i64),
    pub minutes_after: (i64, i64),
    pub whole_minutes: (i64, i64),
}

/// The whole steps inside `[start_ms, end_ms)`; when there are none, the empty span at
/// `end_ms`, so that "before" and "after" the whole steps still lie inside the range.
fn whole_steps(start_ms: i64, end_ms: i64, step: i64) -> (i64, i64) {
    let start = ceil_to(start_ms, step);
    let end = floor_to(end_ms, step);
    if start >= end {
        (end_ms, end_ms)
    } else {
        (start, end)
    }
}

pub(crate) fn floor_to(ms: i64, step: i64) -> i64 {
    ms.div_euclid(step) * step
}

pub(crate) fn ceil_to(ms: i64, step: i64) -> i64 {
    let floored = floor_to(ms, step);
    if floored == ms { ms } else { floored + step }
}

pub(crate) fn minute_bucket(ms: i64) -> i64 {
    floor_to(ms, MINUTE_MS)
}

/// The timeline bucket the range implies when the caller does not choose one: roughly 24–100
/// points whatever the range.
pub(crate) fn default_bucket_ms(range: &TimeRange) -> i64 {
    let span = range.duration_ms();
    if span <= HOUR_MS {
        MINUTE_MS
    } else if span <= 6 * HOUR_MS {
        5 * MINUTE_MS
    } else if span <= 2 * DAY_MS {
        HOUR_MS
    } else if span <= 8 * DAY_MS {
        6 * HOUR_MS
    } else {
        DAY_MS
    }
}

/// RFC 3339 / ISO 8601 in UTC with milliseconds, e.g. `2026-11-25T20:00:00.000Z`.
pub fn iso8601(ms: i64) -> String {
    let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000) else {
        return ms.to_string();
    };
    let (h, m, s) = at.time().as_hms();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        at.month() as u8,
        at.day(),
        h,
        m,
        s,
        at.millisecond()
    )
}

/// Parses an ISO 8601 timestamp as older hook scripts send it: RFC 3339 with an offset, or a
/// local-looking `YYYY-MM-DDTHH:MM:SS[.fff]` with no offset, which is read as UTC.
pub(crate) fn parse_iso8601_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some((at.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let with_zone = format!("{}Z", text.replace(' ', "T"));
    OffsetDateTime::parse(&with_zone, &Rfc3339)
        .ok()
        .map(|at| (at.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trips_through_parse() {
        let ms = 1_764_000_000_123;
        assert_eq!(iso8601(ms), "2025-11-24T16:00:00.123Z");
        assert_eq!(parse_iso8601_ms(&iso8601(ms)), Some(ms));
    }

    #[test]
    fn naive_iso_is_read_as_utc() {
        assert_eq!(
            parse_iso8601_ms("2025-11-24T16:00:00.123"),
            Some(1_764_000_000_123)
        );
        assert_eq!(
            parse_iso8601_ms("2025-11-24T17:00:00+01:00"),
            Some(1_764_000_000_000)
        );
        assert_eq!(parse_iso8601_ms("yesterday"), None);
    }

    #[test]
    fn whole_minutes_excludes_partial_edges() {
        let range = TimeRange::new(90_000, 250_000).unwrap();
        assert_eq!(range.whole_minutes(), (120_000, 240_000));
        let inside_one_minute = TimeRange::new(61_000, 62_000).unwrap();
        assert_eq!(inside_one_minute.whole_minutes(), (62_000, 62_000));
    }

    #[test]
    fn spans_cover_the_range_exactly_once() {
        let range = TimeRange::new(HOUR_MS + 90_000, 4 * HOUR_MS + 150_500).unwrap();
        let spans = range.spans();
        assert_eq!(
            spans.whole_minutes,
            (HOUR_MS + 120_000, 4 * HOUR_MS + 120_000)
        );
        assert_eq!(spans.minutes_before, (HOUR_MS + 120_000, 2 * HOUR_MS));
        assert_eq!(spans.hours, (2 * HOUR_MS, 4 * HOUR_MS));
        assert_eq!(spans.minutes_after, (4 * HOUR_MS, 4 * HOUR_MS + 120_000));
        let short = TimeRange::new(90_000, 250_000).unwrap().spans();
        assert_eq!(short.hours.0, short.hours.1);
        assert_eq!(short.minutes_before, (120_000, 240_000));
        assert_eq!(short.minutes_after.0, short.minutes_after.1);
    }

    #[test]
    fn buckets_floor_negative_times_correctly() {
        assert_eq!(floor_to(-1, MINUTE_MS), -MINUTE_MS);
        assert_eq!(ceil_to(1, MINUTE_MS), MINUTE_MS);
    }
}

/// Parses a duration such as `500ms`, `30s`, `30m`, `12h` or `7d` (a bare number is seconds).
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().ok()?;
    let unit_ms = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" | "min" => MINUTE_MS,
        "h" => HOUR_MS,
        "d" => DAY_MS,
        _ => return None,
    };
    number.checked_mul(unit_ms)
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration_ms("30m"), Some(30 * MINUTE_MS));
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("2"), Some(2000));
        assert_eq!(parse_duration_ms("7d"), Some(7 * DAY_MS));
        assert_eq!(parse_duration_ms("soon"), None);
    }
}
