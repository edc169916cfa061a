//! What a site does beyond serving its files, as nginx and Caddy users
//! write it: redirects (`return 301 ...`), a fallback for unknown paths
//! (`try_files $uri /index.html`, for single-page apps), custom error
//! pages (`error_page 404 /404.html`), extra response headers
//! (`add_header`) and Cache-Control by path pattern (`expires`). One
//! `SiteRules` per site; the checks are done once, at start.

use anyhow::{bail, Context};

/// A path pattern: `*` matches any run of characters (slashes included),
/// everything else itself; the whole path must match (`*.css`,
/// `/assets/*`, `/index.html`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(p: &str) -> anyhow::Result<Pattern> {
        if p.is_empty() || p.bytes().any(|b| b.is_ascii_control()) {
            bail!("{p:?} is not a path pattern");
        }
        Ok(Pattern(p.to_owned()))
    }

    pub fn matches(&self, path: &str) -> bool {
        glob(self.0.as_bytes(), path.as_bytes())
    }
}

/// `*`-only glob, iterative with one backtrack point (linear-ish, no
/// recursion): a request path cannot make it blow up.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// One redirect: a request for exactly `from` gets `status` to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub from: String,
    pub to: String,
    pub status: u16,
}

/// A site's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteRules {
    pub redirects: Vec<Redirect>,
    /// Served (200) for a GET or HEAD of a path the site does not have.
    pub fallback: Option<String>,
    /// Status → a page of the site answered with that status.
    pub error_pages: Vec<(u16, String)>,
    /// Added to every response.
    pub headers: Vec<(String, String)>,
    /// The first pattern matching the request path gives Cache-Control.
    pub cache_control: Vec<(Pattern, String)>,
}

impl SiteRules {
    /// The redirect for `path` (without its query), if one is configured.
    pub fn redirect(&self, path: &str) -> Option<&Redirect> {
        self.redirects.iter().find(|r| r.from == path)
    }

    pub fn error_page(&self, status: u16) -> Option<&str> {
        self.error_pages
            .iter()
            .find(|(s, _)| *s == status)
            .map(|(_, p)| p.as_str())
    }

    pub fn cache_control(&self, path: &str) -> Option<&str> {
        self.cache_control
            .iter()
            .find(|(p, _)| p.matches(path))
            .map(|(_, v)| v.as_str())
    }
}

/// A path inside the site, as rules name them: starts with '/', plain.
pub fn site_path(p: &str) -> anyhow::Result<String> {
    if !p.starts_with('/') || p.contains("..") || p.bytes().any(|b| b <= b' ' || b == 0x7f) {
        bail!("{p:?} must be a path in the site, starting with '/'");
    }
    Ok(p.to_owned())
}

/// `--error-page CODE=/path`.
pub fn parse_error_page(s: &str) -> Result<(u16, String), String> {
    let (code, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: CODE=/path, e.g. 404=/404.html"))?;
    let code: u16 = code
        .trim()
        .parse()
        .ok()
        .filter(|c| (400..600).contains(c))
        .ok_or_else(|| format!("{s:?}: the status must be 400 to 599"))?;
    let path = site_path(path.trim()).map_err(|e| e.to_string())?;
    Ok((code, path))
}

/// `--header 'Name: value'`: a field RFC 9110 §5 allows, that is not one
/// the server writes itself.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: 'Name: value'"))?;
    let (name, value) = (name.trim(), value.trim());
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(format!("{name:?} is not a header field name"));
    }
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(format!("{name}: the value has control characters"));
    }
    const OURS: [&str; 8] = [
        "content-length",
        "content-type",
        "content-range",
        "transfer-encoding",
        "connection",
        "date",
        "etag",
        "location",
    ];
    if OURS.iter().any(|o| o.eq_ignore_ascii_case(name)) {
        return Err(format!("{name} is written by the server itself"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// A redirect as the config file has it.
pub fn redirect(from: &str, to: &str, status: Option<u16>) -> anyhow::Result<Redirect> {
    let status = status.unwrap_or(301);
    if ![301, 302, 307, 308].contains(&status) {
        bail!("redirect {from}: status {status} is not 301, 302, 307 or 308");
    }
    if to.is_empty() || to.bytes().any(|b| b <= b' ' || b == 0x7f) {
        bail!("redirect {from}: {to:?} is not a URL");
    }
    Ok(Redirect {
        from: site_path(from).context("redirect")?,
        to: to.to_owned(),
        status,
    })
}

/// A site's host names, compared without case; `*.example.com` covers
/// one or more labels in front of example.com.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNames(pub Vec<String>);

impl HostNames {
    pub fn parse(names: &str) -> Result<HostNames, String> {
        let names: Vec<String> = names
            .split(',')
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Err("a site needs at least one name".into());
        }
        for n in &names {
            let bare = n.strip_prefix("*.").unwrap_or(n);
            if bare.is_empty()
                || !bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(format!("{n:?} is not a host name"));
            }
        }
        Ok(HostNames(names))
    }

    /// Whether a request's Host (its port, if any, ignored) is one of them.
    pub fn matches(&self, host: &str) -> bool {
        let host = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => &host[..i],
            _ => host,
        };
        let host = host.trim_end_matches('.');
        self.0.iter().any(|n| match n.strip_prefix("*.") {
            Some(base) => {
                host.len() > base.len() + 1
                    && host[host.len() - base.len()..].eq_ignore_ascii_case(base)
                    && host.as_bytes()[host.len() - base.len() - 1] == b'.'
            }
            None => n.eq_ignore_ascii_case(host),
        })
    }
}

