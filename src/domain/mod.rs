//! The domain: events, lifecycle rules, prices, time and views. No SQL and no HTTP here.

pub mod event;
pub mod lifecycle;
pub mod pricing;
pub mod telemetry;
pub mod time;
pub mod trace;
pub mod usage;
pub mod views;
