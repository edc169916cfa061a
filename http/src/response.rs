//! What to answer, and the answer's head: routing a parsed request through
//! the site (RFC 9110 §9.3.1 GET, §9.3.2 HEAD), conditional requests
//! (§13: If-None-Match, If-Modified-Since → 304), single byte ranges (§14:
//! 206, 416), pre-compressed representations (§12.5.3 Accept-Encoding,
//! with Vary), redirects for directories, and short error bodies. Pure
//! functions: no I/O, so every status is unit-tested here.
//!
//! Heads are written into a buffer the caller reuses; bodies are shared
//! slices of the cached site, so a cached file is answered without
//! allocating.

use std::{io::Write, ops::Range, sync::Arc, time::SystemTime};

use crate::{
    request::{FieldLines, Method, Rejection, Request, Version},
    site::{Entry, Lookup, Site, Streamed},
};

/// The server's name in `Server:`.
pub const SERVER: &str = "bypass";

/// The reason phrase for the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        308 => "Permanent Redirect",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// The `Date:` value, formatted once per second (RFC 9110 §6.6.1).
pub struct DateCache {
    second: u64,
    text: String,
}

impl DateCache {
    pub fn new() -> Self {
        DateCache {
            second: u64::MAX,
            text: String::new(),
        }
    }

    pub fn get(&mut self) -> &str {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        &self.text
    }
}

/// A response's body: nothing, a short fixed text, a range of a cached
/// file, or a range of a file streamed from disk.
#[derive(Clone)]
pub enum Body {
    Empty,
    Static(&'static [u8]),
    Shared(Arc<[u8]>, Range<usize>),
    File(Arc<Streamed>, Range<u64>),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Static(b) => b.len() as u64,
            Body::Shared(_, r) => r.len() as u64,
            Body::File(_, r) => r.end - r.start,
        }
    }

    /// The bytes from `at` on, for bodies in memory (`None` for a file).
    pub fn from(&self, at: u64) -> Option<&[u8]> {
        let at = usize::try_from(at).unwrap_or(usize::MAX);
        match self {
            Body::Empty => Some(&[]),
            Body::Static(b) => Some(&b[at.min(b.len())..]),
            Body::Shared(data, r) => Some(&data[r.start.saturating_add(at).min(r.end)..r.end]),
            Body::File(..) => None,
        }
    }
}

/// A response head to write, and its body.
pub struct Response<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    /// A multipart/byteranges body's boundary: the Content-Type is then
    /// `multipart/byteranges; boundary=...` (RFC 9110 §14.6).
    pub multipart_boundary: Option<String>,
    /// `Content-Length` (also sent for HEAD, as GET would).
    pub length: Option<u64>,
    pub etag: Option<&'a str>,
    /// An ETag with an encoding suffix, built in the caller's scratch.
    pub etag_suffix: Option<&'static str>,
    pub last_modified: Option<&'a str>,
    /// A redirect's target (allocated: redirects are rare).
    pub location: Option<String>,
    pub content_range: Option<(u64, u64, u64)>,
    /// `Content-Range: bytes */len` for a 416.
    pub unsatisfied_range: Option<u64>,
    pub content_encoding: Option<&'static str>,
    pub vary_encoding: bool,
    pub allow: bool,
    pub accept_ranges: bool,
    pub retry_after: bool,
    pub close: bool,
    /// `Connection: keep-alive`, which an HTTP/1.0 client needs to hear to
    /// keep the connection (RFC 9112 §9.3 and its Appendix C.2.2).
    pub keep_alive: bool,
    /// `Strict-Transport-Security: max-age=N` (RFC 6797), HTTPS only.
    pub hsts: Option<u64>,
    /// `Cache-Control` from the site's rules.
    pub cache_control: Option<&'a str>,
    /// Fields the site's rules add to every response.
    pub extra_headers: &'a [(String, String)],
    pub body: Body,
    /// Whether the body is sent (not for HEAD, 304).
    pub send_body: bool,
}

