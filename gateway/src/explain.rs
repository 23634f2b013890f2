//! `authgate explain`: what the gateway would answer to one request, and why — without starting
//! a server and without network access. The routing decision is the server's own
//! ([`Snapshot::dispatch`], [`Dispatched::class`]) and the verdict its policy's
//! ([`Policy::check`](crate::auth::policy::Policy::check)); only the session or token lookup is
//! replaced by the identity given on the command line.

use pingora::http::RequestHeader;
use serde::Serialize;

use crate::auth::policy::{Decision, Identity};
use crate::routing::HostPattern;
use crate::state::{Class, Dispatched, Snapshot, Unrouted};

/// Who sends the request.
#[derive(Debug, Clone)]
pub enum Who {
    /// No session, no token.
    Anonymous,
    /// A signed-in user with this identity (as a session would hold it).
    User(Identity),
    /// `Authorization: Bearer <JWT>`; its claims are read without verifying the signature
    /// (offline), which the running gateway does.
    Token(String),
}

/// The request to explain.
#[derive(Debug, Clone)]
pub struct Question {
    /// `https://host[:port]/path?query`, the path exactly as a client would send it.
    pub url: String,
    /// The request method.
    pub method: http::Method,
    /// Who sends it.
    pub who: Who,
}

/// What the gateway would do, step by step.
#[derive(Debug, Default, Serialize)]
pub struct Explanation {
    /// The app chosen, its file, and how its `host` matched (`exact` or `wildcard *.x`).
    pub app: Option<String>,
    /// How the Host matched the app's `host:`.
    pub host_match: Option<String>,
    /// The canonical path rules and route choice see.
    pub canonical_path: Option<String>,
    /// `routes[i] (path_prefix /api/)`, or `the app's own`.
    pub route: Option<String>,
    /// How the route's policy classes the request.
    pub class: Option<&'static str>,
    /// The provider of the route's policy.
    pub provider: Option<String>,
    /// The identity the policy judged.
    pub identity: Option<String>,
    /// The policy's verdict, when one was needed.
    pub verdict: Option<String>,
    /// The HTTP status the client would get (200 when proxied).
    pub status: u16,
    /// The answer in words: where it is proxied, where it is redirected, or why it is refused.
    pub answer: String,
    /// True when the request reaches the upstream (or the gateway's endpoint serves it).
    pub admitted: bool,
}

/// Stands in for an unset cookie key or client secret (a valid 32-byte key in base64).
const PLACEHOLDER_SECRET: &str = "ZXhwbGFpbi1oYXMtbm8tc2VjcmV0LXBsYWNlaG9sZGU=";

/// The snapshot the gateway would serve from `config_path`, built offline (no DNS, no provider
/// discovery), with the errors of the app files it leaves out.
pub fn load(config_path: &std::path::Path) -> Result<(Snapshot, Vec<crate::config::ConfigError>), String> {
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new().map_err(|e| e.to_string())?);
    let config = crate::config::load(config_path).map_err(|e| e.to_string())?;
    // Explaining needs no secret: stand in for the ones this shell does not have.
    for var in config.gateway.auth_secret_vars() {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, PLACEHOLDER_SECRET);
        }
    }
    let snapshot =
        Snapshot::build_with(config, None, &metrics, &crate::upstream::resolve::Offline).map_err(|e| e.to_string())?;
    let rejected = snapshot.rejected.clone();
    Ok((snapshot, rejected))
}

