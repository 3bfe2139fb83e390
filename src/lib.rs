//! hookwatch: an observability server for fleets of AI coding agents.
//!
//! Events come in over HTTP ([`api`]), become validated [`domain::event::HookEvent`]s, and are
//! committed with everything derived from them ([`domain::lifecycle`]) by the [`store`]. The
//! [`service::MetricsService`] owns every operation and answers the views. [`startup`] wires it
//! together; `main.rs` only parses arguments. See ARCHITECTURE.md for the map.

// hookwatch is an application whose library exists for its binary, its tests and its
// benchmarks: its docs are built with `--document-private-items` (`.ci/run`), where links to
// crate-private items resolve and a broken one still fails.
#![allow(rustdoc::private_intra_doc_links)]

pub mod alerts;
pub mod api;
pub mod cache;
pub mod client;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod domain;
pub mod export;
pub mod fanout;
pub mod health;
pub mod http_server;
pub mod live;
pub mod notices;
pub mod otlp;
pub mod retention;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
