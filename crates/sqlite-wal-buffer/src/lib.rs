//! A SQLite VFS that writes each commit's WAL frames in a few large writes instead of two per
//! page.
//!
//! SQLite writes a WAL frame as two `pwrite`s (its 24-byte header, then the page), so a commit
//! of a hundred pages is two hundred system calls, and in the ingest benchmark those calls were
//! a third of the writer thread's time (BENCHMARKS.md). This VFS wraps the platform's default
//! one and, for WAL files only, keeps consecutive writes in a buffer and hands them to the real
//! file in writes of up to `MAX_WRITE` bytes when SQLite next needs them on disk or readable:
//!
//! - as soon as a commit's last frame is in: SQLite writes a frame as its 24-byte header, then
//!   its page, and a commit frame's header carries the database size (non-zero; zero in every
//!   other frame, as the WAL file format specifies). SQLite publishes the commit in the WAL
//!   index only after that write returns, so no other connection (reader or checkpointer) can
//!   look for a frame that is still only in the buffer;
//! - before `xSync`, `xRead`, `xTruncate`, `xFileSize`, `xFileControl` and `xClose` on the file;
//! - before a write that does not continue the buffered bytes (SQLite rewrites a frame of the
//!   open transaction in place), and once the buffer holds `MAX_BUFFERED` bytes.
//!
//! All of this holds only where SQLite never writes after the commit frame once it is published,
//! which is where the WAL file has `SQLITE_IOCAP_POWERSAFE_OVERWRITE` (SQLite's default, turned
//! off per database with the URI parameter `psow=0`). Without it SQLite pads each commit with
//! copies of its last frame up to a sector boundary and splits the write that crosses it around
//! a sync, so the tail of a padding frame would stay in the buffer after the commit is
//! published. Such a WAL file is therefore passed straight through, unbuffered; the VFS asks
//! the question SQLite asks ([`WalFileCounts`] says how many files went which way).
//!
//! A crash loses only buffered bytes, which belong to a transaction whose commit frame was not
//! yet written, so not yet committed: the same as a crash between SQLite's own writes. A
//! failed flush is reported by the call that caused it (the commit frame's write, say), and
//! SQLite rolls the transaction back as it would after any failed write. Only the writer's
//! connection uses this VFS; readers and the checkpointer use the default one.
//!
//! This is the workspace's one crate with `unsafe` code (hookwatch forbids it): SQLite's VFS
//! interface is C function pointers over raw structs. Every function here only forwards to the
//! real VFS after the buffer logic; `tests/through_sqlite.rs` (commits, spills, `psow=0`, a
//! full disk and a killed writer in the middle of a flush) and hookwatch's whole integration
//! suite run through it. Register it with [`register`] and
//! open a connection with the VFS named [`VFS_NAME`].

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use libsqlite3_sys as ffi;

/// The name connections open with to use this VFS.
pub const VFS_NAME: &CStr = c"hookwatch-walbuf";

/// The most bytes held before they are written out anyway.
const MAX_BUFFERED: usize = 1 << 20;

/// The most bytes one write to the real file carries: SQLite's unix VFS writes at most
/// 128 KiB - 1 per call (`seekAndWriteFd` masks the length to 17 bits).
const MAX_WRITE: usize = 64 * 1024;

/// WAL files opened through this VFS since the process started, by how they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalFileCounts {
    /// Buffered: the file has `SQLITE_IOCAP_POWERSAFE_OVERWRITE`.
    pub buffered: u64,
    /// Passed straight through: it has not (`psow=0`).
    pub passed_through: u64,
}

static BUFFERED_FILES: AtomicU64 = AtomicU64::new(0);
static PASSED_THROUGH_FILES: AtomicU64 = AtomicU64::new(0);

/// How many WAL files this VFS has opened, buffered and passed through.
pub fn wal_file_counts() -> WalFileCounts {
    WalFileCounts {
        buffered: BUFFERED_FILES.load(Ordering::Relaxed),
        passed_through: PASSED_THROUGH_FILES.load(Ordering::Relaxed),
    }
}

/// The platform's default VFS, which this one wraps.
static REAL_VFS: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

/// Registers the VFS once per process (SQLite keeps it for the life of the process).
pub fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: `sqlite3_vfs_find` and `sqlite3_vfs_register` are thread-safe; the VFS
            // struct is leaked, so it outlives every connection, as SQLite requires.
            unsafe {
                let real = ffi::sqlite3_vfs_find(std::ptr::null());
                if real.is_null() {
                    return Err("SQLite has no default VFS".into());
                }
                REAL_VFS.store(real, Ordering::SeqCst);
                let mut vfs = *real;
                vfs.szOsFile = (HEADER + (*real).szOsFile as usize) as c_int;
                vfs.zName = VFS_NAME.as_ptr();
                vfs.pNext = std::ptr::null_mut();
                vfs.xOpen = Some(open);
                let rc = ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0);
                if rc != ffi::SQLITE_OK {
                    return Err(format!("registering the WAL-buffering VFS failed ({rc})"));
                }
            }
            Ok(())
        })
        .clone()
}

