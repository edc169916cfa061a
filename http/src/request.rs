//! Incremental parsing and validation of HTTP/1.1 request heads (RFC 9112,
//! RFC 9110).
//!
//! The connection keeps its received bytes in a buffer and calls [`parse`]
//! whenever more arrive. `httparse` does the tokenizing; this module adds the
//! size limits, which apply to partial input too, and the strict framing
//! rules that stop request smuggling: bare CR or LF, duplicate or malformed
//! Content-Length, Transfer-Encoding, a missing or repeated Host. Nothing here
//! allocates; a [`Request`] borrows from the buffer.

/// How much of a request head the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target, version) → 414 beyond it. Default 8192.
    pub request_line: usize,
    /// Most header fields → 431 beyond. Default 100; values above
    /// [`MAX_HEADER_FIELDS`] act as that.
    pub header_count: usize,
    /// Longest head in all (request line + fields + CRLFs) → 431 beyond (or
    /// 414 if the request line alone is too long). Default 16384.
    pub head_bytes: usize,
    /// Largest body accepted (and discarded) on a request: a GET with
    /// Content-Length above it → 413. Default 65536.
    pub body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: 8192,
            header_count: 100,
            head_bytes: 16384,
            body_bytes: 65536,
        }
    }
}

/// The most header fields any [`Limits`] can allow: the parser's field array
/// lives on the stack.
pub const MAX_HEADER_FIELDS: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// A method we know but do not allow on static files (POST, PUT, DELETE,
    /// PATCH, OPTIONS, TRACE, CONNECT): 405 with Allow.
    NotAllowed,
}