/// `--site NAMES=DIR`.
pub fn parse_site(s: &str) -> Result<(HostNames, std::path::PathBuf), String> {
    let (names, dir) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: NAME[,NAME...]=DIR"))?;
    if dir.is_empty() {
        return Err(format!("{s:?}: no directory"));
    }
    Ok((HostNames::parse(names)?, std::path::PathBuf::from(dir)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = |s: &str| Pattern::new(s).unwrap();
        assert!(p("*.css").matches("/a/b/style.css"));
        assert!(!p("*.css").matches("/style.css.map"));
        assert!(p("/assets/*").matches("/assets/app.1234.js"));
        assert!(!p("/assets/*").matches("/other/assets/x"));
        assert!(p("/index.html").matches("/index.html"));
        assert!(p("*").matches("/anything"));
        assert!(p("/a*b*c").matches("/aXXbYYc") && !p("/a*b*c").matches("/aXXbYY"));
        // No blow-up on a hostile path.
        let long = "/".to_string() + &"a".repeat(5000);
        assert!(!p("*a*a*a*a*a*a*a*a*b").matches(&long));
    }

    #[test]
    fn flags_are_checked() {
        assert_eq!(
            parse_error_page("404=/404.html"),
            Ok((404, "/404.html".into()))
        );
        assert!(parse_error_page("200=/x").is_err());
        assert!(parse_error_page("404=x.html").is_err());
        assert!(parse_error_page("404=/../etc").is_err());
        assert_eq!(
            parse_header("X-Content-Type-Options: nosniff"),
            Ok(("X-Content-Type-Options".into(), "nosniff".into()))
        );
        assert!(parse_header("Bad Name: x").is_err());
        assert!(parse_header("X-A: a\rb").is_err());
        assert!(parse_header("Content-Length: 5").is_err());
        assert!(redirect("/old", "https://example.com/new", Some(308)).is_ok());
        assert!(redirect("/old", "https://x/", Some(200)).is_err());
        assert!(redirect("old", "/new", None).is_err());
    }

    #[test]
    fn host_names() {
        let (names, dir) = parse_site("Example.com,www.example.com=/srv/a").unwrap();
        assert_eq!(dir, std::path::PathBuf::from("/srv/a"));
        assert!(names.matches("example.com"));
        assert!(names.matches("WWW.Example.COM:8080"));
        assert!(names.matches("example.com."));
        assert!(!names.matches("example.org"));
        let wild = HostNames::parse("*.example.com").unwrap();
        assert!(wild.matches("a.b.example.com") && !wild.matches("example.com"));
        assert!(!wild.matches("badexample.com"));
        assert!(HostNames::parse("a/b").is_err());
        assert!(parse_site("=/srv").is_err());
    }
}