/// What SQLite's `sqlite3_file` is for a WAL file opened here; the real file follows it in the
/// same allocation (SQLite allocates `szOsFile` bytes).
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    pending: *mut Pending,
}

/// Bytes written but not yet handed to the real file, which belong at `offset`.
#[derive(Default)]
struct Pending {
    offset: i64,
    bytes: Vec<u8>,
    /// The last write was a commit frame's header: its page, the next write, ends the commit.
    commit_page_next: bool,
    /// The file lacks `SQLITE_IOCAP_POWERSAFE_OVERWRITE`: every write goes straight through.
    pass_through: bool,
}

/// Bytes in a WAL frame header; SQLite writes each header as a write of its own, then the page.
const FRAME_HEADER: usize = 24;

/// Whether `header` (a frame header) marks a commit: its second big-endian word, the database
/// size in pages after the commit, is non-zero only in a transaction's last frame.
fn is_commit_header(header: &[u8]) -> bool {
    header.len() == FRAME_HEADER && header[4..8] != [0, 0, 0, 0]
}

/// Where the real file starts: after the header, 8-byte aligned.
const HEADER: usize = std::mem::size_of::<WalFile>().next_multiple_of(8);

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes a `szOsFile`-byte allocation for `file`; `REAL_VFS` was set before
    // this VFS was registered.
    unsafe {
        let real_vfs = REAL_VFS.load(Ordering::SeqCst);
        let Some(real_open) = (*real_vfs).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Not a WAL: the real file, in place, with its own methods.
            return real_open(real_vfs, name, file, flags, out_flags);
        }
        let wal = file.cast::<WalFile>();
        let real = file.cast::<u8>().add(HEADER).cast::<ffi::sqlite3_file>();
        (*wal).base.pMethods = std::ptr::null();
        (*wal).real = real;
        (*wal).pending = std::ptr::null_mut();
        let rc = real_open(real_vfs, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            if !(*real).pMethods.is_null()
                && let Some(close) = real_method(real, |m| m.xClose)
            {
                close(real);
            }
            return rc;
        }
        let pass_through = !is_powersafe(name, real);
        let counter = if pass_through {
            &PASSED_THROUGH_FILES
        } else {
            &BUFFERED_FILES
        };
        counter.fetch_add(1, Ordering::Relaxed);
        (*wal).pending = Box::into_raw(Box::new(Pending {
            pass_through,
            ..Pending::default()
        }));
        (*wal).base.pMethods = &WAL_METHODS;
        ffi::SQLITE_OK
    }
}

/// Whether SQLite writes this WAL without padding commits. SQLite decides it from the main
/// database file's `SQLITE_IOCAP_POWERSAFE_OVERWRITE` (`sqlite3WalOpen`), which the platform
/// VFSs set from the database's `psow` URI parameter (on unless `psow=0`). A WAL file's name
/// carries its database's URI parameters, so the same answer is read from it here; the WAL
/// file's own characteristics must say so too.
///
/// # Safety
/// `name` is the name SQLite passed to `xOpen` for a WAL file (or null); `real` is open.
unsafe fn is_powersafe(name: *const c_char, real: *mut ffi::sqlite3_file) -> bool {
    // SAFETY: see the function's contract; `sqlite3_uri_boolean` reads a WAL name's
    // parameters (SQLite 3.31 and later).
    unsafe {
        let characteristics = real_method(real, |m| m.xDeviceCharacteristics)
            .map_or(0, |characteristics| characteristics(real));
        !name.is_null()
            && ffi::sqlite3_uri_boolean(name, c"psow".as_ptr(), 1) != 0
            && characteristics & ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE != 0
    }
}

/// The real file's method `pick` returns, if it has one.
///
/// # Safety
/// `real` must be an open file.
unsafe fn real_method<F>(
    real: *mut ffi::sqlite3_file,
    pick: impl FnOnce(&ffi::sqlite3_io_methods) -> Option<F>,
) -> Option<F> {
    // SAFETY: an open file's `pMethods` points at its methods (caller's contract).
    unsafe { pick(&*(*real).pMethods) }
}

/// The WAL file behind `file`, and its buffer.
///
/// # Safety
/// `file` must have been opened by [`open`] as a WAL file.
unsafe fn parts<'a>(file: *mut ffi::sqlite3_file) -> (*mut ffi::sqlite3_file, &'a mut Pending) {
    // SAFETY: see the function's contract; SQLite calls a file's methods from one thread at a
    // time, so the buffer is never aliased.
    unsafe {
        let wal = file.cast::<WalFile>();
        ((*wal).real, &mut *(*wal).pending)
    }
}

