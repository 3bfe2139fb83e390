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
//! are minute-aligned, so few); when full, the whole tier is cleared rather than tracked.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::View;

/// The most values the tier holds.
pub(crate) const MAX_LOCAL_VIEWS: usize = 512;

struct Entry {
    commits: u64,
    valid_until_ms: i64,
    value: Arc<dyn Any + Send + Sync>,
}

pub(crate) struct LocalViews {
    commits: Arc<AtomicU64>,
    entries: Mutex<HashMap<(View, String), Entry>>,
}

impl LocalViews {
    pub(crate) fn new(commits: Arc<AtomicU64>) -> Self {
        Self {
            commits,
            entries: Mutex::new(HashMap::new()),
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
        let entry = entries.get(&(view, params.to_owned()))?;
        if entry.commits != commits || now_ms >= entry.valid_until_ms {
            return None;
        }
        entry.value.downcast_ref::<T>().cloned()
    }

    /// Keeps `value`, read when the commit count was `commits`.
    pub(crate) fn put<T: Clone + Send + Sync + 'static>(
        &self,
        view: View,
        params: &str,
        commits: u64,
        valid_until_ms: Option<i64>,
        value: &T,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_LOCAL_VIEWS {
            entries.clear();
        }
        entries.insert(
            (view, params.to_owned()),
            Entry {
                commits,
                valid_until_ms: valid_until_ms.unwrap_or(i64::MAX),
                value: Arc::new(value.clone()),
            },
        );
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
        local.put(View::Metrics, "24h", read_at, Some(1_000), &vec![1, 2, 3]);
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
    fn the_tier_never_holds_more_than_its_cap() {
        let local = LocalViews::new(Arc::new(AtomicU64::new(0)));
        for n in 0..(MAX_LOCAL_VIEWS * 3) {
            local.put(View::Metrics, &n.to_string(), 0, None, &n);
        }
        let held = local.entries.lock().unwrap().len();
        assert!(held <= MAX_LOCAL_VIEWS, "{held}");
    }
}