impl Method {
    /// Methods are case-sensitive (RFC 9110 §9.1): "get" is unknown.
    fn from_token(token: &str) -> Option<Method> {
        match token {
            "GET" => Some(Method::Get),
            "HEAD" => Some(Method::Head),
            "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "TRACE" | "CONNECT" => {
                Some(Method::NotAllowed)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A request head, borrowing from the buffer.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: Method,
    /// The method token as sent (for logs).
    pub method_token: &'a str,
    /// The path and query to serve: origin-form as sent, the path part of an
    /// absolute-form target, "*" for OPTIONS, the authority for CONNECT.
    pub target: &'a str,
    pub version: Version,
    /// Whether the connection stays open after the response: HTTP/1.1 unless
    /// "Connection: close"; HTTP/1.0 only with "Connection: keep-alive"
    /// (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// The Host field, or the authority of an absolute-form target, which
    /// takes precedence (RFC 9112 §3.2.2). Checked to hold only URI authority
    /// characters (no '/', no '@'); may be empty.
    pub host: Option<&'a str>,
    /// Every If-None-Match line (a list field, RFC 9110 §13.1.2).
    pub if_none_match: FieldLines<'a>,
    pub if_modified_since: Option<&'a str>,
    /// Every If-Match line (a list field, RFC 9110 §13.1.1).
    pub if_match: FieldLines<'a>,
    pub if_unmodified_since: Option<&'a str>,
    /// `Expect: 100-continue` (RFC 9110 §10.1.1): the client waits for an
    /// interim 100 before sending its body.
    pub expect_continue: bool,
    pub range: Option<&'a str>,
    pub if_range: Option<&'a str>,
    /// Every Accept-Encoding line (a list field, RFC 9110 §12.5.3).
    pub accept_encoding: FieldLines<'a>,
    /// None also when the value is not UTF-8 (it is only logged).
    pub user_agent: Option<&'a str>,
    /// None also when the value is not UTF-8 (it is only logged).
    pub referer: Option<&'a str>,
    /// Body bytes that follow the head (from Content-Length; 0 without it).
    /// The server discards them.
    pub body_len: u64,
}

// A request is a few hundred bytes of borrowed slices, on the stack for one
// call; boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed<'a> {
    /// More bytes needed (and none of the limits is exceeded so far).
    Partial,
    /// A whole head: the request and the head's length in bytes, leading
    /// empty lines included (the body, if any, follows).
    Complete(Request<'a>, usize),
    /// Reject with this status code and close the connection afterwards.
    Reject(Rejection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    BadRequest,
    PayloadTooLarge,
    UriTooLong,
    HeadersTooLarge,
    NotImplemented,
    VersionNotSupported,
    /// An Expect other than 100-continue (RFC 9110 §10.1.1).
    ExpectationFailed,
}

impl Rejection {
    pub fn status(self) -> u16 {
        match self {
            Rejection::BadRequest => 400,
            Rejection::PayloadTooLarge => 413,
            Rejection::UriTooLong => 414,
            Rejection::HeadersTooLarge => 431,
            Rejection::NotImplemented => 501,
            Rejection::VersionNotSupported => 505,
            Rejection::ExpectationFailed => 417,
        }
    }
}

/// Parses the request head at the start of `buf`, which may be incomplete.
///
/// `Partial` promises that `buf` is shorter than `limits.head_bytes`, so a
/// buffer of that size always suffices.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parsed<'a> {
    match parse_head(buf, limits) {
        Ok(Some((request, len))) => Parsed::Complete(request, len),
        Ok(None) => Parsed::Partial,
        Err(rejection) => Parsed::Reject(rejection),
    }
}

fn parse_head<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(Request<'a>, usize)>, Rejection> {
    // A head that fits the limit lies within its first head_bytes bytes, so
    // no call looks further, however much a client has sent.
    let window = &buf[..buf.len().min(limits.head_bytes)];
    let request_line = scan_lines(window)?;
    if request_line.bytes.len() > limits.request_line {
        return Err(Rejection::UriTooLong);
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADER_FIELDS];
    let field_count = limits.header_count.min(MAX_HEADER_FIELDS);
    let mut head = httparse::Request::new(&mut fields[..field_count]);
    match head.parse(window) {
        Ok(httparse::Status::Complete(len)) => Ok(Some((interpret(&head, limits)?, len))),
        // The head needs at least one byte more than the limit allows.
        Ok(httparse::Status::Partial) if window.len() == limits.head_bytes => {
            Err(Rejection::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Rejection::HeadersTooLarge),
        Err(httparse::Error::Version) if names_http_version(&request_line) => {
            Err(Rejection::VersionNotSupported)
        }
        Err(_) => Err(Rejection::BadRequest),
    }
}

/// The request line as far as it has arrived, without its CRLF.
struct RequestLine<'a> {
    bytes: &'a [u8],
    /// Whether its CRLF has arrived.
    complete: bool,
}

/// Walks the head's lines up to the empty line that ends it, rejecting a
/// bare LF or a CR not followed by LF, and finds the request line.
///
/// RFC 9112 §2.2 lets a recipient accept a bare LF as a line terminator, and
/// httparse does; we do not, because a proxy in front of us that disagrees
/// would see different message boundaries (request smuggling). Empty lines
/// before the request line are skipped (RFC 9112 §2.2).
fn scan_lines(head: &[u8]) -> Result<RequestLine<'_>, Rejection> {
    let mut request_line = None;
    let mut line_start = 0;
    let mut at = 0;
    while at < head.len() {
        match head[at] {
            b'\n' => return Err(Rejection::BadRequest),
            b'\r' => match head.get(at + 1) {
                // Whether an LF follows is not known yet.
                None => break,
                Some(b'\n') => {
                    let line = &head[line_start..at];
                    match request_line {
                        None if line.is_empty() => {}
                        None => {
                            request_line = Some(RequestLine {
                                bytes: line,
                                complete: true,
                            })
                        }
                        Some(_) if line.is_empty() => break,
                        Some(_) => {}
                    }
                    at += 2;
                    line_start = at;
                    continue;
                }
                Some(_) => return Err(Rejection::BadRequest),
            },
            _ => {}
        }
        at += 1;
    }
    Ok(request_line.unwrap_or_else(|| {
        let rest = &head[line_start..];
        RequestLine {
            bytes: rest.strip_suffix(b"\r").unwrap_or(rest),
            complete: false,
        }
    }))
}

/// Whether the request line ends in something shaped like an HTTP-version,
/// "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3), or the start of one: a version
/// httparse does not support is then 505, anything else 400.
fn names_http_version(request_line: &RequestLine) -> bool {
    const SHAPE: &[u8] = b"HTTP/#.#";
    let version = request_line
        .bytes
        .rsplit(|&b| b == b' ')
        .next()
        .unwrap_or_default();
    let fits = if request_line.complete {
        version.len() == SHAPE.len()
    } else {
        version.len() <= SHAPE.len()
    };
    fits && version.iter().zip(SHAPE).all(|(&b, &shape)| match shape {
        b'#' => b.is_ascii_digit(),
        _ => b == shape,
    })
}

/// The fields the server acts on, as found among the header lines.
#[derive(Clone, Copy)]
enum Field {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    IfNoneMatch,
    IfModifiedSince,
    IfMatch,
    IfUnmodifiedSince,
    Expect,
    Range,
    IfRange,
    AcceptEncoding,
    UserAgent,
    Referer,
}

impl Field {
    /// Field names are case-insensitive (RFC 9110 §5.1).
    fn from_name(name: &str) -> Option<Field> {
        const NAMES: [(&str, Field); 14] = [
            ("host", Field::Host),
            ("content-length", Field::ContentLength),
            ("transfer-encoding", Field::TransferEncoding),
            ("connection", Field::Connection),
            ("if-none-match", Field::IfNoneMatch),
            ("if-modified-since", Field::IfModifiedSince),
            ("if-match", Field::IfMatch),
            ("if-unmodified-since", Field::IfUnmodifiedSince),
            ("expect", Field::Expect),
            ("range", Field::Range),
            ("if-range", Field::IfRange),
            ("accept-encoding", Field::AcceptEncoding),
            ("user-agent", Field::UserAgent),
            ("referer", Field::Referer),
        ];
        NAMES
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|&(_, field)| field)
    }
}

