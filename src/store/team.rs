//! The team view's reads (`domain::team`): each person's use per day or week, from the usage
//! rollups (cost, tokens, requests and errors: usage's one truth per session) and the
//! activity rollup (prompts and Claude Code's productivity counters), both per hour and never
//! pruned, so a range of whole days or weeks is exact and costs the rows of its hours, not
//! its events.

use std::collections::BTreeMap;

use super::rows::StoredRow;
use super::sql::{Sql, Value};
use super::usage::COUNTED_PER_SESSION;
use crate::domain::team::{MAX_TEAM_PEOPLE, PersonUse, TeamBucket, TeamSums, TeamView};
use crate::domain::time::TimeRange;

/// `?1`: the range's start; `?2`: its end; `?3`: the bucket's length. A row's bucket: the
/// start of the bucket its hour is in (the range starts on a bucket's start).
const SLOT: &str = "(?1 + (bucket - ?1) / ?3 * ?3)";

/// A person's range, `range` aligned to `bucket` (`TeamBucket::floor`).
pub(crate) fn team<S: Sql>(
    sql: &mut S,
    range: TimeRange,
    bucket: TeamBucket,
) -> Result<TeamView, S::Error> {
    let args = [range.start_ms, range.end_ms, bucket.millis()].map(Value::Int);
    let mut people: BTreeMap<String, BTreeMap<i64, TeamSums>> = BTreeMap::new();
    let dialect = sql.dialect();
    let sums = super::telemetry::SUM_COLUMNS
        .map(|c| dialect.sum(c))
        .join(", ");
    // A session's point rows count only while it has no `api_request` event (the same rule
    // as every usage read: `store::usage`).
    let usage = sql.query(
        &format!(
            "SELECT user_key, {SLOT} AS slot, {sums} FROM usage_rollup_hour r
             WHERE bucket >= ?1 AND bucket < ?2{COUNTED_PER_SESSION}
             GROUP BY user_key, slot"
        ),
        &args,
        |row| {
            let tokens = [row.int(3)?, row.int(4)?, row.int(5)?, row.int(6)?];
            Ok((
                row.text(0)?,
                row.int(1)?,
                TeamSums {
                    cost_nanos: row.int(2)?,
                    input_tokens: tokens[0],
                    output_tokens: tokens[1],
                    cache_read_tokens: tokens[2],
                    cache_creation_tokens: tokens[3],
                    total_tokens: tokens.iter().fold(0i64, |sum, n| sum.saturating_add(*n)),
                    api_requests: row.int(7)?,
                    api_errors: row.int(8)?,
                    ..TeamSums::default()
                },
            ))
        },
    )?;
    for (person, slot, sums) in usage {
        people
            .entry(person)
            .or_default()
            .entry(slot)
            .or_default()
            .add(&sums);
    }
    let activity = sql.query(
        &format!(
            "SELECT user_key, {SLOT} AS slot, metric, {} FROM activity_rollup_hour
             WHERE bucket >= ?1 AND bucket < ?2
             GROUP BY user_key, slot, metric",
            dialect.sum("value")
        ),
        &args,
        |row| Ok((row.text(0)?, row.int(1)?, row.text(2)?, row.int(3)?)),
    )?;
    for (person, slot, metric, value) in activity {
        people
            .entry(person)
            .or_default()
            .entry(slot)
            .or_default()
            .add_activity(&metric, value);
    }
    for (person, slot, count) in sessions(sql, &args)? {
        if let Some(sums) = people.get_mut(&person).and_then(|b| b.get_mut(&slot)) {
            sums.sessions = count;
        }
    }
    // Over the whole range: a session that spans buckets is one session.
    let whole = [range.start_ms, range.end_ms, range.duration_ms().max(1)].map(Value::Int);
    let in_range: BTreeMap<String, i64> = sessions(sql, &whole)?
        .into_iter()
        .map(|(person, _, count)| (person, count))
        .collect();
    let mut listed: Vec<PersonUse> = people
        .into_iter()
        .map(|(person, buckets)| {
            let mut totals = TeamSums::default();
            for sums in buckets.values() {
                totals.add(sums);
            }
            totals.sessions = in_range.get(&person).copied().unwrap_or(0);
            PersonUse {
                person,
                totals,
                buckets: buckets.into_iter().collect(),
            }
        })
        .collect();
    listed.sort_by(|a, b| {
        b.totals
            .cost_nanos
            .cmp(&a.totals.cost_nanos)
            .then_with(|| a.person.cmp(&b.person))
    });
    let truncated = listed.len() > MAX_TEAM_PEOPLE;
    listed.truncate(MAX_TEAM_PEOPLE);
    Ok(TeamView {
        bucket,
        range,
        people: listed,
        truncated,
    })
}

/// Distinct sessions per person and bucket (`args` as [`SLOT`]'s), from either rollup: a
/// session with prompts or counters but no API use counts too. Use without a session id
/// (`OTEL_METRICS_INCLUDE_SESSION_ID=false`) is no session.
fn sessions<S: Sql>(sql: &mut S, args: &[Value<'_>]) -> Result<Vec<(String, i64, i64)>, S::Error> {
    sql.query(
        &format!(
            "SELECT user_key, slot, count(*) FROM (
                 SELECT user_key, {SLOT} AS slot, session_id FROM usage_rollup_hour
                 WHERE bucket >= ?1 AND bucket < ?2 AND session_id <> ''
                 UNION
                 SELECT user_key, {SLOT} AS slot, session_id FROM activity_rollup_hour
                 WHERE bucket >= ?1 AND bucket < ?2 AND session_id <> ''
             ) seen GROUP BY user_key, slot"
        ),
        args,
        |row| Ok((row.text(0)?, row.int(1)?, row.int(2)?)),
    )
}
