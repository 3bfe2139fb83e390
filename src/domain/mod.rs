//! The domain: events, lifecycle rules, Claude Code's telemetry and usage, prices, time and
//! views. No SQL and no HTTP here (`tests/tidy.rs` holds it to that).

pub(crate) mod attribution;
pub mod coding_agent;
pub(crate) mod event;
pub(crate) mod lifecycle;
pub mod pricing;
pub(crate) mod sessions;
pub(crate) mod team;
pub mod telemetry;
pub mod time;
pub(crate) mod trace;
pub(crate) mod usage;
pub(crate) mod views;