/// Turns a complete httparse head into a [`Request`], applying the rules of
/// RFC 9112 on method, target, Host and message body framing.
fn interpret<'a>(
    head: &httparse::Request<'_, 'a>,
    limits: &Limits,
) -> Result<Request<'a>, Rejection> {
    // httparse fills all three in on a complete parse.
    let (Some(method_token), Some(raw_target), Some(minor)) =
        (head.method, head.path, head.version)
    else {
        return Err(Rejection::BadRequest);
    };
    let method = Method::from_token(method_token).ok_or(Rejection::NotImplemented)?;
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let (target, authority) = split_target(raw_target, method_token)?;

    let mut request = Request {
        method,
        method_token,
        target,
        version,
        keep_alive: version == Version::Http11,
        host: None,
        if_none_match: FieldLines::default(),
        if_modified_since: None,
        if_match: FieldLines::default(),
        if_unmodified_since: None,
        expect_continue: false,
        range: None,
        if_range: None,
        accept_encoding: FieldLines::default(),
        user_agent: None,
        referer: None,
        body_len: 0,
    };
    let mut host_fields = 0;
    let mut content_length = None;
    // The last coding of all Transfer-Encoding fields, once there is one.
    let mut final_coding: Option<&[u8]> = None;
    let (mut close, mut keep_alive) = (false, false);

    for field in head.headers.iter() {
        let Some(known) = Field::from_name(field.name) else {
            continue;
        };
        // httparse leaves only SP and HTAB as whitespace in a value; RFC 9110
        // §5.5 excludes the surrounding ones from it.
        let value = field.value.trim_ascii();
        match known {
            Field::Host => {
                host_fields += 1;
                request.host = Some(authority_str(value).ok_or(Rejection::BadRequest)?);
            }
            Field::ContentLength => {
                // RFC 9112 §6.3: a repeated or invalid Content-Length makes
                // the body length unreliable. Even "5, 5" or two equal fields
                // are refused rather than reconciled.
                if content_length.is_some() {
                    return Err(Rejection::BadRequest);
                }
                content_length = Some(parse_content_length(value).ok_or(Rejection::BadRequest)?);
            }
            Field::TransferEncoding => {
                let last = value.rsplit(|&b| b == b',').map(<[u8]>::trim_ascii).next();
                final_coding = Some(last.unwrap_or_default());
            }
            Field::Connection => {
                // A comma-separated list of case-insensitive options (RFC 9110 §7.6.1).
                for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    close |= option.eq_ignore_ascii_case(b"close");
                    keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            Field::IfNoneMatch => request.if_none_match.push(value)?,
            Field::IfModifiedSince => keep_first(&mut request.if_modified_since, value)?,
            Field::IfMatch => request.if_match.push(value)?,
            Field::IfUnmodifiedSince => keep_first(&mut request.if_unmodified_since, value)?,
            Field::Expect => {
                // Case-insensitive (RFC 9110 §10.1.1); nothing else is known.
                if value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                    request.expect_continue = true;
                } else {
                    return Err(Rejection::ExpectationFailed);
                }
            }
            Field::Range => keep_first(&mut request.range, value)?,
            Field::IfRange => keep_first(&mut request.if_range, value)?,
            Field::AcceptEncoding => request.accept_encoding.push(value)?,
            Field::UserAgent => keep_first_for_logs(&mut request.user_agent, value),
            Field::Referer => keep_first_for_logs(&mut request.referer, value),
        }
    }

    // RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in HTTP/1.0.
    if host_fields > 1 || (host_fields == 0 && version == Version::Http11) {
        return Err(Rejection::BadRequest);
    }
    if authority.is_some() {
        request.host = authority;
    }
    if let Some(coding) = final_coding {
        // RFC 9112 §6.1 and §6.3: with Content-Length too, or in HTTP/1.0, the
        // framing is ambiguous; without chunked last, the length is unknown.
        // A chunked body we could read but do not take (501).
        let chunked = coding.eq_ignore_ascii_case(b"chunked");
        if content_length.is_some() || version == Version::Http10 || !chunked {
            return Err(Rejection::BadRequest);
        }
        return Err(Rejection::NotImplemented);
    }
    request.body_len = content_length.unwrap_or(0);
    if request.body_len > limits.body_bytes {
        return Err(Rejection::PayloadTooLarge);
    }
    request.keep_alive = !close && (version == Version::Http11 || keep_alive);
    Ok(request)
}

