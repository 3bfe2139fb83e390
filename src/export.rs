//! `hookwatch export`: downloads `GET /api/export` to a file or stdout, with progress on
//! stderr.
//!
//! The body is copied to the output as it arrives, 64 KiB at a time, so memory stays flat for
//! any size. A transfer cut short (the server stopped, or a page read failed after the answer had
//! started) is reported as an error, never left looking like a complete file.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::client::http::{HttpClient, ServerUrl};

#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// The hookwatch server: http://host:port, or https://host behind TLS.
    #[arg(long, env = "HOOKWATCH_SERVER", default_value = crate::client::DEFAULT_SERVER)]
    pub server: String,
    /// A PEM file of an https server's own certificate (pinned: a self-signed one, checked
    /// for its dates and host) or of the CA that signed it (a team's own); trusted instead of
    /// the public roots.
    #[arg(long, env = "HOOKWATCH_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// jsonl (one saved event per line) or csv.
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
    pub format: String,
    /// Events at or after this time: milliseconds, an ISO 8601 time, or an age such as 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// Events at or before this time: milliseconds, an ISO 8601 time, or an age such as 1h.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this source app.
    #[arg(long)]
    pub app: Option<String>,
    /// Only this session.
    #[arg(long)]
    pub session: Option<String>,
    /// Only this event type.
    #[arg(long)]
    pub event_type: Option<String>,
    /// Write here instead of stdout.
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
    /// No progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `1764000000000`, `2026-11-20T10:00:00Z`, or an age (`7d`, `12h`) before now.
fn parse_time(text: &str, now_ms: i64) -> anyhow::Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Some(ms) = crate::domain::time::parse_duration_ms(text) {
        return Ok(now_ms - ms);
    }
    crate::domain::time::parse_iso8601_ms(text).with_context(|| {
        format!("{text:?} is not milliseconds, an ISO 8601 time or an age like 7d")
    })
}

fn query_string(args: &ExportArgs, now_ms: i64) -> anyhow::Result<String> {
    let mut pairs = vec![format!("format={}", args.format)];
    for (name, value) in [("since", &args.since), ("until", &args.until)] {
        if let Some(text) = value {
            pairs.push(format!("{name}={}", parse_time(text, now_ms)?));
        }
    }
    for (name, value) in [
        ("app", &args.app),
        ("session_id", &args.session),
        ("event_type", &args.event_type),
    ] {
        if let Some(text) = value {
            pairs.push(format!("{name}={}", percent_encode(text)));
        }
    }
    Ok(pairs.join("&"))
}

/// `text` with every byte but the unreserved ones percent-encoded (RFC 3986), for a query
/// value or a path segment.
pub(crate) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Counts rows as bytes stream past: line breaks outside CSV quotes.
#[derive(Default)]
struct RowCounter {
    rows: u64,
    in_quotes: bool,
}

impl RowCounter {
    fn feed(&mut self, bytes: &[u8], csv: bool) {
        for &b in bytes {
            match b {
                b'"' if csv => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => self.rows += 1,
                _ => {}
            }
        }
    }
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let server = ServerUrl::parse(&args.server)?;
    let client = HttpClient::new(args.ca_cert.as_deref())?;
    let now_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let path = format!("/api/export?{}", query_string(&args, now_ms)?);
    let token = std::env::var("HOOKWATCH_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let (status, mut body) =
        client.get_streaming(&server, &path, token.as_deref(), Duration::from_secs(30))?;
    if !(200..300).contains(&status) {
        let mut text = Vec::new();
        let _ = body.take(64 * 1024).read_to_end(&mut text);
        bail!(
            "the server answered {status}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    let mut output: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("could not create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let csv = args.format == "csv";
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut counter = RowCounter::default();
    let mut bytes = 0u64;
    let report = |counter: &RowCounter, bytes: u64, done: bool| {
        let rows = counter.rows.saturating_sub(u64::from(csv));
        eprint!(
            "\r{} {rows} events, {:.1} MiB, {:.1} s{}",
            if done { "exported" } else { "exporting" },
            bytes as f64 / (1024.0 * 1024.0),
            started.elapsed().as_secs_f64(),
            if done { "\n" } else { "" }
        );
    };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = body
            .read(&mut chunk)
            .context("the export was cut short; the output is incomplete")?;
        if n == 0 {
            break;
        }
        let data = &chunk[..n];
        counter.feed(data, csv);
        bytes += n as u64;
        output.write_all(data).context("writing the export")?;
        if !args.quiet && last_report.elapsed() > Duration::from_millis(500) {
            last_report = Instant::now();
            report(&counter, bytes, false);
        }
    }
    output.flush().context("writing the export")?;
    if !args.quiet {
        report(&counter, bytes, true);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_millis_iso_or_age() {
        let now = 1_795_168_800_000;
        assert_eq!(parse_time("1700000000000", now).unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("2d", now).unwrap(), now - 2 * 86_400_000);
        assert_eq!(parse_time("2026-11-20T10:00:00Z", now).unwrap(), now);
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn rows_are_counted_outside_csv_quotes() {
        let mut counter = RowCounter::default();
        counter.feed(b"a,\"line\nbreak\"\nb,", true);
        counter.feed(b"\"\"\"x\"\n", true);
        assert_eq!(counter.rows, 2);
    }
}
