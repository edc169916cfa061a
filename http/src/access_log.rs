//! The access log, in Common Log Format (the format of NCSA httpd, Apache
//! and nginx's `common`):
//!
//! `10.99.0.2 - - [27/Nov/2026:13:55:36 +0000] "GET / HTTP/1.1" 200 1234`
//!
//! or `combined` (Apache's and nginx's: common, then the quoted Referer and
//! User-Agent), or one JSON object per line (`json`: time in RFC 3339,
//! the same fields, strings JSON-escaped) for log pipelines.
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

/// The line format (`--access-log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Common,
    Combined,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "common" => Ok(LogFormat::Common),
            "combined" => Ok(LogFormat::Combined),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("{s:?}: the format is common, combined or json")),
        }
    }
}

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
    format: LogFormat,
    /// The RFC 3339 time for JSON lines, reformatted once a second.
    iso: String,
}

/// Opens the log for appending (created if missing), for one core; it is
/// opened again by name whenever `reopen` changes.
pub fn open(path: &Path, reopen: Arc<AtomicU64>, format: LogFormat) -> io::Result<AccessLog> {
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
        format,
        iso: String::new(),
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
        self.record_with(peer, request_line, status, bytes, None, None);
    }

    /// [`AccessLog::record`] with the request's Referer and User-Agent, for
    /// the combined and JSON formats.
    pub fn record_with(
        &mut self,
        peer: Ipv4Addr,
        request_line: (&str, &str, &str),
        status: u16,
        bytes: u64,
        referer: Option<&str>,
        user_agent: Option<&str>,
    ) {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.stamp_second {
            self.stamp_second = second;
            self.stamp = clf_time(second);
            self.iso = iso_time(second);
        }
        let (method, target, version) = request_line;
        if self.format == LogFormat::Json {
            let _ = write!(
                self.buf,
                "{{\"time\":\"{}\",\"remote\":\"{peer}\"",
                self.iso
            );
            for (key, value) in [
                ("method", Some(method)),
                ("target", Some(target)),
                ("version", Some(version)),
            ] {
                let _ = write!(self.buf, ",\"{key}\":");
                json_string(&mut self.buf, value.filter(|v| !v.is_empty() && *v != "-"));
            }
            let _ = write!(
                self.buf,
                ",\"status\":{status},\"bytes\":{bytes},\"referer\":"
            );
            json_string(&mut self.buf, referer);
            self.buf.extend_from_slice(b",\"user_agent\":");
            json_string(&mut self.buf, user_agent);
            self.buf.extend_from_slice(b"}\n");
        } else {
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
            let _ = write!(self.buf, "\" {status} {bytes}");
            if self.format == LogFormat::Combined {
                for field in [referer, user_agent] {
                    self.buf.extend_from_slice(b" \"");
                    escape_into(&mut self.buf, field.unwrap_or("-"));
                    self.buf.push(b'"');
                }
            }
            self.buf.push(b'\n');
        }
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

/// A JSON string (RFC 8259 §7), or `null`.
fn json_string(out: &mut Vec<u8>, s: Option<&str>) {
    let Some(s) = s else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// `yyyy-mm-ddThh:mm:ssZ` (RFC 3339) for a Unix time.
fn iso_time(unix: u64) -> String {
    let (year, month, day) = civil(unix);
    let secs = unix % 86_400;
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `dd/Mon/yyyy:hh:mm:ss +0000` for a Unix time, in UTC.
fn clf_time(unix: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day) = civil(unix);
    let secs = unix % 86_400;
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The civil date (year, month 1-12, day 1-31) of a Unix time, in UTC.
fn civil(unix: u64) -> (i64, i64, i64) {
    let days = (unix / 86_400) as i64;
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
    (year, month, day)
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
        let mut log = open(&path, reopen.clone(), LogFormat::Common).unwrap();
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
        let mut log = open(&path, reopen.clone(), LogFormat::Common).unwrap();
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
    fn combined_and_json_lines() {
        let path =
            std::env::temp_dir().join(format!("bypass-access-fmt-{}.log", std::process::id()));
        let peer = Ipv4Addr::new(10, 99, 0, 2);
        let _ = std::fs::remove_file(&path);
        let mut log = open(&path, Arc::default(), LogFormat::Combined).unwrap();
        log.record_with(
            peer,
            ("GET", "/a", "HTTP/1.1"),
            200,
            5,
            Some("https://x/\"y\""),
            Some("curl/8"),
        );
        log.record_with(peer, ("GET", "/b", "HTTP/1.1"), 404, 0, None, None);
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with("\"GET /a HTTP/1.1\" 200 5 \"https://x/\\x22y\\x22\" \"curl/8\""),
            "{text}"
        );
        assert!(lines[1].ends_with("\" 404 0 \"-\" \"-\""), "{text}");
        let _ = std::fs::remove_file(&path);
        let mut log = open(&path, Arc::default(), LogFormat::Json).unwrap();
        log.record_with(
            peer,
            ("GET", "/\"q\u{1}", "HTTP/1.1"),
            200,
            5,
            None,
            Some("é"),
        );
        log.record(peer, ("-", "", ""), 408, 0);
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("{\"time\":\""), "{text}");
        assert!(
            lines[0].ends_with(
                "Z\",\"remote\":\"10.99.0.2\",\"method\":\"GET\",\"target\":\"/\\\"q\\u0001\",\"version\":\"HTTP/1.1\",\"status\":200,\"bytes\":5,\"referer\":null,\"user_agent\":\"é\"}"
            ),
            "{text}"
        );
        assert!(
            lines[1].ends_with("\"method\":null,\"target\":null,\"version\":null,\"status\":408,\"bytes\":0,\"referer\":null,\"user_agent\":null}"),
            "{text}"
        );
        assert_eq!(iso_time(971_186_136), "2000-10-10T13:55:36Z");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn lines_are_escaped_and_land_in_the_file() {
        let path = std::env::temp_dir().join(format!("bypass-access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut log = open(&path, Arc::default(), LogFormat::Common).unwrap();
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
