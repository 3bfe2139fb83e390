//! The hook client's spool: where events wait while the server cannot take them.
//!
//! One file per event, named by its UUIDv7 `event_id` (so names sort by time), written to a
//! temporary name and renamed into place: many hook processes can spool at once and a reader
//! never sees a torn or interleaved event. The size is bounded: a small state file, updated
//! under an exclusive file lock, counts bytes, events and drops; when a new event would pass
//! the limit, the oldest events are deleted (the newest are kept) and counted as dropped.
//! One drainer at a time (a second lock file); replayed events keep their `event_id`, so the
//! server stores each exactly once even if a drain is interrupted and repeated.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

const STATE_FILE: &str = ".state";
const DRAIN_LOCK_FILE: &str = ".drain.lock";
const EVENT_SUFFIX: &str = ".json";
const TEMP_PREFIX: &str = ".tmp-";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolState {
    pub bytes: u64,
    pub events: u64,
    /// Events deleted to stay under the limit, or rejected by the server on replay.
    pub dropped: u64,
}

impl SpoolState {
    fn parse(text: &str) -> Self {
        let mut numbers = text.split_whitespace().map(|n| n.parse().unwrap_or(0));
        Self {
            bytes: numbers.next().unwrap_or(0),
            events: numbers.next().unwrap_or(0),
            dropped: numbers.next().unwrap_or(0),
        }
    }

    fn render(&self) -> String {
        format!("{} {} {}\n", self.bytes, self.events, self.dropped)
    }
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
}

/// One spooled event.
pub(crate) struct Spooled {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl Spool {
    pub(crate) fn new(dir: PathBuf, max_bytes: u64) -> Self {
        Self { dir, max_bytes }
    }

    /// Adds an event. Keeps the newest events when full: the oldest are dropped and counted.
    pub(crate) fn push(&self, event_id: &str, envelope: &[u8]) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let name = format!("{event_id}{EVENT_SUFFIX}");
        let temp = self.dir.join(format!("{TEMP_PREFIX}{name}"));
        {
            let mut file = File::create(&temp)?;
            file.write_all(envelope)?;
            file.write_all(b"\n")?;
            file.sync_data()?;
        }
        let size = envelope.len() as u64 + 1;
        self.with_state(|state| {
            if state.bytes + size > self.max_bytes {
                self.drop_oldest(state, size);
            }
            fs::rename(&temp, self.dir.join(&name))?;
            state.bytes += size;
            state.events += 1;
            Ok(())
        })
    }

    /// Deletes the oldest events until `incoming` more bytes fit. Called under the state lock.
    fn drop_oldest(&self, state: &mut SpoolState, incoming: u64) {
        let Ok(names) = self.event_names() else {
            return;
        };
        for name in names {
            if state.bytes + incoming <= self.max_bytes {
                break;
            }
            let path = self.dir.join(&name);
            let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if fs::remove_file(&path).is_ok() {
                state.bytes = state.bytes.saturating_sub(size);
                state.events = state.events.saturating_sub(1);
                state.dropped += 1;
            }
        }
    }

