//! Path routing within one host: an app's `routes:` entries, matched by path prefix.
//!
//! A prefix matches whole path segments, as Kubernetes Ingress `pathType: Prefix` does:
//! `/api` (or `/api/`) matches `/api`, `/api/` and `/api/v1/x`, never `/apix`. The longest
//! matching prefix wins. The table is compiled once per snapshot; a lookup probes the request
//! path at each segment boundary, longest first, in a hash map — its cost depends on the
//! path's depth, not on the number of routes.

use std::collections::HashMap;

/// Why a `path_prefix` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// It does not start with `/`.
    #[error("{0:?} must start with /")]
    NotAbsolute(String),
    /// It is not in canonical form (dot segments, `%`, `;`, `\`, `//`, control characters):
    /// requests are matched on their canonical path, so it could never match as written.
    #[error(
        "{0:?} is not a canonical path: write it decoded, without dot segments, `//`, `;`, `\\` or control characters"
    )]
    NotCanonical(String),
    /// The gateway's own endpoints live under `/oauth2/`.
    #[error("{0:?} is reserved: /oauth2/ belongs to the gateway's sign-in endpoints")]
    Reserved(String),
    /// Two entries name the same prefix (`/api` and `/api/` are the same).
    #[error("{0:?} is listed twice (a trailing slash does not make a different prefix)")]
    Duplicate(String),
}

/// The routes of one host, by path prefix.
#[derive(Debug)]
pub struct PathRoutes<T> {
    /// Normalised prefix (no trailing slash; the root is `""`) → index into `routes`.
    by_prefix: HashMap<Box<str>, usize>,
    /// In file order, with their prefix as written.
    routes: Vec<(String, T)>,
    /// Length of the longest normalised prefix: longer candidates need no probe.
    longest: usize,
}

impl<T> Default for PathRoutes<T> {
    fn default() -> Self {
        Self {
            by_prefix: HashMap::new(),
            routes: Vec::new(),
            longest: 0,
        }
    }
}

impl<T> PathRoutes<T> {
    /// Adds the route for `prefix` (in file order); refuses prefixes that could never match
    /// a canonical path, the gateway's `/oauth2/`, and duplicates.
    pub fn insert(&mut self, prefix: &str, route: T) -> Result<(), PrefixError> {
        let key = normalize_prefix(prefix)?;
        if self.by_prefix.contains_key(key) {
            return Err(PrefixError::Duplicate(prefix.to_owned()));
        }
        self.longest = self.longest.max(key.len());
        self.by_prefix.insert(key.into(), self.routes.len());
        self.routes.push((prefix.to_owned(), route));
        Ok(())
    }

    /// The index of the route whose prefix is the longest one matching `path` (a canonical
    /// path), if any.
    pub fn lookup(&self, path: &str) -> Option<usize> {
        if self.routes.is_empty() {
            return None;
        }
        let mut candidate = path;
        loop {
            if candidate.len() <= self.longest {
                if let Some(&i) = self.by_prefix.get(candidate) {
                    return Some(i);
                }
            }
            match candidate.rfind('/') {
                Some(i) => candidate = &candidate[..i],
                None => return None,
            }
        }
    }

    /// The route at `index` (from [`PathRoutes::lookup`]) with its prefix as written.
    pub fn get(&self, index: usize) -> Option<(&str, &T)> {
        self.routes.get(index).map(|(p, r)| (p.as_str(), r))
    }

    /// Every route with its prefix as written, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.routes.iter().map(|(p, r)| (p.as_str(), r))
    }

    /// True when the host has no path routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// `prefix` without its trailing slash, after checking it is a canonical absolute path.
fn normalize_prefix(prefix: &str) -> Result<&str, PrefixError> {
    if !prefix.starts_with('/') {
        return Err(PrefixError::NotAbsolute(prefix.to_owned()));
    }
    let key = prefix.strip_suffix('/').unwrap_or(prefix);
    let canonical = key
        .split('/')
        .skip(1)
        .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
        && !key.contains(['%', ';', '\\'])
        && !key.chars().any(char::is_control);
    if !canonical {
        return Err(PrefixError::NotCanonical(prefix.to_owned()));
    }
    if key == "/oauth2" || key.starts_with("/oauth2/") {
        return Err(PrefixError::Reserved(prefix.to_owned()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(prefixes: &[&str]) -> PathRoutes<&'static str> {
        let mut t = PathRoutes::default();
        for p in prefixes {
            t.insert(p, "").unwrap();
        }
        t
    }

    fn matched<'a>(t: &'a PathRoutes<&'static str>, path: &str) -> Option<&'a str> {
        t.lookup(path).and_then(|i| t.get(i)).map(|(p, _)| p)
    }

    #[test]
    fn prefixes_match_whole_segments_and_the_longest_wins() {
        let t = table(&["/api/", "/api/v2", "/static"]);
        assert_eq!(matched(&t, "/api"), Some("/api/"));
        assert_eq!(matched(&t, "/api/"), Some("/api/"));
        assert_eq!(matched(&t, "/api/v1/users"), Some("/api/"));
        assert_eq!(matched(&t, "/api/v2"), Some("/api/v2"));
        assert_eq!(matched(&t, "/api/v2/"), Some("/api/v2"));
        assert_eq!(matched(&t, "/api/v2/x/y"), Some("/api/v2"));
        assert_eq!(matched(&t, "/api/v20"), Some("/api/"), "v20 is not the segment v2");
        assert_eq!(matched(&t, "/apix"), None, "a prefix is not a string prefix");
        assert_eq!(matched(&t, "/static/app.js"), Some("/static"));
        assert_eq!(matched(&t, "/"), None);
        assert_eq!(matched(&t, ""), None);
        assert_eq!(matched(&t, "/Api/x"), None, "paths are case-sensitive");
    }

    #[test]
    fn the_root_prefix_matches_everything_not_claimed_by_a_longer_one() {
        let t = table(&["/", "/api"]);
        assert_eq!(matched(&t, "/"), Some("/"));
        assert_eq!(matched(&t, "/x/y"), Some("/"));
        assert_eq!(matched(&t, "/api/x"), Some("/api"));
    }

    #[test]
    fn empty_segments_in_a_path_do_not_create_matches() {
        let t = table(&["/api"]);
        assert_eq!(matched(&t, "/api//x"), Some("/api"));
        assert_eq!(matched(&t, "//api/x"), None);
    }

    #[test]
    fn prefixes_that_could_never_match_a_canonical_path_are_refused() {
        let mut t: PathRoutes<()> = PathRoutes::default();
        for bad in [
            "api", "", "/a/../b", "/a/./b", "/a//b", "/%61pi", "/a;b", "/a\\b", "/a\u{1}",
        ] {
            assert!(t.insert(bad, ()).is_err(), "{bad:?}");
        }
        assert!(matches!(t.insert("/oauth2", ()), Err(PrefixError::Reserved(_))));
        assert!(matches!(t.insert("/oauth2/x/", ()), Err(PrefixError::Reserved(_))));
        assert!(t.insert("/oauth2x", ()).is_ok(), "only the /oauth2 segment is reserved");
        assert!(t.insert("/api", ()).is_ok());
        assert!(matches!(t.insert("/api/", ()), Err(PrefixError::Duplicate(_))));
    }
}
