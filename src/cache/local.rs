//! The in-process tier in front of Redis and the store: a view read again while nothing has
//! been committed since costs a hash lookup and a clone, not a Redis round trip or a query.
//!
//! It trusts one thing: the store's own count of committed write groups
//! (`Store::local_commits`), which the writer bumps after each commit and before it
//! acknowledges any write in it. A value is kept with the count read before it was computed
//! (or found in Redis) and served only while the count is unchanged and its `valid_until` has
//! not passed; any commit since, of any kind, orphans every value. So it never serves what an
//! acknowledged write has changed, with no staleness bound to document. Only a store no
//! other process writes to has such a count (SQLite); on PostgreSQL, where other instances
//! commit too, there is no local tier.
//!
//! Bounded: at most [`MAX_LOCAL_VIEWS`] values (one per view and range key; rolling ranges
//! are minute-aligned, so few) and [`MAX_LOCAL_BYTES`] of them as JSON (a value over
//! [`MAX_LOCAL_VALUE_BYTES`], a long page of recent events, is not kept); when either is
//! reached, the whole tier is cleared rather than tracked.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::View;

/// The most values the tier holds.
pub(crate) const MAX_LOCAL_VIEWS: usize = 512;
/// The most bytes its values take, measured as their JSON.
pub(crate) const MAX_LOCAL_BYTES: usize = 16 * 1024 * 1024;
/// The largest value kept, as JSON.
pub(crate) const MAX_LOCAL_VALUE_BYTES: usize = 1024 * 1024;

/// `value`'s size as JSON, counted as it is written out rather than kept: what the tier's
/// caps measure, where the caller has not written the value out already.
pub(crate) fn json_len(value: &impl serde::Serialize) -> Option<usize> {
    struct Counted(usize);
    impl std::io::Write for Counted {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counted = Counted(0);
    serde_json::to_writer(&mut counted, value).ok()?;
    Some(counted.0)
}

struct Entry {
    commits: u64,
    valid_until_ms: i64,
    bytes: usize,
    value: Arc<dyn Any + Send + Sync>,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<(View, String), Entry>,
    bytes: usize,
}

pub(crate) struct LocalViews {
    commits: Arc<AtomicU64>,
    entries: Mutex<Entries>,
}

impl LocalViews {
    pub(crate) fn new(commits: Arc<AtomicU64>) -> Self {
        Self {
            commits,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// The store's commit count now: read before a value is computed, kept with it.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Acquire)
    }

    /// The value kept for `view` and `params`, if nothing was committed since it was read and
    /// it is still valid at `now_ms`.
    pub(crate) fn get<T: Clone + 'static>(
        &self,
        view: View,
        params: &str,
        now_ms: i64,
    ) -> Option<T> {
        let commits = self.commits();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.by_key.get(&(view, params.to_owned()))?;
        if entry.commits != commits || now_ms >= entry.valid_until_ms {
            return None;
        }
        entry.value.downcast_ref::<T>().cloned()
    }

    /// Keeps `value`, read when the commit count was `commits`, unless it is larger than
    /// [`MAX_LOCAL_VALUE_BYTES`] (`bytes`: its size as JSON, which the caller has or makes).
    pub(crate) fn put<T: Clone + Send + Sync + 'static>(
        &self,
        view: View,
        params: &str,
        commits: u64,
        valid_until_ms: Option<i64>,
        value: &T,
        bytes: usize,
    ) {
        if bytes > MAX_LOCAL_VALUE_BYTES {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.by_key.len() >= MAX_LOCAL_VIEWS || entries.bytes + bytes > MAX_LOCAL_BYTES {
            entries.by_key.clear();
            entries.bytes = 0;
        }
        let replaced = entries.by_key.insert(
            (view, params.to_owned()),
            Entry {
                commits,
                valid_until_ms: valid_until_ms.unwrap_or(i64::MAX),
                bytes,
                value: Arc::new(value.clone()),
            },
        );
        entries.bytes = entries.bytes + bytes - replaced.map_or(0, |old| old.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_stands_until_a_commit_or_its_validity_ends() {
        let commits = Arc::new(AtomicU64::new(7));
        let local = LocalViews::new(Arc::clone(&commits));
        let read_at = local.commits();
        local.put(
            View::Metrics,
            "24h",
            read_at,
            Some(1_000),
            &vec![1, 2, 3],
            7,
        );
        assert_eq!(
            local.get::<Vec<i32>>(View::Metrics, "24h", 999),
            Some(vec![1, 2, 3])
        );
        assert_eq!(
            local.get::<Vec<i32>>(View::Metrics, "24h", 1_000),
            None,
            "expired"
        );
        assert_eq!(
            local.get::<Vec<i32>>(View::Timeline, "24h", 0),
            None,
            "another view"
        );
        assert_eq!(
            local.get::<String>(View::Metrics, "24h", 0),
            None,
            "another type"
        );
        commits.fetch_add(1, Ordering::Release);
        assert_eq!(
            local.get::<Vec<i32>>(View::Metrics, "24h", 0),
            None,
            "a commit since"
        );
    }

    #[test]
    fn a_values_size_is_the_length_of_its_json() {
        let value = serde_json::json!({"a": [1, 2, 3], "b": "x\"y", "c": null});
        assert_eq!(
            json_len(&value),
            Some(serde_json::to_vec(&value).unwrap().len())
        );
    }

    #[test]
    fn the_tier_never_holds_more_than_its_caps() {
        let local = LocalViews::new(Arc::new(AtomicU64::new(0)));
        for n in 0..(MAX_LOCAL_VIEWS * 3) {
            local.put(View::Metrics, &n.to_string(), 0, None, &n, 8);
        }
        let held = local.entries.lock().unwrap().by_key.len();
        assert!(held <= MAX_LOCAL_VIEWS, "{held}");
        // Half-megabyte values: the byte budget clears the tier long before the count does.
        let big = "x".repeat(512 * 1024);
        for n in 0..100 {
            local.put(View::RecentEvents, &n.to_string(), 0, None, &big, big.len());
            let bytes = local.entries.lock().unwrap().bytes;
            assert!(bytes <= MAX_LOCAL_BYTES, "{bytes}");
        }
        // A value past the largest kept is not kept at all.
        let huge = "x".repeat(MAX_LOCAL_VALUE_BYTES + 1);
        local.put(View::RecentEvents, "huge", 0, None, &huge, huge.len());
        assert_eq!(local.get::<String>(View::RecentEvents, "huge", 0), None);
        local.put(View::RecentEvents, "same", 0, None, &big, big.len());
        local.put(View::RecentEvents, "same", 0, None, &big, big.len());
        let entries = local.entries.lock().unwrap();
        let counted: usize = entries.by_key.values().map(|e| e.bytes).sum();
        assert_eq!(
            entries.bytes, counted,
            "a replaced value's bytes are given back"
        );
    }
}