impl<'a> Response<'a> {
    fn new(status: u16) -> Self {
        Response {
            status,
            content_type: None,
            multipart_boundary: None,
            length: None,
            etag: None,
            etag_suffix: None,
            last_modified: None,
            location: None,
            hsts: None,
            cache_control: None,
            extra_headers: &[],
            content_range: None,
            unsatisfied_range: None,
            content_encoding: None,
            vary_encoding: false,
            allow: false,
            accept_ranges: false,
            retry_after: false,
            close: false,
            keep_alive: false,
            body: Body::Empty,
            send_body: true,
        }
    }

    /// A short plain-text answer (errors, redirects): the status line as
    /// its body.
    pub fn short(status: u16) -> Self {
        let body: &'static [u8] = match status {
            301 => b"301 Moved Permanently\n",
            308 => b"308 Permanent Redirect\n",
            400 => b"400 Bad Request\n",
            404 => b"404 Not Found\n",
            405 => b"405 Method Not Allowed\n",
            408 => b"408 Request Timeout\n",
            413 => b"413 Content Too Large\n",
            414 => b"414 URI Too Long\n",
            412 => b"412 Precondition Failed\n",
            416 => b"416 Range Not Satisfiable\n",
            417 => b"417 Expectation Failed\n",
            431 => b"431 Request Header Fields Too Large\n",
            501 => b"501 Not Implemented\n",
            503 => b"503 Service Unavailable\n",
            505 => b"505 HTTP Version Not Supported\n",
            _ => b"500 Internal Server Error\n",
        };
        Response {
            content_type: Some("text/plain; charset=utf-8"),
            length: Some(body.len() as u64),
            body: Body::Static(body),
            ..Response::new(status)
        }
    }

    /// The answer to a request the parser rejected; the connection closes.
    pub fn rejected(r: Rejection) -> Self {
        Response {
            close: true,
            ..Response::short(r.status())
        }
    }

    /// Writes the status line and fields (RFC 9112 §4, §5) into `out`.
    pub fn write_head(&self, date: &str, out: &mut Vec<u8>) {
        out.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nServer: {SERVER}\r\nDate: {date}\r\n",
            self.status,
            reason(self.status)
        );
        if let Some(b) = &self.multipart_boundary {
            let _ = write!(out, "Content-Type: multipart/byteranges; boundary={b}\r\n");
        } else if let Some(t) = self.content_type {
            let _ = write!(out, "Content-Type: {t}\r\n");
        }
        if let Some(n) = self.length {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        if let Some(e) = self.etag {
            match self.etag_suffix {
                // "abc" + -gz → "abc-gz": a distinct strong validator per
                // representation (RFC 9110 §8.8.3.3).
                Some(s) => {
                    let inner = e.trim_end_matches('"');
                    let _ = write!(out, "ETag: {inner}{s}\"\r\n");
                }
                None => {
                    let _ = write!(out, "ETag: {e}\r\n");
                }
            }
        }
        if let Some(lm) = self.last_modified {
            let _ = write!(out, "Last-Modified: {lm}\r\n");
        }
        if let Some(l) = &self.location {
            let _ = write!(out, "Location: {l}\r\n");
        }
        if let Some(age) = self.hsts {
            let _ = write!(out, "Strict-Transport-Security: max-age={age}\r\n");
        }
        if let Some(cc) = self.cache_control {
            let _ = write!(out, "Cache-Control: {cc}\r\n");
        }
        for (name, value) in self.extra_headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        if let Some((first, last, total)) = self.content_range {
            let _ = write!(out, "Content-Range: bytes {first}-{last}/{total}\r\n");
        }
        if let Some(total) = self.unsatisfied_range {
            let _ = write!(out, "Content-Range: bytes */{total}\r\n");
        }
        if let Some(e) = self.content_encoding {
            let _ = write!(out, "Content-Encoding: {e}\r\n");
        }
        if self.vary_encoding {
            out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
        }
        if self.allow {
            out.extend_from_slice(b"Allow: GET, HEAD\r\n");
        }
        if self.accept_ranges {
            out.extend_from_slice(b"Accept-Ranges: bytes\r\n");
        }
        if self.retry_after {
            out.extend_from_slice(b"Retry-After: 1\r\n");
        }
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if self.keep_alive {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The answer to a parsed request; dot-files only when `dotfiles`
/// (`--serve-dotfiles`).
pub fn respond_with<'a>(req: &Request<'_>, site: &'a Site, dotfiles: bool) -> Response<'a> {
    finish(req, route(req, site, dotfiles))
}

/// A generated text answer (the metrics page).
pub fn text(status: u16, content_type: &'static str, body: String) -> Response<'static> {
    let body: Arc<[u8]> = body.into_bytes().into();
    Response {
        content_type: Some(content_type),
        length: Some(body.len() as u64),
        body: Body::Shared(body.clone(), 0..body.len()),
        ..Response::new(status)
    }
}

/// What every answer to `req` gets: no body for HEAD, and the connection
/// handling its version and `Connection` field ask for.
pub fn finish<'a>(req: &Request<'_>, mut r: Response<'a>) -> Response<'a> {
    if req.method == Method::Head {
        r.send_body = false;
    }
    if !req.keep_alive {
        r.close = true;
    } else if req.version == Version::Http10 {
        r.keep_alive = true;
    }
    // HTTP/1.0 clients get 1.1 responses too (RFC 9110 §6.2).
    r
}

/// `error_page CODE /page`: an error answer (4xx, 5xx) whose status has a
/// page in `rules` gets that page of the site as its body, status kept
/// (the page must be a cached file; a missing one leaves the short body).
pub fn with_error_page<'a>(
    r: &mut Response<'a>,
    req: &Request<'_>,
    site: &'a Site,
    rules: &crate::rules::SiteRules,
) {
    if r.status < 400 || !matches!(r.body, Body::Static(_) | Body::Empty) {
        return;
    }
    let Some(page) = rules.error_page(r.status) else {
        return;
    };
    let Lookup::File(entry) = site.lookup_with(page, true) else {
        return;
    };
    if entry.disk.is_some() {
        return;
    }
    r.content_type = Some(entry.content_type);
    r.length = Some(entry.body.len() as u64);
    r.body = Body::Shared(entry.body.clone(), 0..entry.body.len());
    r.send_body = req.method != Method::Head;
}

fn route<'a>(req: &Request<'_>, site: &'a Site, dotfiles: bool) -> Response<'a> {
    if req.method == Method::NotAllowed {
        return Response {
            allow: true,
            ..Response::short(405)
        };
    }
    match site.lookup_with(req.target, dotfiles) {
        Lookup::File(entry) => file(req, entry),
        Lookup::Redirect(location) => Response {
            location: Some(location),
            ..Response::short(301)
        },
        Lookup::NotFound => Response::short(404),
        // A target that tries to leave the root or smuggle bytes: answered
        // and closed, as a malformed request is (nginx does the same).
        Lookup::BadRequest => Response {
            close: true,
            ..Response::short(400)
        },
    }
}

/// Which stored representation `Accept-Encoding` allows (RFC 9110
/// §12.5.3): brotli, then gzip, then the file itself.
fn pick_encoding<'e>(
    accept: &FieldLines<'_>,
    entry: &'e Entry,
) -> Option<(&'static str, &'e Arc<[u8]>)> {
    if !accept.is_present() {
        return None;
    }
    // Each listed coding with its weight; `*` stands only for codings not
    // listed by name.
    let weight = |coding: &str| -> Option<f32> {
        accept.items().find_map(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            name.eq_ignore_ascii_case(coding).then(|| {
                parts
                    .find_map(|p| {
                        let (k, v) = p.trim().split_once('=')?;
                        k.trim().eq_ignore_ascii_case("q").then_some(v)
                    })
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0)
            })
        })
    };
    let allows = |coding: &str| match weight(coding) {
        Some(q) => q > 0.0,
        None => weight("*").is_some_and(|q| q > 0.0),
    };
    if let Some(b) = entry.brotli.as_ref().filter(|_| allows("br")) {
        return Some(("br", b));
    }
    if let Some(g) = entry.gzip.as_ref().filter(|_| allows("gzip")) {
        return Some(("gzip", g));
    }
    None
}