    /// The spooled events' file names, oldest first.
    fn event_names(&self) -> std::io::Result<Vec<String>> {
        let mut names: Vec<String> = match fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(EVENT_SUFFIX) && !n.starts_with('.'))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        names.sort_unstable();
        Ok(names)
    }

    /// Is anything waiting? Cheap: stops at the first event file.
    pub(crate) fn has_events(&self) -> bool {
        fs::read_dir(&self.dir).is_ok_and(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.ends_with(EVENT_SUFFIX) && !n.starts_with('.'))
            })
        })
    }

    /// The oldest `max_events` events (at most `max_bytes` in all, but at least one).
    pub(crate) fn oldest(
        &self,
        max_events: usize,
        max_bytes: usize,
    ) -> std::io::Result<Vec<Spooled>> {
        let mut batch = Vec::new();
        let mut total = 0;
        for name in self.event_names()? {
            if batch.len() >= max_events {
                break;
            }
            let path = self.dir.join(&name);
            let mut bytes = Vec::new();
            match File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)) {
                Ok(_) => {}
                // Another drainer took it, or it was dropped: skip.
                Err(_) => continue,
            }
            total += bytes.len();
            if total > max_bytes && !batch.is_empty() {
                break;
            }
            batch.push(Spooled { path, bytes });
        }
        Ok(batch)
    }

    /// Removes delivered (or rejected) events; `rejected` of them count as dropped.
    pub(crate) fn remove(&self, delivered: &[Spooled], rejected: u64) -> std::io::Result<()> {
        self.with_state(|state| {
            for event in delivered {
                if fs::remove_file(&event.path).is_ok() {
                    state.bytes = state.bytes.saturating_sub(event.bytes.len() as u64);
                    state.events = state.events.saturating_sub(1);
                }
            }
            state.dropped += rejected;
            Ok(())
        })
    }

    pub fn state(&self) -> SpoolState {
        fs::read_to_string(self.dir.join(STATE_FILE))
            .map(|text| SpoolState::parse(&text))
            .unwrap_or_default()
    }

    /// Holds the drain lock while `drain` runs; `None` when another drain holds it.
    pub(crate) fn with_drain_lock<T>(
        &self,
        drain: impl FnOnce() -> T,
    ) -> std::io::Result<Option<T>> {
        fs::create_dir_all(&self.dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(DRAIN_LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => Ok(Some(drain())),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn with_state<T>(
        &self,
        change: impl FnOnce(&mut SpoolState) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(self.dir.join(STATE_FILE))?;
        file.lock()?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let mut state = SpoolState::parse(&text);
        let outcome = change(&mut state);
        file.seek(SeekFrom::Start(0))?;
        file.set_len(0)?;
        file.write_all(state.render().as_bytes())?;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> (String, Vec<u8>) {
        (
            format!("0190{n:04}-0000-7000-8000-000000000000"),
            format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(80)).into_bytes(),
        )
    }

    #[test]
    fn events_come_back_oldest_first_and_are_removed_once_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"), 1 << 20);
        assert!(!spool.has_events());
        for n in [3, 1, 2] {
            let (id, body) = event(n);
            spool.push(&id, &body).unwrap();
        }
        assert!(spool.has_events());
        let batch = spool.oldest(10, 1 << 20).unwrap();
        let order: Vec<u8> = batch.iter().map(|e| e.bytes[5]).collect();
        assert_eq!(order, vec![b'1', b'2', b'3']);
        spool.remove(&batch[..2], 0).unwrap();
        assert_eq!(spool.state().events, 1);
        assert_eq!(spool.oldest(10, 1 << 20).unwrap().len(), 1);
    }

    #[test]
    fn a_full_spool_keeps_the_newest_events_and_counts_the_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (_, sample) = event(0);
        let per_event = sample.len() as u64 + 1;
        let spool = Spool::new(dir.path().to_path_buf(), per_event * 5);
        for n in 0..8 {
            let (id, body) = event(n);
            spool.push(&id, &body).unwrap();
        }
        let state = spool.state();
        assert_eq!((state.events, state.dropped), (5, 3));
        assert!(state.bytes <= per_event * 5);
        let kept: Vec<u8> = spool
            .oldest(10, 1 << 20)
            .unwrap()
            .iter()
            .map(|e| e.bytes[5])
            .collect();
        assert_eq!(kept, b"34567".to_vec(), "the newest five are kept");
    }

    #[test]
    fn only_one_drainer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().to_path_buf(), 1 << 20);
        let outer = spool
            .with_drain_lock(|| spool.with_drain_lock(|| ()).unwrap())
            .unwrap();
        assert_eq!(outer, Some(None), "the inner attempt found the lock held");
    }
}
