//! Route rules in oauth2-proxy syntax, for `skip_auth_routes` and `api_routes`.
//!
//! A rule is `REGEX` (any method) or `METHODS=REGEX`, where `METHODS` is one or more
//! comma-separated uppercase method tokens: `^/public/`, `GET=^/healthz$`,
//! `POST,PUT=^/api/`. The regex is Rust [`regex`] syntax and is matched against the path
//! canonicalised by [`crate::target`], never the raw target.
//!
//! Parsing decisions:
//! - The text before the first `=` is a method list only when it is a comma-separated list of
//!   tokens made of uppercase ASCII letters, `-` and `_`, each starting with a letter. Any other
//!   prefix containing a regex character means the whole rule is the regex, so `^/a=b$` stays a
//!   regex.
//! - A prefix that looks like a botched method list is an error rather than a silently
//!   never-matching regex: lower case (`get=^/x`), spaces (`GET, POST=^/x`), an empty entry
//!   (`GET,=^/x`), an empty list (`=^/x`), or the oauth2-proxy negation `GET!=^/x`, which this
//!   gateway does not support. To match a literal `word=` in a path, start the regex with `^` or
//!   a group (`(?:foo)=bar`).
//! - Leading or trailing whitespace around a rule is an error (use `\x20` for a real space).
//! - An empty regex is an error (it would match every path).
//! - Regexes are not anchored for you: `^/public/` matches only paths starting `/public/`,
//!   `/public/` matches anywhere in the path. Anchor with `^` and `$` as intended.
//! - Methods compare exactly: `GET=` does not cover `HEAD`; write `GET,HEAD=`.
//!
//! Matching is one [`RegexSet::is_match`] for the method-less rules plus one for the request's
//! method, so it does not allocate.
//!
//! Apps often carry the same rules (`^/healthz$`, `^/api/`): identical rule lists share one
//! compiled set across apps and reloads (an interner of weak references), which saves the
//! compilation on reload and tens of kilobytes per app (the sets and their per-thread caches).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use http::Method;
use regex::{Regex, RegexSet};

/// An example of a valid rule, quoted in error messages.
const EXAMPLE: &str = "examples of valid rules: \"^/public/\", \"GET=^/healthz$\", \"POST,PUT=^/api/\"";

/// Compiled `skip_auth_routes` or `api_routes` rules (shared by every app with the same list).
#[derive(Debug, Clone, Default)]
pub struct RouteRules {
    compiled: Arc<Compiled>,
}

/// Rule lists compiled in this process, while some app still uses them.
fn interned() -> &'static Mutex<HashMap<Vec<String>, Weak<Compiled>>> {
    static INTERNED: OnceLock<Mutex<HashMap<Vec<String>, Weak<Compiled>>>> = OnceLock::new();
    INTERNED.get_or_init(Mutex::default)
}

#[derive(Debug, Default)]
struct Compiled {
    /// Rules with no method filter, `None` when there are none.
    any_method: Option<RegexSet>,
    /// For each method named by some rule, the regexes of the rules naming it.
    by_method: Vec<(Method, RegexSet)>,
    /// Number of rules compiled.
    len: usize,
}

impl RouteRules {
    /// Compiles rules such as `"GET=^/healthz$"`, `"^/public/"`, `"POST,PUT=^/api/"`, or
    /// shares the compiled set of an identical list still in use.
    ///
    /// `Err((index, message))` names the first bad rule by its index in `rules`; the message
    /// says what is wrong and gives an example.
    pub fn compile(rules: &[String]) -> Result<RouteRules, (usize, String)> {
        if rules.is_empty() {
            return Ok(RouteRules::default());
        }
        let shared = interned()
            .lock()
            .ok()
            .and_then(|map| map.get(rules).and_then(Weak::upgrade));
        if let Some(compiled) = shared {
            return Ok(RouteRules { compiled });
        }
        let compiled = Arc::new(Compiled::compile(rules)?);
        if let Ok(mut map) = interned().lock() {
            if map.len() >= 64 && map.len().is_power_of_two() {
                map.retain(|_, w| w.strong_count() > 0);
            }
            map.insert(rules.to_vec(), Arc::downgrade(&compiled));
        }
        Ok(RouteRules { compiled })
    }

    /// True when there are no rules (nothing ever matches).
    pub fn is_empty(&self) -> bool {
        self.compiled.len == 0
    }