/// Explains `q` against `snapshot`. `Err` when the URL cannot be read.
pub fn explain(snapshot: &Snapshot, q: &Question) -> Result<Explanation, String> {
    let header = request_head(q)?;
    let mut out = Explanation::default();
    let routed = match snapshot.dispatch(&header) {
        Ok(r) => r,
        Err(Unrouted::Refused(r)) => return Ok(refused(out, r.page().status, r.reason())),
        Err(Unrouted::UnknownHost(host)) => return Ok(refused(out, 404, &format!("no app serves {host}"))),
        Err(Unrouted::BadPath(app, _, _, r)) => {
            out.app = Some(app_label(&app));
            return Ok(refused(out, r.page().status, r.reason()));
        }
    };
    out.app = Some(app_label(&routed.app));
    out.host_match = Some(match &routed.app.host {
        HostPattern::Exact(_) => "exact".to_owned(),
        pattern @ HostPattern::Wildcard(_) => format!("wildcard {pattern}"),
    });
    out.canonical_path = Some(routed.target.path(&header).to_owned());
    out.route = Some(
        match routed.route.and_then(|i| routed.app.routes.get(i).map(|(p, _)| (i, p))) {
            Some((i, prefix)) => format!("routes[{i}] (path_prefix {prefix})"),
            None => "the app's own".to_owned(),
        },
    );
    let class = routed.class(&header);
    out.class = Some(class_label(class));
    out.provider = routed
        .route_auth()
        .or(routed.app.endpoint_auth())
        .map(|a| a.provider.name.clone());
    Ok(match class {
        Class::Unprotected | Class::Skipped => proxied(out, &routed),
        Class::Ambiguous => refused(out, 400, "ambiguous_path"),
        Class::Jwks => Explanation {
            status: 200,
            answer: "answered by the gateway itself (its JWK set)".to_owned(),
            admitted: true,
            ..out
        },
        Class::Endpoint => Explanation {
            status: 200,
            answer: "answered by the gateway itself (its /oauth2/ endpoint)".to_owned(),
            admitted: true,
            ..out
        },
        Class::Api | Class::Protected => judged(out, &routed, class, &q.who),
    })
}

/// The policy's answer for a route that needs a user.
fn judged(mut out: Explanation, routed: &Dispatched, class: Class, who: &Who) -> Explanation {
    let Some(auth) = routed.route_auth() else {
        return proxied(out, routed);
    };
    let identity = match who {
        Who::User(identity) => Some(identity.clone()),
        Who::Token(jwt) if auth.skip_jwt_bearer_tokens && auth.provider.is_oidc() => {
            Some(crate::auth::provider::unverified_identity(jwt, &auth.provider))
        }
        // A token the route does not accept is ignored, as by the gateway.
        Who::Token(_) | Who::Anonymous => None,
    };
    let Some(identity) = identity else {
        return if class == Class::Api {
            refused(out, 401, "no session: an API route answers 401")
        } else {
            Explanation {
                status: 302,
                answer: format!("302 to sign in with provider {}", auth.provider.name),
                ..out
            }
        };
    };
    out.identity = Some(format!(
        "{} (email {}, groups [{}])",
        identity.user(),
        identity.email.as_deref().unwrap_or("-"),
        identity.groups.join(", ")
    ));
    match auth.policy.check(&identity) {
        Decision::Allow => {
            out.verdict = Some("allowed".to_owned());
            proxied(out, routed)
        }
        Decision::Deny(reason) => {
            out.verdict = Some(format!("denied: {reason}"));
            refused(out, 403, "the app's policy refuses this user")
        }
    }
}

fn proxied(out: Explanation, routed: &Dispatched) -> Explanation {
    let backends: Vec<&str> = routed
        .app
        .route(routed.route)
        .pool
        .spec()
        .upstreams
        .iter()
        .map(|u| u.label.as_str())
        .collect();
    Explanation {
        status: 200,
        answer: format!("proxied to [{}]", backends.join(", ")),
        admitted: true,
        ..out
    }
}

fn refused(out: Explanation, status: u16, why: &str) -> Explanation {
    Explanation {
        status,
        answer: format!("{status}: {why}"),
        admitted: false,
        ..out
    }
}

fn app_label(app: &crate::state::App) -> String {
    format!("{} ({})", app.name, app.file.display())
}

fn class_label(class: Class) -> &'static str {
    match class {
        Class::Endpoint => "gateway endpoint",
        Class::Jwks => "gateway JWK set",
        Class::Unprotected => "public (no policy)",
        Class::Skipped => "public (skip_auth_routes)",
        Class::Api => "API (api_routes: 401 without a user)",
        Class::Protected => "protected",
        Class::Ambiguous => "ambiguous (matrix parameters change the verdict)",
    }
}