/// RFC 9110 §13.1.2: weak comparison of If-None-Match's list with our tag.
fn none_match(header: &FieldLines<'_>, etag: &str, suffix: Option<&str>) -> bool {
    let ours = etag.trim_start_matches("W/").trim_matches('"');
    header.items().any(|t| {
        if t == "*" {
            return true;
        }
        let t = t.trim_start_matches("W/").trim_matches('"');
        match suffix {
            Some(s) => t.strip_suffix(s) == Some(ours),
            None => t == ours,
        }
    })
}

/// RFC 9110 §13.1.1: If-Match holds when "*" or one of its entity tags
/// matches ours by the strong comparison (a weak tag never matches).
fn strong_match(header: &FieldLines<'_>, etag: &str, suffix: Option<&str>) -> bool {
    let ours = etag.trim_matches('"');
    header.items().any(|t| {
        if t == "*" {
            return true;
        }
        if t.starts_with("W/") {
            return false;
        }
        let t = t.trim_matches('"');
        match suffix {
            Some(s) => t.strip_suffix(s) == Some(ours),
            None => t == ours,
        }
    })
}

/// RFC 9110 §13.1.4: modified after the given date (an invalid date is
/// ignored, as the field then is).
fn modified_since(header: &str, last_modified: SystemTime) -> bool {
    httpdate::parse_http_date(header.trim()).is_ok() && !not_modified_since(header, last_modified)
}

