//! The access log, in Common Log Format (the format of NCSA httpd, Apache
//! and nginx's `common`):
//!
//! `10.99.0.2 - - [27/Nov/2026:13:55:36 +0000] "GET / HTTP/1.1" 200 1234`
//!
//! Each core appends lines to its own buffer and writes it out in one
//! `write` when it passes 64 KiB or once a second, so logging costs a
//! request a few formatted bytes, not a system call. Every core has its own
//! handle on the file, opened for appending: a whole buffer lands at the end
//! of the file in one piece.
//!
//! For log rotation, SIGUSR1 asks every core to reopen the file by name at
//! its next write (nginx's convention): rotate by renaming the file, then
//! signal, and no line is lost or split between the two files.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::SystemTime,
};

/// Buffered bytes that trigger a write.
const FLUSH_AT: usize = 64 * 1024;

/// One core's access log.
pub struct AccessLog {
    file: File,
    path: PathBuf,
    /// Bumped when the file is to be reopened (SIGUSR1); shared by cores.
    reopen: Arc<AtomicU64>,
    /// The `reopen` value this core's handle is for.
    opened: u64,
    /// The reopen request that failed last, once said.
    reopen_failed: Option<u64>,
    buf: Vec<u8>,
    /// The `[day/Mon/year:hh:mm:ss +0000]` stamp, reformatted once a second.
    stamp: String,
    stamp_second: u64,
    /// Write errors (the first is logged; serving goes on).
    failed: bool,
}

/// Opens the log for appending (created if missing), for one core; it is
/// opened again by name whenever `reopen` changes.
pub fn open(path: &Path, reopen: Arc<AtomicU64>) -> io::Result<AccessLog> {
    let file = append(path)?;
    Ok(AccessLog {
        file,
        path: path.to_path_buf(),
        opened: reopen.load(Ordering::Relaxed),
        reopen_failed: None,
        reopen,
        buf: Vec::with_capacity(FLUSH_AT + 1024),
        stamp: String::new(),
        stamp_second: u64::MAX,
        failed: false,
    })
}

