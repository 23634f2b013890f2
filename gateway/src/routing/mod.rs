//! Host routing: which app serves a request.
//!
//! A host is normalised once (port and trailing dot removed, lower-cased, checked), then looked
//! up as an exact name, then as the longest matching wildcard suffix (`*.preview.example.com`
//! matches `a.preview.example.com` and `x.a.preview.example.com`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

mod paths;
pub use paths::{PathRoutes, PrefixError};

/// Why a Host value was refused (the request gets a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// No Host header and no authority in the request line.
    #[error("the request has no Host header")]
    Missing,
    /// Not a syntactically valid host name or address.
    #[error("the Host header is not a valid host name")]
    Malformed,
}

/// Normalises a Host header value: strips the port and a trailing dot, lower-cases, and
/// checks it is a DNS name (letters, digits, `-`, `_`, dots) or a bracketed IPv6 address.
/// Borrows when the value is already in normal form.
pub fn normalize_host(raw: &str) -> Result<Cow<'_, str>, HostError> {
    if raw.is_empty() {
        return Err(HostError::Missing);
    }
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port
        let end = rest.find(']').ok_or(HostError::Malformed)?;
        let after = &rest[end + 1..];
        if !(after.is_empty() || valid_port(after.strip_prefix(':').ok_or(HostError::Malformed)?)) {
            return Err(HostError::Malformed);
        }
        let v6 = &rest[..end];
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(HostError::Malformed);
        }
        return Ok(Cow::Owned(format!("[{}]", v6.to_ascii_lowercase())));
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) => {
                if !valid_port(port) {
                    return Err(HostError::Malformed);
                }
                h
            }
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return Err(HostError::Malformed);
    }
    let mut needs_lowercase = false;
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(HostError::Malformed);
        }
        for b in label.bytes() {
            match b {
                b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {}
                b'A'..=b'Z' => needs_lowercase = true,
                _ => return Err(HostError::Malformed),
            }
        }
    }
    Ok(if needs_lowercase {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

/// A host pattern from an app file: an exact name or `*.suffix`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `app1.example.com`
    Exact(String),
    /// `*.preview.example.com`, stored as `preview.example.com`.
    Wildcard(String),
}

impl HostPattern {
    /// Parses a `host:` value from an app file.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if let Some(suffix) = raw.strip_prefix("*.") {
            match normalize_host(suffix) {
                Ok(s) if !suffix.contains(':') && s.contains('.') => {
                    Ok(Self::Wildcard(s.into_owned()))
                }
                _ => Err(format!(
                    "{raw:?} is not a valid wildcard host: write \"*.\" followed by a domain with at least two labels, e.g. \"*.preview.example.com\", without a port"
                )),
            }
        } else {
            match normalize_host(raw) {
                Ok(h) if !raw.contains(':') && !raw.contains('*') => Ok(Self::Exact(h.into_owned())),
                _ => Err(format!(
                    "{raw:?} is not a valid host name: write a DNS name such as \"app1.example.com\" (no scheme, no port) or a wildcard \"*.example.com\""
                )),
            }
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(h) => f.write_str(h),
            Self::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

/// The host table of one snapshot.
#[derive(Debug)]
pub struct RouteTable<T> {
    exact: HashMap<String, Arc<T>>,
    wildcard: HashMap<String, Arc<T>>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

impl<T> RouteTable<T> {
    /// Adds a route; returns the value already registered for the same pattern, if any.
    pub fn insert(&mut self, pattern: HostPattern, value: Arc<T>) -> Option<Arc<T>> {
        match pattern {
            HostPattern::Exact(h) => self.exact.insert(h, value),
            HostPattern::Wildcard(s) => self.wildcard.insert(s, value),
        }
    }

    /// The app for a normalised host: exact name first, then the longest wildcard suffix.
    pub fn lookup(&self, host: &str) -> Option<&Arc<T>> {
        if let Some(v) = self.exact.get(host) {
            return Some(v);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        // Scanning the dots left to right visits the suffixes longest first.
        let mut rest = host;
        while let Some((_, suffix)) = rest.split_once('.') {
            if let Some(v) = self.wildcard.get(suffix) {
                return Some(v);
            }
            rest = suffix;
        }
        None
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// True when no route is configured.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every routed value, exact names first.
    pub fn values(&self) -> impl Iterator<Item = &Arc<T>> {
        self.exact.values().chain(self.wildcard.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize_host("App1.Example.COM:8443").unwrap(), "app1.example.com");
        assert!(matches!(normalize_host("app1.example.com").unwrap(), Cow::Borrowed(_)));
        assert_eq!(normalize_host("app1.example.com.").unwrap(), "app1.example.com");
        assert_eq!(normalize_host("[::1]:8443").unwrap(), "[::1]");
        assert_eq!(normalize_host("127.0.0.1:80").unwrap(), "127.0.0.1");
        assert_eq!(normalize_host(""), Err(HostError::Missing));
        for bad in [
            "a b.com",
            "a..b",
            "evil.com/x",
            "a.com:",
            "a.com:99999",
            "a.com:8x",
            "[zz]",
            "[::1]x",
            ".",
            "a@b.com",
            "\u{e9}.com",
        ] {
            assert_eq!(normalize_host(bad), Err(HostError::Malformed), "{bad}");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert_eq!(normalize_host(&long), Err(HostError::Malformed));
    }

    #[test]
    fn parses_patterns() {
        assert_eq!(
            HostPattern::parse("App.Example.com").unwrap(),
            HostPattern::Exact("app.example.com".into())
        );
        assert_eq!(
            HostPattern::parse("*.Preview.example.com").unwrap(),
            HostPattern::Wildcard("preview.example.com".into())
        );
        for bad in [
            "*.com",
            "*",
            "a.*.com",
            "https://a.com",
            "a.com:443",
            "*.a.com:443",
            "",
            "a b",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_beats_wildcard_and_longest_suffix_wins() {
        let mut t = RouteTable::default();
        t.insert(HostPattern::parse("*.example.com").unwrap(), Arc::new("wild"));
        t.insert(
            HostPattern::parse("*.preview.example.com").unwrap(),
            Arc::new("preview"),
        );
        t.insert(HostPattern::parse("app1.example.com").unwrap(), Arc::new("app1"));
        t.insert(HostPattern::parse("x.preview.example.com").unwrap(), Arc::new("x"));
        assert_eq!(**t.lookup("app1.example.com").unwrap(), "app1");
        assert_eq!(**t.lookup("other.example.com").unwrap(), "wild");
        assert_eq!(**t.lookup("a.preview.example.com").unwrap(), "preview");
        assert_eq!(**t.lookup("b.a.preview.example.com").unwrap(), "preview");
        assert_eq!(**t.lookup("x.preview.example.com").unwrap(), "x");
        assert_eq!(**t.lookup("preview.example.com").unwrap(), "wild");
        assert!(t.lookup("example.com").is_none());
        assert!(t.lookup("example.org").is_none());
        assert!(t.lookup("app1example.com").is_none());
        assert_eq!(t.len(), 4);
    }
}