    /// The number of rules compiled.
    pub fn len(&self) -> usize {
        self.compiled.len
    }

    /// True when any rule matches `method` and the canonical `path` (from
    /// [`Target::path`](crate::target::Target::path)).
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        self.compiled.matches(method, path)
    }
}

impl Compiled {
    fn compile(rules: &[String]) -> Result<Compiled, (usize, String)> {
        let mut any_method: Vec<&str> = Vec::new();
        let mut any_method_last = 0;
        // (method, regexes, index of the last rule that added to it)
        let mut by_method: Vec<(Method, Vec<&str>, usize)> = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let (methods, regex) = parse_rule(rule).map_err(|m| (index, m))?;
            if let Err(e) = Regex::new(regex) {
                return Err((
                    index,
                    format!("invalid regex {regex:?} in rule {rule:?}: {e}\n(rules use Rust regex syntax; {EXAMPLE})"),
                ));
            }
            if methods.is_empty() {
                any_method.push(regex);
                any_method_last = index;
            }
            for method in methods {
                match by_method.iter_mut().find(|(m, _, _)| *m == method) {
                    Some((_, regexes, last)) => {
                        regexes.push(regex);
                        *last = index;
                    }
                    None => by_method.push((method, vec![regex], index)),
                }
            }
        }

        let any_method = if any_method.is_empty() {
            None
        } else {
            Some(build_set(&any_method).map_err(|m| (any_method_last, m))?)
        };
        let mut compiled = Vec::with_capacity(by_method.len());
        for (method, regexes, last) in by_method {
            compiled.push((method, build_set(&regexes).map_err(|m| (last, m))?));
        }
        Ok(Compiled {
            any_method,
            by_method: compiled,
            len: rules.len(),
        })
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        if self.any_method.as_ref().is_some_and(|set| set.is_match(path)) {
            return true;
        }
        self.by_method
            .iter()
            .find(|(m, _)| m == method)
            .is_some_and(|(_, set)| set.is_match(path))
    }
}

/// Builds one set from regexes already checked one by one.
fn build_set(regexes: &[&str]) -> Result<RegexSet, String> {
    RegexSet::new(regexes).map_err(|e| format!("these rules together are too large to compile: {e}"))
}

/// Splits a rule into its method filter (empty: any method) and its regex.
fn parse_rule(rule: &str) -> Result<(Vec<Method>, &str), String> {
    if rule.is_empty() {
        return Err(format!("empty rule; {EXAMPLE}"));
    }
    if rule.trim() != rule {
        return Err(format!(
            "rule {rule:?} has leading or trailing whitespace; remove it (write \\x20 for a space the path must contain); {EXAMPLE}"
        ));
    }
    let (methods, regex) = match rule.split_once('=') {
        Some((prefix, regex)) if is_method_list(prefix) => (parse_methods(prefix)?, regex),
        Some((prefix, _)) => {
            check_not_botched_method_list(rule, prefix)?;
            (Vec::new(), rule)
        }
        None => (Vec::new(), rule),
    };
    if regex.is_empty() {
        return Err(format!(
            "rule {rule:?} has an empty regex, which would match every path; {EXAMPLE}"
        ));
    }
    Ok((methods, regex))
}

/// A method token: an uppercase ASCII letter, then uppercase letters, `-` or `_`.
fn is_method_token(token: &str) -> bool {
    let mut bytes = token.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_uppercase())
        && bytes.all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

/// One or more method tokens separated by single commas.
fn is_method_list(prefix: &str) -> bool {
    prefix.split(',').all(is_method_token)
}