/// RFC 9110 §13.1.3: not modified since the given date (second precision).
fn not_modified_since(header: &str, last_modified: SystemTime) -> bool {
    let Ok(since) = httpdate::parse_http_date(header.trim()) else {
        return false;
    };
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    secs(last_modified) <= secs(since)
}

/// Ranges one request may ask for: more (after merging overlaps) and the
/// header is ignored and the whole representation sent, as nginx's
/// `max_ranges` does; many small ranges are a way to make a server do much
/// work for little (RFC 9110 §17.15).
const MAX_RANGES: usize = 16;

/// The `bytes=` ranges of a Range field (RFC 9110 §14.1.2; the unit is
/// case-insensitive) against a length, sorted and with overlapping or
/// adjacent ones merged (§14.2 allows it, and it keeps a multipart answer
/// no larger than the representation): `Some(Ok(ranges))` to serve,
/// `Some(Err(()))` when none is satisfiable (416), `None` to ignore the
/// field (malformed, another unit, or too many ranges).
fn byte_ranges(header: &str, len: u64) -> Option<Result<Vec<Range<u64>>, ()>> {
    let header = header.trim();
    let unit = header.get(..6)?;
    if !unit.eq_ignore_ascii_case("bytes=") {
        return None;
    }
    let mut ranges = Vec::new();
    for spec in header[6..].split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            continue; // empty list elements are allowed (§5.6.1)
        }
        // A range unsatisfiable on its own is dropped.
        if let Some(r) = one_range(spec, len)? {
            ranges.push(r);
        }
        if ranges.len() > 4 * MAX_RANGES {
            return None;
        }
    }
    if ranges.is_empty() {
        return Some(Err(()));
    }
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    if merged.len() > MAX_RANGES {
        return None;
    }
    Some(Ok(merged))
}

/// One range-spec: `None` if malformed, `Some(None)` if unsatisfiable.
fn one_range(spec: &str, len: u64) -> Option<Option<Range<u64>>> {
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if first.is_empty() {
        // The last N bytes.
        if !digits(last) {
            return None;
        }
        let n: u64 = last.parse().unwrap_or(u64::MAX);
        if n == 0 || len == 0 {
            return Some(None);
        }
        return Some(Some(len - n.min(len)..len));
    }
    if !digits(first) || !(last.is_empty() || digits(last)) {
        return None;
    }
    let start: u64 = first.parse().unwrap_or(u64::MAX);
    let end = if last.is_empty() {
        len
    } else {
        let l: u64 = last.parse().unwrap_or(u64::MAX);
        if l < start {
            return None;
        }
        l.saturating_add(1).min(len)
    };
    if start >= len {
        return Some(None);
    }
    Some(Some(start..end))
}

