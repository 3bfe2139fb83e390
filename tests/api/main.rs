//! hookwatch's integration tests: one binary, real servers on port 0, real SQLite files in
//! temp dirs, real HTTP.

mod auth;
mod backpressure;
mod bad_input;
mod browser;
mod browsers;
mod cache;
mod cli;
mod client;
mod compatibility;
mod crash_safety;
mod dashboard;
mod disk_full;
mod export;
mod fixtures;
mod helpers;
mod hitl;
mod hostile;
mod idempotency;
mod limits;
mod log_privacy;
mod metrics;
mod origin_clients;
mod otlp;
mod otlp_join;
mod poison;
mod postgres;
mod reads;
mod redis_server;
mod retention;
mod scale_out;
mod store_errors;
mod stream;
mod stream_limits;
mod time_sanity;
mod tls;
