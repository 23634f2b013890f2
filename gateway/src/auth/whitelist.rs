//! `auth.whitelist_domains`: more domains the `rd` parameter may send the browser to after
//! sign-in and sign-out, with oauth2-proxy's semantics.
//!
//! - `example.org` allows that host only; `.example.org` and `*.example.org` allow it and
//!   every dot-bounded subdomain (`a.example.org`, never `evilexample.org`).
//! - Without a port, only URLs without a port are allowed; `example.org:8443` allows that port
//!   only; `example.org:*` any port.
//!
//! Entries are checked when the configuration loads: a bare top-level domain (`com`, `.com`,
//! `*`) would open redirects to a whole TLD and is refused, as are IP literals, userinfo,
//! schemes, paths and non-ASCII names.

/// Which ports an allowed domain admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    /// Only URLs without a port.
    Default,
    /// This port only.
    Exact(u16),
    /// Any port (`:*`).
    Any,
}

/// One compiled `whitelist_domains` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedDomain {
    /// The domain, lower-cased, without leading `.`/`*.` or trailing dot.
    domain: String,
    /// Subdomains too (`.example.org`, `*.example.org`).
    subdomains: bool,
    ports: Ports,
}

impl AllowedDomain {
    /// Parses one entry; the error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<AllowedDomain, String> {
        let bad = |why: &str| {
            format!("{entry:?} {why}: write example.org, .example.org or *.example.org, optionally with :port or :*")
        };
        let (host, ports) = match entry.rsplit_once(':') {
            Some((h, "*")) => (h, Ports::Any),
            Some((h, p)) => match p.parse::<u16>() {
                Ok(port) if port != 0 && p.bytes().all(|b| b.is_ascii_digit()) => (h, Ports::Exact(port)),
                _ => return Err(bad("has an invalid port")),
            },
            None => (entry, Ports::Default),
        };
        let (rest, subdomains) = if let Some(r) = host.strip_prefix("*.") {
            (r, true)
        } else if let Some(r) = host.strip_prefix('.') {
            (r, true)
        } else {
            (host, false)
        };
        let domain = rest.strip_suffix('.').unwrap_or(rest).to_ascii_lowercase();
        let labels_ok = domain.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if domain.is_empty() || domain.len() > 253 || !labels_ok {
            return Err(bad("is not a domain name"));
        }
        if !domain.contains('.') {
            return Err(bad("is a single label, which would allow a whole top-level domain"));
        }
        if domain
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad("is an IP address"));
        }
        Ok(AllowedDomain {
            domain,
            subdomains,
            ports,
        })
    }

    /// The entry for a cookie domain (`example.com`): the domain and its subdomains, any port
    /// (as redirects within the cookie domain have always been).
    pub fn cookie_domain(domain: &str) -> AllowedDomain {
        AllowedDomain {
            domain: domain.trim_start_matches('.').to_ascii_lowercase(),
            subdomains: true,
            ports: Ports::Any,
        }
    }

    /// True when a redirect to `host` (validated, trailing dot removed) with `port` (digits,
    /// or `None` when the URL has none) is allowed by this entry.
    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let port_ok = match self.ports {
            Ports::Any => true,
            Ports::Default => port.is_none(),
            Ports::Exact(p) => port == Some(p),
        };
        if !port_ok {
            return false;
        }
        if host.eq_ignore_ascii_case(&self.domain) {
            return true;
        }
        let (h, d) = (host.as_bytes(), self.domain.as_bytes());
        self.subdomains
            && h.len() > d.len() + 1
            && h[h.len() - d.len() - 1] == b'.'
            && h[h.len() - d.len()..].eq_ignore_ascii_case(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_checked() {
        for bad in [
            "",
            "com",
            ".com",
            "*.com",
            "*",
            "*.",
            ".",
            "example..org",
            "exa mple.org",
            "example.org:0",
            "example.org:99999",
            "example.org:x",
            "example.org:",
            "user@example.org",
            "https://example.org",
            "example.org/x",
            "1.2.3.4",
            "[::1]",
            "exämple.org",
            "*example.org",
            "a.*.example.org",
        ] {
            assert!(AllowedDomain::parse(bad).is_err(), "{bad:?}");
        }
        for ok in [
            "example.org",
            ".example.org",
            "*.example.org",
            "EXAMPLE.org.",
            "example.org:8443",
            "example.org:*",
        ] {
            assert!(AllowedDomain::parse(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn matching_is_dot_bounded_and_port_aware() {
        let exact = AllowedDomain::parse("example.org").unwrap();
        assert!(exact.allows("example.org", None));
        assert!(exact.allows("EXAMPLE.ORG", None));
        assert!(!exact.allows("a.example.org", None));
        assert!(!exact.allows("example.org", Some(8443)));
        for form in [".example.org", "*.example.org"] {
            let sub = AllowedDomain::parse(form).unwrap();
            assert!(sub.allows("example.org", None), "{form}");
            assert!(sub.allows("a.b.example.org", None), "{form}");
            assert!(!sub.allows("evilexample.org", None), "{form}");
            assert!(!sub.allows("example.org.evil.com", None), "{form}");
            assert!(!sub.allows("xample.org", None), "{form}");
            assert!(!sub.allows("a.example.org", Some(443)), "{form}");
        }
        let port = AllowedDomain::parse("*.example.org:8443").unwrap();
        assert!(port.allows("a.example.org", Some(8443)));
        assert!(!port.allows("a.example.org", None));
        assert!(!port.allows("a.example.org", Some(8444)));
        let any = AllowedDomain::parse("example.org:*").unwrap();
        assert!(any.allows("example.org", None) && any.allows("example.org", Some(1)));
    }

    /// Through the `rd` validator: the whitelist widens the hosts, never the shapes.
    #[test]
    fn redirects_within_the_whitelist_only() {
        use crate::auth::redirect::safe_redirect_within;
        let allowed = [
            AllowedDomain::parse(".other.test").unwrap(),
            AllowedDomain::parse("exact.example.net:8443").unwrap(),
        ];
        let rd = |v: &str| safe_redirect_within(v, "app.example.com", None, &allowed, false);
        for ok in [
            "https://other.test/",
            "https://a.b.other.test/x?y#z",
            "https://A.OTHER.TEST./",
            "https://exact.example.net:8443/p",
        ] {
            assert_eq!(rd(ok), ok);
        }
        for bad in [
            "https://evilother.test/",
            "https://other.test.evil.com/",
            "https://evil.com/.other.test",
            "https://evil.com#.other.test",
            "https://a.other.test@evil.com/",
            "https://evil.com@a.other.test/",
            "https://a.other.test\\@evil.com/",
            "https://a.other.test%2F@evil.com/",
            "https://a%2Eother.test/",
            "https://%61.other.test/",
            "//a.other.test/",
            "/\\a.other.test/",
            "/%2F%2Fa.other.test/",
            "https:a.other.test",
            "http://a.other.test/",
            "https://a.other.test:443/",
            "https://exact.example.net/",
            "https://exact.example.net:8444/",
            "https://x.exact.example.net:8443/",
        ] {
            assert_eq!(rd(bad), "/", "{bad:?}");
        }
    }
}