impl AccessLog {
    /// Appends one line. `request_line` is `METHOD target HTTP/x.y` as
    /// received (quotes and control bytes in it are escaped; empty parts
    /// are left out, so an unparsable request logs as `"-"`).
    pub fn record(
        &mut self,
        peer: Ipv4Addr,
        request_line: (&str, &str, &str),
        status: u16,
        bytes: u64,
    ) {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.stamp_second {
            self.stamp_second = second;
            self.stamp = clf_time(second);
        }
        let (method, target, version) = request_line;
        let _ = write!(self.buf, "{peer} - - [{}] \"", self.stamp);
        for (i, part) in [method, target, version]
            .into_iter()
            .filter(|p| !p.is_empty())
            .enumerate()
        {
            if i > 0 {
                self.buf.push(b' ');
            }
            escape_into(&mut self.buf, part);
        }
        let _ = writeln!(self.buf, "\" {status} {bytes}");
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Writes what is buffered, to a freshly opened file if a reopen was
    /// asked for (what is buffered belongs to the new file: the old one
    /// was complete when it was renamed).
    pub fn flush(&mut self) {
        let wanted = self.reopen.load(Ordering::Relaxed);
        if wanted != self.opened {
            // Tried at every write until it works; said once per request.
            match append(&self.path) {
                Ok(file) => {
                    self.file = file;
                    self.opened = wanted;
                    self.failed = false;
                    self.reopen_failed = None;
                }
                Err(e) => {
                    if self.reopen_failed != Some(wanted) {
                        self.reopen_failed = Some(wanted);
                        tracing::error!(
                            "access log {}: cannot reopen: {e}; still writing to the old file, trying again every second",
                            self.path.display()
                        );
                    }
                }
            }
        }
        if self.buf.is_empty() {
            return;
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            if !self.failed {
                tracing::error!("access log: {e}; lines are being lost");
                self.failed = true;
            }
        }
        self.buf.clear();
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Escapes `"`, `\` and bytes outside printable ASCII, as nginx does
/// (`\xHH`), so a crafted request cannot forge log lines.
fn escape_into(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'"' | b'\\' => {
                let _ = write!(out, "\\x{b:02X}");
            }
            0x20..=0x7e => out.push(b),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

/// `dd/Mon/yyyy:hh:mm:ss +0000` for a Unix time, in UTC.
fn clf_time(unix: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_dates() {
        assert_eq!(clf_time(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(clf_time(971_186_136), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(clf_time(1_709_164_800), "29/Feb/2024:00:00:00 +0000");
        assert_eq!(clf_time(1_798_761_599), "31/Dec/2026:23:59:59 +0000");
    }

    #[test]
    fn a_reopen_moves_to_the_new_file_by_name() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("bypass-rotate-{}.log", std::process::id()));
        let rotated = path.with_extension("log.1");
        let _ = std::fs::remove_file(&path);
        let reopen = Arc::new(AtomicU64::new(0));
        let mut log = open(&path, reopen.clone()).unwrap();
        let peer = Ipv4Addr::new(10, 99, 0, 2);
        log.record(peer, ("GET", "/old", "HTTP/1.1"), 200, 1);
        log.flush();
        std::fs::rename(&path, &rotated).unwrap();
        log.record(peer, ("GET", "/still-old", "HTTP/1.1"), 200, 1);
        log.flush();
        reopen.fetch_add(1, Ordering::Relaxed);
        log.record(peer, ("GET", "/new", "HTTP/1.1"), 200, 1);
        drop(log);
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(old.contains("/old") && old.contains("/still-old") && !old.contains("/new"));
        assert_eq!(new.lines().count(), 1);
        assert!(new.contains("/new"));
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&rotated);
    }

    #[test]
    fn a_failed_reopen_is_tried_again() {
        let dir = std::env::temp_dir().join(format!("bypass-reopen-{}", std::process::id()));
        let moved = dir.with_extension("old");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&moved);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("access.log");
        let reopen = Arc::new(AtomicU64::new(0));
        let mut log = open(&path, reopen.clone()).unwrap();
        let peer = Ipv4Addr::new(10, 99, 0, 2);
        // The whole directory goes: the reopen fails, lines go on to the
        // old file.
        std::fs::rename(&dir, &moved).unwrap();
        reopen.fetch_add(1, Ordering::Relaxed);
        log.record(peer, ("GET", "/during", "HTTP/1.1"), 200, 1);
        log.flush();
        assert!(std::fs::read_to_string(moved.join("access.log"))
            .unwrap()
            .contains("/during"));
        // Once the directory is back, the next write reopens.
        std::fs::create_dir(&dir).unwrap();
        log.record(peer, ("GET", "/after", "HTTP/1.1"), 200, 1);
        log.flush();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(new.contains("/after") && !new.contains("/during"));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&moved);
    }

    #[test]
    fn lines_are_escaped_and_land_in_the_file() {
        let path = std::env::temp_dir().join(format!("bypass-access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut log = open(&path, Arc::default()).unwrap();
        log.record(
            Ipv4Addr::new(10, 99, 0, 2),
            ("GET", "/", "HTTP/1.1"),
            200,
            1234,
        );
        log.record(
            Ipv4Addr::new(10, 99, 0, 2),
            ("GET", "/\"x\\\n", "HTTP/1.0"),
            404,
            0,
        );
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("10.99.0.2 - - ["), "{text}");
        assert!(
            lines[0].ends_with("] \"GET / HTTP/1.1\" 200 1234"),
            "{text}"
        );
        assert!(
            lines[1].ends_with("\"GET /\\x22x\\x5C\\x0A HTTP/1.0\" 404 0"),
            "{text}"
        );
        let _ = std::fs::remove_file(&path);
    }
}
