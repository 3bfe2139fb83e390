//! The domain: events, lifecycle rules, Claude Code's telemetry and usage, prices, time and
//! views. No SQL and no HTTP here (`tests/tidy.rs` holds it to that).

pub mod attribution;
pub mod event;
pub mod lifecycle;
pub mod pricing;
pub mod sessions;
pub mod telemetry;
pub mod time;
pub mod trace;
pub mod usage;
pub mod views;