/// Splits the request-target into what to serve and, for absolute-form, the
/// authority that replaces Host (RFC 9112 §3.2).
fn split_target<'a>(
    target: &'a str,
    method_token: &str,
) -> Result<(&'a str, Option<&'a str>), Rejection> {
    // httparse lets UTF-8 through; the grammar allows only visible ASCII, and
    // no fragment (RFC 9112 §3.2, RFC 3986 §3.5).
    if !target.is_ascii() || target.contains('#') {
        return Err(Rejection::BadRequest);
    }
    if target.starts_with('/') {
        return Ok((target, None));
    }
    // asterisk-form only for OPTIONS, authority-form only for CONNECT
    // (RFC 9112 §3.2.3, §3.2.4).
    match method_token {
        "OPTIONS" if target == "*" => return Ok((target, None)),
        "CONNECT" if !target.is_empty() && authority_str(target.as_bytes()).is_some() => {
            return Ok((target, None))
        }
        _ => {}
    }
    // absolute-form (RFC 9112 §3.2.2): serve its path, and its authority is
    // the host.
    let Some(rest) = strip_scheme(target) else {
        return Err(Rejection::BadRequest);
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    // An http(s) URI must have a host (RFC 9110 §4.2.1, §4.2.2);
    // userinfo is refused by authority_str (RFC 9110 §4.2.4).
    if authority.is_empty() || authority_str(authority.as_bytes()).is_none() {
        return Err(Rejection::BadRequest);
    }
    // Without a path the query cannot be kept (no allocation): serve "/".
    let path = if path.starts_with('/') { path } else { "/" };
    Ok((path, Some(authority)))
}

/// The rest of an "http://" or "https://" URI; schemes are case-insensitive
/// (RFC 3986 §3.1).
fn strip_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// The value as a URI authority without userinfo: host and optional port
/// (RFC 9110 §7.2), made of unreserved, percent-encoded and sub-delims
/// characters, ':' and the brackets of an IP literal (RFC 3986 §3.2.2). None
/// for anything else, such as '/', '@' or whitespace, which must not reach
/// the server's mapping of hosts to sites.
fn authority_str(value: &[u8]) -> Option<&str> {
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(b);
    if value.iter().all(allowed) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// Content-Length = 1*DIGIT (RFC 9110 §8.6): no sign, no spaces, no list.
/// None also on overflow.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |length, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        length.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The lines of a list-valued field. A sender may split a list over
/// several lines, which mean the same as one line joining them with commas
/// (RFC 9110 §5.3); kept without allocating, up to `FIELD_LINES` lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldLines<'a> {
    lines: [&'a str; FIELD_LINES],
    len: usize,
}

/// Lines kept of one list field; more is refused (400), since dropping
/// some would change the answer.
const FIELD_LINES: usize = 8;

impl<'a> FieldLines<'a> {
    fn push(&mut self, value: &'a [u8]) -> Result<(), Rejection> {
        let value = std::str::from_utf8(value).map_err(|_| Rejection::BadRequest)?;
        let slot = self.lines.get_mut(self.len).ok_or(Rejection::BadRequest)?;
        *slot = value;
        self.len += 1;
        Ok(())
    }

    /// Lines as a parser would have collected them (for tests).
    #[cfg(test)]
    pub fn of(lines: &[&'a str]) -> FieldLines<'a> {
        let mut out = FieldLines::default();
        for line in lines {
            out.push(line.as_bytes()).unwrap();
        }
        out
    }

    /// Whether the field was sent at all (even empty).
    pub fn is_present(&self) -> bool {
        self.len > 0
    }

    /// The list's members, trimmed, across every line; empty members
    /// (`a, , b`) are skipped as §5.6.1 asks.
    pub fn items(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.lines[..self.len]
            .iter()
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|item| !item.is_empty())
    }
}

/// Keeps the first of repeated fields. The value must be UTF-8, since the
/// server acts on it (obs-text is legal but nothing we serve would match it).
fn keep_first<'a>(slot: &mut Option<&'a str>, value: &'a [u8]) -> Result<(), Rejection> {
    if slot.is_none() {
        *slot = Some(std::str::from_utf8(value).map_err(|_| Rejection::BadRequest)?);
    }
    Ok(())
}

/// Keeps the first of repeated fields that is UTF-8: a field only logged is
/// no reason to refuse a request.
fn keep_first_for_logs<'a>(slot: &mut Option<&'a str>, value: &'a [u8]) {
    if slot.is_none() {
        *slot = std::str::from_utf8(value).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(buf: &[u8], limits: Limits) -> Parsed<'_> {
        parse(buf, &limits)
    }

    fn complete(buf: &[u8]) -> (Request<'_>, usize) {
        match parse(buf, &Limits::default()) {
            Parsed::Complete(request, len) => (request, len),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn rejection(buf: &[u8]) -> Option<Rejection> {
        rejection_with(buf, Limits::default())
    }

    fn rejection_with(buf: &[u8], limits: Limits) -> Option<Rejection> {
        match parse_with(buf, limits) {
            Parsed::Reject(rejection) => Some(rejection),
            _ => None,
        }
    }

    /// The status a head gets, 0 for Partial, 200 for Complete.
    fn status(buf: &[u8]) -> u16 {
        match parse(buf, &Limits::default()) {
            Parsed::Partial => 0,
            Parsed::Complete(..) => 200,
            Parsed::Reject(rejection) => rejection.status(),
        }
    }

    #[test]
    fn expect_100_continue_is_known_and_nothing_else() {
        let limits = Limits {
            request_line: 8192,
            header_count: 100,
            head_bytes: 16384,
            body_bytes: 1024,
        };
        let head =
            b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n";
        let Parsed::Complete(req, _) = parse(head, &limits) else {
            panic!("parsed");
        };
        assert!(req.expect_continue);
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\r\n";
        assert!(matches!(
            parse(head, &limits),
            Parsed::Reject(Rejection::ExpectationFailed)
        ));
        assert_eq!(Rejection::ExpectationFailed.status(), 417);
    }

    #[test]
    fn simple_get() {
        let head = b"GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\n\
            User-Agent: curl/8\r\nAccept-Encoding: gzip, br  \r\n\r\n";
        let (request, len) = complete(head);
        assert_eq!(len, head.len());
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.method_token, "GET");
        assert_eq!(request.target, "/index.html?x=1");
        assert_eq!(request.version, Version::Http11);
        assert!(request.keep_alive);
        assert_eq!(request.host, Some("example.com"));
        assert_eq!(request.user_agent, Some("curl/8"));
        assert_eq!(
            request.accept_encoding.items().collect::<Vec<_>>(),
            ["gzip", "br"]
        );
        assert!(!request.if_none_match.is_present());
        assert_eq!(request.body_len, 0);
    }

    #[test]
    fn list_fields_keep_every_line_up_to_a_bound() {
        let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..FIELD_LINES {
            head.extend_from_slice(format!("Accept-Encoding: c{i}\r\n").as_bytes());
        }
        let at_bound = [head.as_slice(), b"\r\n"].concat();
        assert_eq!(
            complete(&at_bound).0.accept_encoding.items().count(),
            FIELD_LINES
        );
        head.extend_from_slice(b"Accept-Encoding: one-too-many\r\n\r\n");
        assert_eq!(rejection(&head), Some(Rejection::BadRequest));
    }

    #[test]
    fn head_and_conditional_fields() {
        let head = b"HEAD / HTTP/1.1\r\nhost: a\r\nIF-NONE-MATCH: \"x\"\r\n\
            If-None-Match: \"y\"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
            Range: bytes=0-1\r\nIf-Range: \"x\"\r\nReferer: http://r/\r\n\r\n";
        let (request, _) = complete(head);
        assert_eq!(request.method, Method::Head);
        assert_eq!(
            request.if_none_match.items().collect::<Vec<_>>(),
            ["\"x\"", "\"y\""],
            "every line of a list field"
        );
        assert_eq!(
            request.if_modified_since,
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        assert_eq!(request.range, Some("bytes=0-1"));
        assert_eq!(request.if_range, Some("\"x\""));
        assert_eq!(request.referer, Some("http://r/"));
    }

    #[test]
    fn keep_alive_by_version_and_connection() {
        let keep_alive = |head: &[u8]| complete(head).0.keep_alive;
        assert!(!keep_alive(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keep_alive(
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
        ));
        assert!(!keep_alive(
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
        assert!(!keep_alive(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        assert!(!keep_alive(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade,CLOSE\r\n\r\n"
        ));
        assert!(keep_alive(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\r\n"
        ));
        assert!(!keep_alive(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(
            complete(b"GET / HTTP/1.0\r\n\r\n").0.version,
            Version::Http10
        );
    }

    #[test]
    fn byte_at_a_time() {
        let head = b"GET /a HTTP/1.1\r\nHost: example.com\r\nRange: bytes=1-\r\n\r\n";
        for end in 0..head.len() {
            assert!(
                matches!(parse(&head[..end], &Limits::default()), Parsed::Partial),
                "prefix of {end} bytes"
            );
        }
        assert_eq!(complete(head).1, head.len());
    }

    #[test]
    fn pipelined() {
        let first = b"GET /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        let both = [&first[..], b"abc", b"HEAD /2 HTTP/1.1\r\nHost: a\r\n\r\n"].concat();
        let (request, len) = complete(&both);
        assert_eq!(
            (request.target, len, request.body_len),
            ("/1", first.len(), 3)
        );
        let (request, len) = complete(&both[len + 3..]);
        assert_eq!((request.method, request.target), (Method::Head, "/2"));
        assert_eq!(len, both.len() - first.len() - 3);
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let head = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let (request, len) = complete(head);
        assert_eq!((request.target, len), ("/", head.len()));
        assert_eq!(
            rejection(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(Rejection::BadRequest)
        );
    }

    #[test]
    fn absolute_form_names_the_host() {
        let (request, _) = complete(b"GET http://example.com/a?b HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!(
            (request.target, request.host),
            ("/a?b", Some("example.com"))
        );
        let (request, _) = complete(b"GET HTTPS://Example.com:8443 HTTP/1.0\r\n\r\n");
        assert_eq!(
            (request.target, request.host),
            ("/", Some("Example.com:8443"))
        );
        assert_eq!(
            status(b"GET http://u@example.com/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET http:///a HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        // Host is still required in HTTP/1.1 (RFC 9112 §3.2).
        assert_eq!(status(b"GET http://a/ HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn targets() {
        assert_eq!(status(b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET /é HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes()), 400);
        assert_eq!(status(b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        let (request, _) = complete(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!((request.method, request.target), (Method::NotAllowed, "*"));
        let (request, _) = complete(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n");
        assert_eq!(
            (request.method, request.target),
            (Method::NotAllowed, "a.example:443")
        );
    }

    #[test]
    fn methods() {
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\nHost: a\r\n\r\n").0.method,
            Method::NotAllowed
        );
        assert_eq!(
            complete(b"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n")
                .0
                .method_token,
            "DELETE"
        );
        assert_eq!(
            rejection(b"get / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(Rejection::NotImplemented)
        );
        assert_eq!(
            rejection(b"FOO / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(Rejection::NotImplemented)
        );
    }

    #[test]
    fn host_is_required_once() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
        assert_eq!(
            complete(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").0.host,
            Some("")
        );
        assert_eq!(
            complete(b"GET / HTTP/1.1\r\nHost: [::1]:80 \r\n\r\n")
                .0
                .host,
            Some("[::1]:80")
        );
        assert_eq!(complete(b"GET / HTTP/1.0\r\n\r\n").0.host, None);
    }

    #[test]
    fn content_length() {
        let with = |value: &str| {
            let head = format!("GET / HTTP/1.1\r\nHost: a\r\nContent-Length:{value}\r\n\r\n");
            match parse(head.as_bytes(), &Limits::default()) {
                Parsed::Complete(request, _) => Ok(request.body_len),
                Parsed::Reject(rejection) => Err(rejection.status()),
                Parsed::Partial => panic!("partial"),
            }
        };
        assert_eq!(with(" 5 "), Ok(5));
        assert_eq!(with("0"), Ok(0));
        assert_eq!(with("65536"), Ok(65536));
        assert_eq!(with("65537"), Err(413));
        for bad in [
            "1,1",
            "+5",
            " 5x",
            "-1",
            "",
            "5 5",
            "0x5",
            "99999999999999999999999",
        ] {
            assert_eq!(with(bad), Err(400), "{bad:?}");
        }
        let twice = b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(status(twice), 400);
        let small = Limits {
            body_bytes: 4,
            ..Limits::default()
        };
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(
            rejection_with(head, small),
            Some(Rejection::PayloadTooLarge)
        );
    }

    #[test]
    fn transfer_encoding() {
        let chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status(chunked), 501);
        let both = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(status(both), 400);
        let both = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status(both), 400);
        assert_eq!(
            status(b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        let gzip = b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(status(gzip), 400);
        let gzip_chunked = b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n";
        assert_eq!(status(gzip_chunked), 501);
    }

    #[test]
    fn request_line_limit() {
        let limits = Limits {
            request_line: 20,
            ..Limits::default()
        };
        let fits = b"GET /012345 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(matches!(parse_with(fits, limits), Parsed::Complete(..)));
        let long = b"GET /0123456 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(rejection_with(long, limits), Some(Rejection::UriTooLong));
        // Incomplete: 20 bytes of line may still end there; 21 cannot.
        assert!(matches!(parse_with(&long[..20], limits), Parsed::Partial));
        assert_eq!(
            rejection_with(&long[..21], limits),
            Some(Rejection::UriTooLong)
        );
        assert_eq!(
            rejection_with(&long[..22], limits),
            Some(Rejection::UriTooLong)
        );
        // A request line over the limit is 414 even when the head also is too large.
        let small_head = Limits {
            head_bytes: 24,
            ..limits
        };
        assert_eq!(
            rejection_with(long, small_head),
            Some(Rejection::UriTooLong)
        );
    }

    #[test]
    fn header_count_limit() {
        let limits = Limits {
            header_count: 3,
            ..Limits::default()
        };
        let three = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(matches!(parse_with(three, limits), Parsed::Complete(..)));
        let four = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(
            rejection_with(four, limits),
            Some(Rejection::HeadersTooLarge)
        );
        let many = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
            "X: y\r\n".repeat(200)
        );
        assert_eq!(rejection(many.as_bytes()), Some(Rejection::HeadersTooLarge));
    }

    #[test]
    fn head_bytes_limit() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789\r\n\r\n";
        let exact = Limits {
            head_bytes: head.len(),
            ..Limits::default()
        };
        assert!(matches!(parse_with(head, exact), Parsed::Complete(..)));
        let short = Limits {
            head_bytes: head.len() - 1,
            ..Limits::default()
        };
        assert_eq!(
            rejection_with(head, short),
            Some(Rejection::HeadersTooLarge)
        );
        let limits = Limits {
            head_bytes: 32,
            ..Limits::default()
        };
        assert!(matches!(parse_with(&head[..31], limits), Parsed::Partial));
        assert_eq!(
            rejection_with(&head[..32], limits),
            Some(Rejection::HeadersTooLarge)
        );
        assert_eq!(
            rejection_with(&head[..40], limits),
            Some(Rejection::HeadersTooLarge)
        );
        // Endless empty lines before the request line are bounded too.
        assert_eq!(
            rejection_with(&b"\r\n".repeat(16), limits),
            Some(Rejection::HeadersTooLarge)
        );
    }

    #[test]
    fn versions() {
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/2"), 505);
        assert_eq!(status(b"GET / HTTP/3.0\r\n"), 505);
        assert_eq!(status(b"GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.10\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/11\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\r\n\r\n"), 400);
    }

    #[test]
    fn bare_line_endings() {
        assert_eq!(status(b"GET / HTTP/1.1\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\nHost: a\n\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\rHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), 400);
        // The body is not the head's business.
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(complete(&[&head[..], b"\n\r"].concat()).1, head.len());
    }

    #[test]
    fn malformed_fields() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n"), 400);
        assert_eq!(status(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nRange: \xff\r\n\r\n"),
            400
        );
        let (request, _) = complete(b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: \xff\r\n\r\n");
        assert_eq!(request.user_agent, None);
    }
}
