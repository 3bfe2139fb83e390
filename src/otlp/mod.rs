//! The coding agents' own OpenTelemetry export (OTLP), read into hookwatch's terms: Claude
//! Code's first, and Codex CLI's and Gemini CLI's logs beside it (`agent`, `codex`, `gemini`).
//!
//! Claude Code sends metrics (cost, tokens, lines, commits, active time) and events as OTLP
//! logs (every API request with its cost and tokens, API errors, tool results and decisions,
//! prompts). Read beside the hook events they turn cost from an estimate into a measurement.
//! This module is the reading half, with no I/O: [`wire`] decodes an export request in either
//! OTLP/HTTP encoding (protobuf or JSON, gzip or not, under a size limit) with the maintained
//! `opentelemetry-proto` types, once [`bounds`] has counted what decoding would build, and
//! [`claude`] turns its records into typed ones within the hook intake's rules, normalising
//! the value-type quirks Claude Code's exporter has (numbers as int, double or numeric string;
//! booleans as strings). Reference: `claude-code-otel.md` (§5.3, §8).

pub(crate) mod agent;
pub(crate) mod attributes;
pub mod bounds;
pub(crate) mod claude;
pub(crate) mod codex;
pub(crate) mod events;
pub(crate) mod gemini;
pub(crate) mod wire;

/// The OTLP signals, as `/metrics` labels them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Logs,
    Metrics,
    Traces,
}

impl Signal {
    pub(crate) const ALL: [Self; 3] = [Self::Logs, Self::Metrics, Self::Traces];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Logs => "logs",
            Self::Metrics => "metrics",
            Self::Traces => "traces",
        }
    }
}
