//! The fault tests' writer (`tests/faults.rs`): commits through the WAL-buffering VFS until it
//! is killed or a write fails, printing the rows acknowledged after each commit returns. It
//! never checkpoints, so the WAL is the only file that grows, and every write that grows it is
//! one of the VFS's flushes.
//!
//! `wal-buffer-writer DATABASE_URI ROWS_PER_COMMIT SYNCHRONOUS`

use std::io::Write as _;

use rusqlite::{Connection, OpenFlags};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, uri, rows, synchronous] = args.as_slice() else {
        eprintln!("usage: wal-buffer-writer DATABASE_URI ROWS_PER_COMMIT SYNCHRONOUS");
        std::process::exit(2);
    };
    let rows: usize = rows.parse().expect("ROWS_PER_COMMIT is a number");
    if let Err(e) = write_until_stopped(uri, rows, synchronous) {
        eprintln!("wal-buffer-writer: {e}");
        std::process::exit(1);
    }
}

fn write_until_stopped(uri: &str, rows: usize, synchronous: &str) -> rusqlite::Result<()> {
    sqlite_wal_buffer::register().expect("register the VFS");
    let flags = OpenFlags::default() | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags_and_vfs(uri, flags, sqlite_wal_buffer::VFS_NAME)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA wal_autocheckpoint = 0;
         CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"
    ))?;
    let mut acknowledged: i64 = conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0))?;
    let body = "w".repeat(1_000);
    let mut stdout = std::io::stdout().lock();
    loop {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        for _ in 0..rows {
            conn.execute("INSERT INTO t (body) VALUES (?1)", [&body])?;
        }
        conn.execute_batch("COMMIT")?;
        acknowledged += rows as i64;
        let _ = writeln!(stdout, "{acknowledged}");
        let _ = stdout.flush();
    }
}