/// One range as before: the single range of a field that asks for one.
#[cfg(test)]
fn byte_range(header: &str, len: u64) -> Option<Result<Range<u64>, ()>> {
    match byte_ranges(header, len)? {
        Ok(v) if v.len() == 1 => Some(Ok(v[0].clone())),
        Ok(_) => None,
        Err(()) => Some(Err(())),
    }
}

/// A boundary that cannot occur in the parts: derived from the entity tag
/// (hex digits) with a fixed prefix; the parts' own headers never hold it,
/// and a body containing it by chance would only confuse a client that
/// asked for several ranges of exactly such a file.
fn multipart_boundary(etag: &str) -> String {
    let tag: String = etag.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("bypass-byteranges-{tag}")
}

/// The multipart/byteranges body (RFC 9110 §14.6) for `ranges` of `data`:
/// each part with its Content-Type and Content-Range, between boundaries.
fn multipart(data: &[u8], ranges: &[Range<u64>], content_type: &str, boundary: &str) -> Vec<u8> {
    let len = data.len();
    let total: u64 = ranges.iter().map(|r| r.end - r.start + 128).sum();
    let mut out = Vec::with_capacity(total as usize + 64);
    for r in ranges {
        let _ = write!(
            out,
            "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{len}\r\n\r\n",
            r.start,
            r.end - 1
        );
        out.extend_from_slice(&data[r.start as usize..r.end as usize]);
    }
    let _ = write!(out, "\r\n--{boundary}--\r\n");
    out
}