/// The request head a client would send for `q`: the raw target exactly as written after the
/// authority (no normalisation), `Host` = the authority.
fn request_head(q: &Question) -> Result<RequestHeader, String> {
    let rest = q
        .url
        .strip_prefix("https://")
        .or_else(|| q.url.strip_prefix("http://"))
        .ok_or_else(|| format!("{:?}: write an absolute URL, e.g. https://app1.example.com/path", q.url))?;
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    if authority.is_empty() {
        return Err(format!("{:?} names no host", q.url));
    }
    let target = match target {
        "" => "/".to_owned(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_owned(),
    };
    let mut header = RequestHeader::build(q.method.clone(), target.as_bytes(), None)
        .map_err(|e| format!("{:?}: not a request target a client could send: {e}", q.url))?;
    header
        .insert_header(http::header::HOST, authority)
        .map_err(|e| format!("{authority:?}: not a Host value: {e}"))?;
    if let Who::Token(jwt) = &q.who {
        header
            .insert_header(http::header::AUTHORIZATION, format!("Bearer {jwt}"))
            .map_err(|e| format!("--token: {e}"))?;
    }
    Ok(header)
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = [
            ("app", self.app.as_deref()),
            ("host match", self.host_match.as_deref()),
            ("canonical path", self.canonical_path.as_deref()),
            ("route", self.route.as_deref()),
            ("class", self.class),
            ("provider", self.provider.as_deref()),
            ("identity", self.identity.as_deref()),
            ("policy", self.verdict.as_deref()),
        ];
        for (name, value) in rows {
            if let Some(v) = value {
                writeln!(f, "{name:<15} {v}")?;
            }
        }
        writeln!(f, "{:<15} {}", "answer", self.answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::test_support;

    fn ask(snapshot: &Snapshot, url: &str, who: Who) -> Explanation {
        explain(
            snapshot,
            &Question {
                url: url.to_owned(),
                method: http::Method::GET,
                who,
            },
        )
        .unwrap()
    }

    #[test]
    fn public_apps_routes_and_refusals_are_explained() {
        let (state, _dir) = test_support::state(&[
            (
                "a",
                "host: a.example.com\nupstreams: [\"127.0.0.1:9001\"]\nroutes: [{ path_prefix: /api, upstreams: [\"127.0.0.1:9002\"] }]\n",
            ),
            ("w", "host: \"*.preview.example.com\"\nupstreams: [\"127.0.0.1:9003\"]\n"),
        ]);
        let s = state.snapshot();
        let e = ask(&s, "https://a.example.com/x/../api/v1?q=1", Who::Anonymous);
        assert_eq!((e.status, e.admitted), (200, true));
        assert_eq!(e.canonical_path.as_deref(), Some("/api/v1"));
        assert_eq!(e.route.as_deref(), Some("routes[0] (path_prefix /api)"));
        assert_eq!(e.answer, "proxied to [127.0.0.1:9002]");
        let e = ask(&s, "https://a.example.com", Who::Anonymous);
        assert_eq!((e.status, e.route.as_deref()), (200, Some("the app's own")));
        let e = ask(&s, "https://pr-1.preview.example.com/", Who::Anonymous);
        assert_eq!(e.host_match.as_deref(), Some("wildcard *.preview.example.com"));
        assert_eq!(ask(&s, "https://b.example.com/", Who::Anonymous).status, 404);
        assert_eq!(ask(&s, "https://a.example.com/x%2fy", Who::Anonymous).status, 400);
        assert_eq!(ask(&s, "https://a.example.com/api;v=1/x", Who::Anonymous).status, 400);
        assert!(explain(
            &s,
            &Question {
                url: "a.example.com/".into(),
                method: http::Method::GET,
                who: Who::Anonymous
            }
        )
        .is_err());
    }
}