/// Parses a prefix already accepted by [`is_method_list`], dropping repeats.
fn parse_methods(prefix: &str) -> Result<Vec<Method>, String> {
    let mut methods: Vec<Method> = Vec::new();
    for token in prefix.split(',') {
        let method = Method::from_bytes(token.as_bytes()).map_err(|_| format!("{token:?} is not an HTTP method"))?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    Ok(methods)
}

/// Refuses a prefix before `=` that was evidently meant as a method list but is not one.
fn check_not_botched_method_list(rule: &str, prefix: &str) -> Result<(), String> {
    if let Some(negated) = prefix.strip_suffix('!') {
        if negated.is_empty() || is_method_list(negated) {
            return Err(format!(
                "rule {rule:?}: negated rules (METHOD!=REGEX) are not supported; write the routes that should match instead; {EXAMPLE}"
            ));
        }
    }
    let looks_like_methods = prefix.bytes().all(|b| b.is_ascii_alphabetic() || b" ,-_".contains(&b));
    if looks_like_methods {
        return Err(format!(
            "rule {rule:?}: {prefix:?} before '=' is not a method list: use uppercase methods separated by commas \
             without spaces, such as \"GET,HEAD=^/healthz$\" (to match a literal '=' in the path, start the \
             regex with '^' or a group, such as \"(?:{prefix})=\")"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_rule_lists_share_one_compiled_set() {
        let rules = vec!["^/shared-test/".to_owned(), "GET=^/shared-test-health$".to_owned()];
        let a = RouteRules::compile(&rules).unwrap();
        let b = RouteRules::compile(&rules).unwrap();
        assert!(Arc::ptr_eq(&a.compiled, &b.compiled));
        let other = RouteRules::compile(&["^/other-test/".to_owned()]).unwrap();
        assert!(!Arc::ptr_eq(&a.compiled, &other.compiled));
        assert!(b.matches(&Method::GET, "/shared-test-health"));
        assert!(!b.matches(&Method::POST, "/shared-test-health"));
    }

    fn rules(list: &[&str]) -> RouteRules {
        let owned: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        match RouteRules::compile(&owned) {
            Ok(r) => r,
            Err((i, m)) => panic!("rule {i} refused: {m}"),
        }
    }

    fn compile_err(list: &[&str]) -> (usize, String) {
        let owned: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        match RouteRules::compile(&owned) {
            Ok(r) => panic!("{list:?} compiled: {r:?}"),
            Err(e) => e,
        }
    }

    fn method(m: &str) -> Method {
        Method::from_bytes(m.as_bytes()).unwrap()
    }

    #[test]
    fn empty_rules_match_nothing() {
        let r = rules(&[]);
        assert!(r.is_empty());
        assert_eq!(r.len(), 0);
        assert!(!r.matches(&Method::GET, "/"));
        assert!(!r.matches(&Method::GET, ""));
        let d = RouteRules::default();
        assert!(d.is_empty());
        assert!(!d.matches(&Method::POST, "/x"));
    }

    #[test]
    fn rule_without_methods_matches_every_method() {
        let r = rules(&["^/public/"]);
        assert!(!r.is_empty());
        assert_eq!(r.len(), 1);
        for m in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND",
        ] {
            assert!(r.matches(&method(m), "/public/x"), "{m}");
            assert!(!r.matches(&method(m), "/private/x"), "{m}");
        }
    }

    #[test]
    fn method_filter() {
        let r = rules(&["GET=^/healthz$"]);
        assert!(r.matches(&Method::GET, "/healthz"));
        assert!(!r.matches(&Method::HEAD, "/healthz"));
        assert!(!r.matches(&Method::POST, "/healthz"));
        assert!(!r.matches(&Method::GET, "/healthz/x"));
        assert!(!r.matches(&Method::GET, "/x/healthz"));
    }

    #[test]
    fn method_list() {
        let r = rules(&["POST,PUT=^/api/"]);
        assert!(r.matches(&Method::POST, "/api/x"));
        assert!(r.matches(&Method::PUT, "/api/x"));
        assert!(!r.matches(&Method::GET, "/api/x"));
        assert!(!r.matches(&Method::DELETE, "/api/x"));
        assert!(!r.matches(&Method::POST, "/apix"));
    }

    #[test]
    fn repeated_methods_and_custom_methods() {
        let r = rules(&["GET,GET=^/a$", "M-SEARCH=^/upnp$", "MY_VERB=^/v$"]);
        assert!(r.matches(&Method::GET, "/a"));
        assert!(r.matches(&method("M-SEARCH"), "/upnp"));
        assert!(!r.matches(&Method::GET, "/upnp"));
        assert!(r.matches(&method("MY_VERB"), "/v"));
    }

    #[test]
    fn methods_are_case_sensitive() {
        let r = rules(&["GET=^/a$"]);
        assert!(!r.matches(&method("get"), "/a"));
        assert!(!r.matches(&method("Get"), "/a"));
    }

    #[test]
    fn unanchored_vs_anchored() {
        let r = rules(&["/public/"]);
        assert!(r.matches(&Method::GET, "/public/x"));
        assert!(r.matches(&Method::GET, "/private/public/x"));
        let r = rules(&["^/public/"]);
        assert!(r.matches(&Method::GET, "/public/x"));
        assert!(!r.matches(&Method::GET, "/private/public/x"));
        assert!(!r.matches(&Method::GET, "/public"));
        let r = rules(&["^/public$"]);
        assert!(r.matches(&Method::GET, "/public"));
        assert!(!r.matches(&Method::GET, "/public/"));
        assert!(!r.matches(&Method::GET, "/publicity"));
        let r = rules(&["^/public(/|$)"]);
        assert!(r.matches(&Method::GET, "/public"));
        assert!(r.matches(&Method::GET, "/public/a"));
        assert!(!r.matches(&Method::GET, "/publicity"));
    }

    #[test]
    fn dollar_does_not_match_before_a_newline() {
        // Not multi-line: '$' is the end of the path only.
        let r = rules(&["^/public$"]);
        assert!(!r.matches(&Method::GET, "/public\n/admin"));
    }

    #[test]
    fn equals_sign_inside_regex() {
        let r = rules(&["^/a=b$"]);
        assert!(r.matches(&Method::GET, "/a=b"));
        assert!(!r.matches(&Method::GET, "/a"));
        let r = rules(&["GET=^/a=b$"]);
        assert!(r.matches(&Method::GET, "/a=b"));
        assert!(!r.matches(&Method::POST, "/a=b"));
        let r = rules(&["/x=y"]);
        assert!(r.matches(&Method::POST, "/p/x=y"));
        let r = rules(&["(?:foo)=bar"]);
        assert!(r.matches(&Method::GET, "/foo=bar"));
        let r = rules(&["GET=^/a==b$"]);
        assert!(r.matches(&Method::GET, "/a==b"));
        let r = rules(&["[=]"]);
        assert!(r.matches(&Method::GET, "/a=b"));
        assert!(!r.matches(&Method::GET, "/ab"));
    }

    #[test]
    fn regex_features() {
        let r = rules(&["(?i)^/PUBLIC/", r"^/static/.+\.(css|js)$", r"^/users/\d+$"]);
        assert!(r.matches(&Method::GET, "/public/x"));
        assert!(r.matches(&Method::GET, "/static/a/app.css"));
        assert!(!r.matches(&Method::GET, "/static/a/app.css.map"));
        assert!(r.matches(&Method::GET, "/users/42"));
        assert!(!r.matches(&Method::GET, "/users/42/admin"));
        let r = rules(&["^/café$"]);
        assert!(r.matches(&Method::GET, "/café"));
    }

    #[test]
    fn mixed_rules() {
        let r = rules(&["GET=^/healthz$", "^/public/", "POST,PUT=^/api/", "GET,HEAD=^/static/"]);
        assert_eq!(r.len(), 4);
        assert!(r.matches(&Method::GET, "/healthz"));
        assert!(!r.matches(&Method::POST, "/healthz"));
        assert!(r.matches(&Method::DELETE, "/public/a"));
        assert!(r.matches(&Method::PUT, "/api/a"));
        assert!(!r.matches(&Method::GET, "/api/a"));
        assert!(r.matches(&Method::HEAD, "/static/a"));
        assert!(r.matches(&Method::GET, "/static/a"));
        assert!(!r.matches(&Method::POST, "/static/a"));
        assert!(!r.matches(&Method::GET, "/"));
        assert!(!r.matches(&Method::OPTIONS, "/healthz"));
    }

    #[test]
    fn many_rules() {
        let mut list: Vec<String> = Vec::new();
        for i in 0..300 {
            list.push(match i % 3 {
                0 => format!("^/r{i}$"),
                1 => format!("GET=^/r{i}$"),
                _ => format!("POST,DELETE=^/r{i}/"),
            });
        }
        let r = RouteRules::compile(&list).unwrap();
        assert_eq!(r.len(), 300);
        for i in 0..300 {
            let exact = format!("/r{i}");
            let sub = format!("/r{i}/x");
            match i % 3 {
                0 => {
                    assert!(r.matches(&Method::PATCH, &exact));
                    assert!(!r.matches(&Method::PATCH, &sub));
                }
                1 => {
                    assert!(r.matches(&Method::GET, &exact));
                    assert!(!r.matches(&Method::POST, &exact));
                }
                _ => {
                    assert!(r.matches(&Method::POST, &sub));
                    assert!(r.matches(&Method::DELETE, &sub));
                    assert!(!r.matches(&Method::GET, &sub));
                    assert!(!r.matches(&Method::POST, &exact));
                }
            }
        }
        assert!(!r.matches(&Method::GET, "/r300"));
    }

    #[test]
    fn invalid_regex_names_the_rule() {
        let (i, m) = compile_err(&["^/ok$", "GET=^/fine$", "^/api/(", "also[bad"]);
        assert_eq!(i, 2);
        assert!(m.contains("invalid regex"), "{m}");
        assert!(m.contains("^/api/("), "{m}");
        assert!(m.contains("GET=^/healthz$"), "example missing: {m}");
        let (i, m) = compile_err(&["GET=^/a/[z-a]"]);
        assert_eq!(i, 0);
        assert!(m.contains("invalid regex"), "{m}");
        let (i, _) = compile_err(&["^/a", "POST=*x"]);
        assert_eq!(i, 1);
        // A look-around (unsupported by Rust regex) is reported, not silently ignored.
        let (i, m) = compile_err(&["^/(?!admin)"]);
        assert_eq!(i, 0);
        assert!(m.contains("invalid regex"), "{m}");
    }

    #[test]
    fn empty_regex_is_refused() {
        for (list, at) in [(&["^/a", ""][..], 1), (&["GET="][..], 0), (&["POST,PUT="][..], 0)] {
            let (i, m) = compile_err(list);
            assert_eq!(i, at, "{list:?}");
            assert!(m.contains("empty"), "{m}");
            assert!(m.contains("GET=^/healthz$"), "{m}");
        }
    }

    #[test]
    fn botched_method_lists_are_refused() {
        for bad in [
            "get=^/x",
            "Get=^/x",
            "GET, POST=^/x",
            "GET,=^/x",
            ",GET=^/x",
            "GET,,POST=^/x",
            "=^/x",
            "foo=bar",
            "GET POST=^/x",
        ] {
            let (i, m) = compile_err(&["^/ok", bad]);
            assert_eq!(i, 1, "{bad}");
            assert!(m.contains("method"), "{bad}: {m}");
        }
    }

    #[test]
    fn negation_is_refused() {
        for bad in ["GET!=^/x", "!=^/x", "GET,POST!=^/x"] {
            let (i, m) = compile_err(&[bad]);
            assert_eq!(i, 0);
            assert!(m.contains("negated"), "{bad}: {m}");
        }
        // '!=' after a regex character is part of the regex.
        let r = rules(&["^/a!=b"]);
        assert!(r.matches(&Method::GET, "/a!=b"));
    }

    #[test]
    fn whitespace_around_rules_is_refused() {
        for bad in [" ^/x", "^/x ", "GET=^/x\n", "\t^/x", " GET=^/x"] {
            let (i, m) = compile_err(&[bad]);
            assert_eq!(i, 0);
            assert!(m.contains("whitespace"), "{bad:?}: {m}");
        }
        let r = rules(&[r"^/a\x20b$"]);
        assert!(r.matches(&Method::GET, "/a b"));
    }

    #[test]
    fn a_regex_that_is_only_a_method_name_matches_paths_containing_it() {
        // No '=': the whole rule is a regex, as in oauth2-proxy.
        let r = rules(&["GET"]);
        assert!(r.matches(&Method::POST, "/GET"));
        assert!(!r.matches(&Method::GET, "/get"));
    }

    #[test]
    fn first_error_wins() {
        let (i, _) = compile_err(&["(", ")"]);
        assert_eq!(i, 0);
    }

    #[test]
    fn rules_see_only_the_canonical_path() {
        use crate::target::{PathMode, Target};
        let canonical = |raw: &str| {
            let req = pingora::http::RequestHeader::build("GET", raw.as_bytes(), None).unwrap();
            Target::of(&req, PathMode::Canonical).map(|t| t.path(&req).to_owned())
        };
        let r = rules(&["^/public/"]);
        for raw in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public\\..\\admin",
            "/%70ublic/../admin",
        ] {
            let p = canonical(raw).unwrap();
            assert!(!r.matches(&Method::GET, &p), "{raw} -> {p}");
        }
        // Forms the canonical view cannot carry never reach a rule.
        assert!(canonical("/public%2f..%2fadmin").is_err());
        assert!(canonical("/public/..;/admin").is_err());
        assert!(r.matches(&Method::GET, &canonical("//public//x").unwrap()));
        assert!(r.matches(&Method::GET, &canonical("/%70ublic/x").unwrap()));
    }
}