fn file<'a>(req: &Request<'_>, entry: &'a Entry) -> Response<'a> {
    let has_variants = entry.gzip.is_some() || entry.brotli.is_some();
    let (encoding, data) = match pick_encoding(&req.accept_encoding, entry) {
        Some((coding, data)) => (Some(coding), data),
        None => (None, &entry.body),
    };
    let suffix = encoding.map(|c| if c == "br" { "-br" } else { "-gz" });
    let base = Response {
        content_type: Some(entry.content_type),
        etag: Some(&entry.etag),
        etag_suffix: suffix,
        last_modified: Some(&entry.last_modified_http),
        content_encoding: encoding,
        vary_encoding: has_variants,
        accept_ranges: true,
        ..Response::new(200)
    };
    // Preconditions in RFC 9110 §13.2.2's order. Steps 1-2: the client's
    // version must still be the current one (If-Match, else
    // If-Unmodified-Since), or 412.
    let failed = if req.if_match.is_present() {
        !strong_match(&req.if_match, &entry.etag, suffix)
    } else {
        req.if_unmodified_since
            .is_some_and(|ius| modified_since(ius, entry.last_modified))
    };
    if failed {
        return Response {
            vary_encoding: has_variants,
            ..Response::short(412)
        };
    }
    // Steps 3-4: If-None-Match wins over If-Modified-Since; both mean 304
    // for GET and HEAD (the only methods served).
    let unchanged = if req.if_none_match.is_present() {
        none_match(&req.if_none_match, &entry.etag, suffix)
    } else {
        req.if_modified_since
            .is_some_and(|ims| not_modified_since(ims, entry.last_modified))
    };
    if unchanged {
        // §15.4.5: what a 200 would carry of Date, ETag and Vary (and
        // Cache-Control, Expires, Content-Location); no other metadata.
        return Response {
            etag: Some(&entry.etag),
            etag_suffix: suffix,
            vary_encoding: has_variants,
            send_body: false,
            ..Response::new(304)
        };
    }
    // The chosen representation: a compressed sibling, the cached file, or
    // the file on disk.
    let (len, whole) = match (encoding, &entry.disk) {
        (None, Some(disk)) => (disk.len, Body::File(disk.clone(), 0..disk.len)),
        _ => (data.len() as u64, Body::Shared(data.clone(), 0..data.len())),
    };
    // If-Range (§13.1.5): the range applies only to the representation the
    // client has: exactly our strong ETag, or exactly our date.
    let range_applies = req.if_range.is_none_or(|ir| {
        let ir = ir.trim();
        if ir.starts_with('"') {
            let ours = entry.etag.trim_end_matches('"');
            match suffix {
                Some(sfx) => ir.strip_suffix('"').and_then(|t| t.strip_suffix(sfx)) == Some(ours),
                None => ir == entry.etag,
            }
        } else {
            ir == entry.last_modified_http
        }
    });
    // Range is for GET only (§14.2).
    let ranges = req
        .range
        .filter(|_| range_applies && req.method == Method::Get)
        .and_then(|h| byte_ranges(h, len));
    match ranges {
        Some(Ok(ranges)) if ranges.len() == 1 => {
            let r = ranges[0].clone();
            return Response {
                status: 206,
                length: Some(r.end - r.start),
                content_range: Some((r.start, r.end - 1, len)),
                body: match whole {
                    Body::File(file, _) => Body::File(file, r),
                    _ => Body::Shared(data.clone(), r.start as usize..r.end as usize),
                },
                ..base
            };
        }
        // Several ranges of a cached representation: one multipart body
        // (§14.6). A streamed file gets the whole (§14.2 lets us ignore
        // the field), rather than a body assembled in memory.
        Some(Ok(ranges)) if !matches!(whole, Body::File(..)) => {
            let boundary = multipart_boundary(&entry.etag);
            let body: Arc<[u8]> = multipart(data, &ranges, entry.content_type, &boundary).into();
            return Response {
                status: 206,
                length: Some(body.len() as u64),
                multipart_boundary: Some(boundary),
                body: Body::Shared(body.clone(), 0..body.len()),
                ..base
            };
        }
        Some(Ok(_)) | None => {}
        Some(Err(())) => {
            return Response {
                unsatisfied_range: Some(len),
                vary_encoding: has_variants,
                ..Response::short(416)
            };
        }
    }
    Response {
        length: Some(len),
        body: whole,
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), Some(Ok(0..10)));
        assert_eq!(byte_range("bytes=90-", 100), Some(Ok(90..100)));
        assert_eq!(byte_range("bytes=-10", 100), Some(Ok(90..100)));
        assert_eq!(byte_range("bytes=-1000", 100), Some(Ok(0..100)));
        assert_eq!(byte_range("bytes=50-1000", 100), Some(Ok(50..100)));
        assert_eq!(byte_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(byte_range("bytes=-0", 100), Some(Err(())));
        assert_eq!(byte_range("bytes=9-0", 100), None);
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
        assert_eq!(byte_range("bytes=a-b", 100), None);
    }

    #[test]
    fn etag_matching_is_weak_and_knows_encodings() {
        assert!(none_match(&FieldLines::of(&["\"abc\""]), "\"abc\"", None));
        assert!(none_match(
            &FieldLines::of(&["W/\"abc\", \"x\""]),
            "\"abc\"",
            None
        ));
        assert!(none_match(&FieldLines::of(&["*"]), "\"abc\"", None));
        assert!(!none_match(&FieldLines::of(&["\"abd\""]), "\"abc\"", None));
        assert!(none_match(
            &FieldLines::of(&["\"abc-gz\""]),
            "\"abc\"",
            Some("-gz")
        ));
        assert!(!none_match(
            &FieldLines::of(&["\"abc\""]),
            "\"abc\"",
            Some("-gz")
        ));
        assert!(
            none_match(&FieldLines::of(&["\"x\"", "\"abc\""]), "\"abc\"", None),
            "a later line counts too"
        );
    }

    #[test]
    fn modified_since_compares_seconds() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let same = httpdate::fmt_http_date(t);
        assert!(not_modified_since(
            &same,
            t + std::time::Duration::from_millis(300)
        ));
        let earlier = httpdate::fmt_http_date(t - std::time::Duration::from_secs(1));
        assert!(!not_modified_since(&earlier, t));
        assert!(!not_modified_since("yesterday", t));
    }

    #[test]
    fn heads_are_well_formed() {
        let r = Response {
            allow: true,
            close: true,
            ..Response::short(405)
        };
        let mut out = Vec::new();
        r.write_head("Thu, 01 Jan 1970 00:00:00 GMT", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(text.contains("\r\nContent-Length: 23\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        // Every line ends in CRLF, and there is no bare LF.
        assert_eq!(text.matches('\n').count(), text.matches("\r\n").count());
    }

    /// A 100-byte text file, "0123456789" ten times, modified at 1.7e9 s.
    fn page() -> Entry {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        Entry {
            body: Arc::from("0123456789".repeat(10).as_bytes()),
            content_type: "text/plain; charset=utf-8",
            etag: "\"64-abc\"".into(),
            last_modified: t,
            last_modified_http: httpdate::fmt_http_date(t),
            disk: None,
            gzip: None,
            brotli: None,
            stamp: 0,
        }
    }

    /// The response to a GET with `fields` (each "Name: value").
    fn get_with(fields: &[&str]) -> (u16, String, Vec<u8>) {
        let mut head = String::from("GET /page.txt HTTP/1.1\r\nHost: x\r\n");
        for f in fields {
            head.push_str(f);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let limits = crate::request::Limits {
            request_line: 8192,
            header_count: 100,
            head_bytes: 16384,
            body_bytes: 0,
        };
        let crate::request::Parsed::Complete(req, _) =
            crate::request::parse(head.as_bytes(), &limits)
        else {
            panic!("{head}");
        };
        let entry = page();
        let r = file(&req, &entry);
        let mut out = Vec::new();
        r.write_head("Thu, 01 Jan 1970 00:00:00 GMT", &mut out);
        let body = r.body.from(0).map(<[u8]>::to_vec).unwrap_or_default();
        (r.status, String::from_utf8(out).unwrap(), body)
    }

    #[test]
    fn preconditions_in_rfc9110_order() {
        // §13.1.1 If-Match: strong comparison; "*" matches any current file.
        assert_eq!(get_with(&["If-Match: \"nope\""]).0, 412);
        assert_eq!(get_with(&["If-Match: \"x\", \"64-abc\""]).0, 200);
        assert_eq!(get_with(&["If-Match: *"]).0, 200);
        assert_eq!(
            get_with(&["If-Match: W/\"64-abc\""]).0,
            412,
            "weak never matches"
        );
        // §13.1.4 If-Unmodified-Since.
        assert_eq!(
            get_with(&["If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT"]).0,
            412
        );
        assert_eq!(
            get_with(&["If-Unmodified-Since: Fri, 01 Jan 2100 00:00:00 GMT"]).0,
            200
        );
        assert_eq!(
            get_with(&["If-Unmodified-Since: not a date"]).0,
            200,
            "ignored"
        );
        // §13.2.2 step 1 before 2: If-Match decides, If-Unmodified-Since
        // is then not looked at.
        assert_eq!(
            get_with(&[
                "If-Match: *",
                "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT"
            ])
            .0,
            200
        );
        // Steps 1-2 before 3: a failed If-Match is 412 even when
        // If-None-Match would say 304.
        assert_eq!(
            get_with(&["If-Match: \"nope\"", "If-None-Match: \"64-abc\""]).0,
            412
        );
        // §15.4.5: a 304 carries ETag (and Date), not the representation's
        // other metadata.
        let (status, head, body) = get_with(&["If-None-Match: \"64-abc\""]);
        assert_eq!(status, 304);
        assert!(head.contains("\r\nETag: \"64-abc\"\r\n"), "{head}");
        for absent in [
            "Content-Type",
            "Content-Length",
            "Last-Modified",
            "Accept-Ranges",
            "Content-Encoding",
        ] {
            assert!(!head.contains(absent), "{absent} in {head}");
        }
        assert!(body.is_empty());
    }

    #[test]
    fn ranges_single_multiple_and_abusive() {
        // The unit is case-insensitive (§14.1).
        let (status, head, body) = get_with(&["Range: Bytes=0-9"]);
        assert_eq!((status, body.as_slice()), (206, &b"0123456789"[..]));
        assert!(head.contains("Content-Range: bytes 0-9/100"));
        // Two ranges: multipart/byteranges (§14.6), in order, each part
        // with its type and range.
        let (status, head, body) = get_with(&["Range: bytes=20-21, 0-1"]);
        assert_eq!(status, 206);
        let boundary = head
            .split("boundary=")
            .nth(1)
            .and_then(|b| b.split("\r\n").next())
            .expect("a multipart head")
            .to_owned();
        let text = String::from_utf8(body).unwrap();
        let expected = format!(
            "\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-1/100\r\n\r\n01\
             \r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 20-21/100\r\n\r\n01\
             \r\n--{boundary}--\r\n"
        );
        assert_eq!(text, expected);
        assert!(head.contains(&format!("Content-Length: {}\r\n", expected.len())));
        // Overlapping and adjacent ranges are merged: one part.
        let (status, head, body) = get_with(&["Range: bytes=0-5,3-8,9-9"]);
        assert_eq!((status, body.len()), (206, 10));
        assert!(head.contains("Content-Range: bytes 0-9/100"));
        // An unsatisfiable range among satisfiable ones is dropped.
        let (status, _, body) = get_with(&["Range: bytes=500-600,0-1"]);
        assert_eq!((status, body.as_slice()), (206, &b"01"[..]));
        // Too many ranges: the whole file, as nginx's max_ranges.
        let many: Vec<String> = (0..17).map(|i| format!("{}-{}", i * 5, i * 5)).collect();
        let field = format!("Range: bytes={}", many.join(","));
        assert_eq!(get_with(&[&field]).0, 200);
        // None satisfiable: 416.
        assert_eq!(get_with(&["Range: bytes=100-200"]).0, 416);
    }

    #[test]
    fn encodings_by_preference_and_q() {
        let entry = Entry {
            body: Arc::from(&b"plain"[..]),
            content_type: "text/plain; charset=utf-8",
            etag: "\"5-1\"".into(),
            last_modified: SystemTime::UNIX_EPOCH,
            last_modified_http: httpdate::fmt_http_date(SystemTime::UNIX_EPOCH),
            disk: None,
            gzip: Some(Arc::from(&b"gz"[..])),
            brotli: Some(Arc::from(&b"br"[..])),
            stamp: 0,
        };
        assert_eq!(
            pick_encoding(&FieldLines::of(&["gzip, br"]), &entry).map(|e| e.0),
            Some("br")
        );
        assert_eq!(
            pick_encoding(&FieldLines::of(&["gzip"]), &entry).map(|e| e.0),
            Some("gzip")
        );
        assert_eq!(
            pick_encoding(&FieldLines::of(&["br;q=0, gzip"]), &entry).map(|e| e.0),
            Some("gzip")
        );
        assert_eq!(
            pick_encoding(&FieldLines::of(&["identity"]), &entry).map(|e| e.0),
            None
        );
        assert_eq!(
            pick_encoding(&FieldLines::of(&["gzip;q=0, br;Q=0, *"]), &entry).map(|e| e.0),
            None
        );
        assert_eq!(
            pick_encoding(&FieldLines::of(&["br;q=0, *"]), &entry).map(|e| e.0),
            Some("gzip")
        );
        assert_eq!(
            pick_encoding(&FieldLines::of(&["*"]), &entry).map(|e| e.0),
            Some("br")
        );
        assert_eq!(
            pick_encoding(&FieldLines::of(&[]), &entry).map(|e| e.0),
            None
        );
        assert_eq!(
            pick_encoding(&FieldLines::of(&["br;q=0", "gzip"]), &entry).map(|e| e.0),
            Some("gzip"),
            "a list split over lines is one list"
        );
    }
}