/// Writes the buffered bytes to the real file, at most `MAX_WRITE` bytes a call. The buffer
/// is empty afterwards even on error: SQLite gives up the transaction those bytes belonged to.
///
/// # Safety
/// `real` must be an open file.
unsafe fn flush(real: *mut ffi::sqlite3_file, pending: &mut Pending) -> c_int {
    let mut rc = ffi::SQLITE_OK;
    let mut offset = pending.offset;
    for chunk in pending.bytes.chunks(MAX_WRITE) {
        // SAFETY: `real` is open (caller's contract); the pointer and length describe `chunk`.
        rc = unsafe {
            match real_method(real, |m| m.xWrite) {
                Some(write) => write(
                    real,
                    chunk.as_ptr().cast::<c_void>(),
                    chunk.len() as c_int,
                    offset,
                ),
                None => ffi::SQLITE_IOERR_WRITE,
            }
        };
        if rc != ffi::SQLITE_OK {
            break;
        }
        offset += chunk.len() as i64;
    }
    pending.bytes.clear();
    if pending.bytes.capacity() > MAX_BUFFERED * 2 {
        pending.bytes.shrink_to(MAX_BUFFERED);
    }
    rc
}

/// Calls the real file's method (`$missing` if it has none); locks and device facts do not
/// touch the buffer.
macro_rules! forward {
    ($file:ident, $method:ident, $missing:expr, $($arg:expr),*) => {
        // SAFETY: forwarded as SQLite passed them.
        unsafe {
            let (real, _) = parts($file);
            match real_method(real, |m| m.$method) {
                Some(method) => method(real, $($arg),*),
                None => $missing,
            }
        }
    };
}

/// Writes the buffer out, then does what [`forward!`] does.
macro_rules! flush_then {
    ($file:ident, $method:ident, $missing:expr, $($arg:expr),*) => {{
        // SAFETY: `$file` is a WAL file SQLite opened through `open`.
        let rc = unsafe {
            let (real, pending) = parts($file);
            flush(real, pending)
        };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        forward!($file, $method, $missing, $($arg),*)
    }};
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes each file it opened once; the buffer was boxed by `open`.
    unsafe {
        let (real, pending) = parts(file);
        let flushed = flush(real, pending);
        let wal = file.cast::<WalFile>();
        drop(Box::from_raw((*wal).pending));
        (*wal).pending = std::ptr::null_mut();
        let closed = real_method(real, |m| m.xClose).map_or(ffi::SQLITE_OK, |close| close(real));
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buffer: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    flush_then!(file, xRead, ffi::SQLITE_IOERR_READ, buffer, amount, offset)
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    if amount <= 0 {
        return ffi::SQLITE_OK;
    }
    // SAFETY: SQLite passes `amount` readable bytes at `data`.
    unsafe {
        let (real, pending) = parts(file);
        if pending.pass_through {
            return match real_method(real, |m| m.xWrite) {
                Some(write) => write(real, data, amount, offset),
                None => ffi::SQLITE_IOERR_WRITE,
            };
        }
        let continues = pending.offset + pending.bytes.len() as i64 == offset;
        if !pending.bytes.is_empty() && !continues {
            let rc = flush(real, pending);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if pending.bytes.is_empty() {
            pending.offset = offset;
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), amount as usize);
        pending.bytes.extend_from_slice(bytes);
        // A commit's last page is in: out it goes, before SQLite publishes the commit in the
        // WAL index (with `synchronous = FULL` the sync that follows would flush it anyway).
        let ends_commit = std::mem::replace(&mut pending.commit_page_next, is_commit_header(bytes));
        if ends_commit || pending.bytes.len() >= MAX_BUFFERED {
            return flush(real, pending);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    flush_then!(file, xTruncate, ffi::SQLITE_IOERR, size)
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    flush_then!(file, xSync, ffi::SQLITE_IOERR, flags)
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    flush_then!(file, xFileSize, ffi::SQLITE_IOERR, size)
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    argument: *mut c_void,
) -> c_int {
    flush_then!(file, xFileControl, ffi::SQLITE_IOERR, op, argument)
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xLock, ffi::SQLITE_IOERR_LOCK, level)
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xUnlock, ffi::SQLITE_IOERR_UNLOCK, level)
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    forward!(
        file,
        xCheckReservedLock,
        ffi::SQLITE_IOERR_CHECKRESERVEDLOCK,
        out
    )
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xSectorSize, 4096,)
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xDeviceCharacteristics, 0,)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_frame_header_with_a_database_size_marks_a_commit() {
        let mut header = [0u8; FRAME_HEADER];
        header[3] = 7; // page 7
        assert!(!is_commit_header(&header));
        header[7] = 42; // 42 pages after the commit
        assert!(is_commit_header(&header));
        assert!(
            !is_commit_header(&[1u8; 32]),
            "the WAL header is not a frame header"
        );
    }
}
