//! App files: the host (routing, `redirect_url` or `--host`), the upstream (the application
//! container, not the sidecar) and the `auth` block of one instance.

use super::super::writer::{AppOut, AuthOut, RouteOut, TimeoutsOut, UpstreamTlsOut};
use super::super::{Instance, Site};
use super::opts::Val;
use super::{Ctx, Finding, Opts};

/// A value authgate cannot honour although the option itself maps (reported by name).
pub(crate) fn value_problem(toml: &str, val: &Val, opts: &Opts) -> Option<String> {
    let v = val.values.last().map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    let off = v == "false" || v == "0";
    match toml {
        "cookie_httponly" if off => Some("cookies are always HttpOnly".into()),
        "cookie_path" if !v.is_empty() && v != "/" => Some(format!("cookies always have Path=/ (was {v})")),
        "cookie_samesite" if !matches!(v.as_str(), "" | "lax" | "strict" | "none") => {
            Some(format!("cookie_samesite must be lax, strict, none or empty (was {v})"))
        }
        "pass_host_header" if off => Some("the client's Host is always passed upstream".into()),
        "skip_auth_strip_headers" if off => Some("identity headers from clients are always stripped".into()),
        "proxy_prefix" if !v.is_empty() && v.trim_end_matches('/') != "/oauth2" => {
            Some(format!("the endpoints are always under /oauth2 (was {v})"))
        }
        "real_client_ip_header" if !v.is_empty() && v != "x-forwarded-for" => Some(format!(
            "authgate reads X-Forwarded-For from server.trusted_proxies only (was {v})"
        )),
        "session_store_type" if !v.is_empty() && v != "cookie" && v != "redis" => Some(format!("unknown store {v}")),
        "skip_jwt_bearer_tokens" if !off && opts.str("provider") == Some("github") => {
            Some("bearer tokens are only accepted from OIDC providers".into())
        }
        "pass_basic_auth" | "set_basic_auth" if !off => {
            Some("no Basic auth upstream; read X-Forwarded-User instead".into())
        }
        _ => None,
    }
}

/// Writes the app(s) of `inst`.
pub(crate) fn map(inst: &Instance, opts: &Opts, provider: Option<(String, String)>, ctx: &mut Ctx) {
    let subject = inst.origin.as_str();
    let sites = sites(inst, opts, ctx);
    let own = opts.list("upstreams");
    let central = sites.iter().any(|s| s.upstream.is_some()) && own.iter().all(|u| !u.starts_with("http"));
    let (upstreams, routes) = if central {
        (None, Vec::new())
    } else {
        upstream(inst, opts, ctx)
    };
    let Some((provider, kind)) = provider else {
        for s in &sites {
            ctx.findings.push(Finding::unmapped(
                subject,
                "provider",
                &format!("app for {} NOT written: its provider could not be mapped", s.host),
            ));
        }
        return;
    };
    let auth = auth(subject, opts, &provider, &kind, ctx);
    if !auth.has_rule() {
        ctx.findings.push(Finding::unmapped(
            subject,
            "email_domains",
            "no email_domains, emails, groups, orgs or teams: oauth2-proxy admits nobody this way and authgate needs a rule; its apps were NOT written",
        ));
        return;
    }
    for site in sites {
        if central && site.upstream.is_none() {
            ctx.findings.push(Finding::info(
                subject,
                &format!(
                    "the central proxy's own host {} is not needed: authgate answers /oauth2/* on every app host",
                    site.host
                ),
            ));
            continue;
        }
        let Some(up) = site.upstream.clone().or_else(|| upstreams.clone()) else {
            ctx.findings.push(Finding::unmapped(
                subject,
                "upstreams",
                &format!("no usable upstream for {}: app NOT written", site.host),
            ));
            continue;
        };
        if let Some(other) = ctx.apps.iter_mut().find(|a| a.host == site.host) {
            if !site.paths.is_empty() && other.auth.provider == auth.provider {
                for path in &site.paths {
                    other.routes.push(RouteOut {
                        path_prefix: path.clone(),
                        upstreams: vec![up.clone()],
                        auth: (other.auth != auth).then(|| auth.clone()),
                    });
                }
                if !other.sources.contains(&site.origin) {
                    other.sources.push(site.origin.clone());
                }
                ctx.findings.push(Finding::info(
                    subject,
                    &format!(
                        "{} sends {} of {} to this instance: written as routes: of app `{}`",
                        site.origin,
                        site.paths.join(", "),
                        site.host,
                        other.name
                    ),
                ));
                continue;
            }
            ctx.findings.push(Finding::unmapped(
                subject,
                "redirect_url",
                &format!(
                    "host {} already belongs to app `{}`: not written twice",
                    site.host, other.name
                ),
            ));
            continue;
        }
        if !site.paths.is_empty() {
            ctx.findings.push(Finding::action(
                subject,
                &format!(
                    "{} sends only {} of {} to this app; authgate sends every path of the host to it: other paths that must reach other backends need routes: entries",
                    site.origin,
                    site.paths.join(", "),
                    site.host
                ),
            ));
        }
        if site.upstream.is_some() {
            for r in &routes {
                ctx.findings.push(Finding::unmapped(
                    subject,
                    "upstreams",
                    &format!(
                        "path route {} → {} is inside the pod: give that port a Service and add routes: [{{ path_prefix: {}, upstreams: [<service>:<port>] }}] to the app of {}",
                        r.path_prefix,
                        r.upstreams.join(", "),
                        r.path_prefix,
                        site.host
                    ),
                ));
            }
        }
        let callback = format!("https://{}/oauth2/callback", site.host.trim_start_matches("*."));
        let list = ctx.callbacks.entry(provider.clone()).or_default();
        if !list.contains(&callback) {
            list.push(callback);
        }
        let tls = up.starts_with("https://") && opts.bool("ssl_upstream_insecure_skip_verify") == Some(true);
        let mut name = sanitize(&site.name);
        while ctx.apps.iter().any(|a| a.name == name) {
            name.push_str("-2");
        }
        ctx.apps.push(AppOut {
            name,
            sources: vec![inst.origin.clone(), site.origin.clone()],
            host: site.host.clone(),
            upstreams: vec![up],
            upstream_tls: tls.then_some(UpstreamTlsOut {
                insecure_skip_verify: true,
            }),
            timeouts: opts
                .str("upstream_timeout")
                .filter(|t| humantime::parse_duration(t).is_ok())
                .map(|t| TimeoutsOut { read: t.to_owned() }),
            auth: auth.clone(),
            routes: if site.upstream.is_none() {
                routes.clone()
            } else {
                Vec::new()
            },
        });
    }
}

/// The hosts of `inst`: routed ones, else `redirect_url`'s host.
fn sites(inst: &Instance, opts: &Opts, ctx: &mut Ctx) -> Vec<Site> {
    if !inst.sites.is_empty() {
        return inst.sites.clone();
    }
    let redirect = opts.str("redirect_url").and_then(|u| url::Url::parse(u).ok());
    let Some(host) = redirect.as_ref().and_then(|u| u.host_str()).map(str::to_owned) else {
        ctx.findings.push(Finding::unmapped(
            &inst.origin,
            "redirect_url",
            "no host: neither routing nor redirect_url names one (pass --host NAME); nothing written",
        ));
        return Vec::new();
    };
    if let Some(u) = &redirect {
        if u.scheme() != "https" {
            ctx.findings.push(Finding::info(
                &inst.origin,
                &format!(
                    "redirect_url is {u}: authgate serves HTTPS only, its callback is https://{host}/oauth2/callback"
                ),
            ));
        }
    }
    let generic = ["oauth2", "config", "env", "proxy"]
        .iter()
        .any(|g| inst.name.to_ascii_lowercase().contains(g));
    vec![Site {
        name: if generic {
            host.split('.').next().unwrap_or_default().to_owned()
        } else {
            inst.name.clone()
        },
        host,
        upstream: None,
        paths: Vec::new(),
        origin: "redirect_url".to_owned(),
    }]
}

/// The app's upstream from `--upstream`: the one at `/`; the others become path routes
/// (oauth2-proxy passes the request path unchanged to an upstream chosen by its URL's path).
fn upstream(inst: &Instance, opts: &Opts, ctx: &mut Ctx) -> (Option<String>, Vec<RouteOut>) {
    let subject = inst.origin.as_str();
    let list = opts.list("upstreams");
    let mut chosen = None;
    let mut routes = Vec::new();
    for raw in &list {
        let Ok(url) = url::Url::parse(raw) else {
            ctx.findings
                .push(Finding::unmapped(subject, "upstreams", &format!("{raw}: not a URL")));
            continue;
        };
        if !matches!(url.scheme(), "http" | "https") {
            ctx.findings.push(Finding::unmapped(
                subject,
                "upstreams",
                &format!("{raw}: {}:// upstreams are not supported (authgate proxies to HTTP servers only; serve it from a small web server)", url.scheme()),
            ));
            continue;
        }
        let path = url.path();
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = if url.scheme() == "https" {
            format!("https://{host}:{port}")
        } else {
            format!("{host}:{port}")
        };
        if path == "/" || path.is_empty() || list.len() == 1 {
            if path != "/" && !path.is_empty() {
                ctx.findings.push(Finding::unmapped(
                    subject,
                    "upstreams",
                    &format!("{raw}: the upstream path {path} is not prepended (authgate keeps the request path)"),
                ));
            }
            if chosen.is_none() {
                chosen = Some(addr);
            }
        } else if let Some(route) = path_route(subject, raw, path, addr, ctx) {
            routes.push(route);
        }
    }
    let inst_has_k8s_upstream = inst.sites.iter().all(|s| s.upstream.is_some()) && !inst.sites.is_empty();
    if let Some(addr) = &chosen {
        let loopback = addr.starts_with("127.") || addr.starts_with("localhost:") || addr.starts_with("[::1]");
        if loopback && !inst_has_k8s_upstream {
            ctx.findings.push(Finding::action(subject, &format!("upstream {addr} is on loopback: right only if authgate runs on the same host; otherwise write the app's address")));
        }
    }
    (chosen, routes)
}

/// A `routes:` entry for an upstream at `path`, or `None` (reported) when authgate cannot
/// match that path.
fn path_route(subject: &str, raw: &str, path: &str, addr: String, ctx: &mut Ctx) -> Option<RouteOut> {
    if let Err(e) = crate::routing::PathRoutes::default().insert(path, ()) {
        ctx.findings.push(Finding::unmapped(
            subject,
            "upstreams",
            &format!("{raw}: not written as a route: path_prefix {e}"),
        ));
        return None;
    }
    if !path.ends_with('/') {
        ctx.findings.push(Finding::info(
            subject,
            &format!("{raw}: oauth2-proxy matched {path} as a string prefix ({path}x too); authgate's route matches whole segments ({path} and {path}/...)"),
        ));
    }
    Some(RouteOut {
        path_prefix: path.to_owned(),
        upstreams: vec![addr],
        auth: None,
    })
}

/// The `auth` block.
fn auth(subject: &str, opts: &Opts, provider: &str, kind: &str, ctx: &mut Ctx) -> AuthOut {
    let mut a = AuthOut {
        provider: provider.to_owned(),
        email_domains: opts
            .list("email_domains")
            .into_iter()
            .map(|d| {
                if let Some(rest) = d.strip_prefix('.') {
                    format!("*.{rest}")
                } else {
                    d
                }
            })
            .collect(),
        allowed_groups: opts.list("allowed_groups"),
        api_routes: opts.list("api_routes"),
        skip_jwt_bearer_tokens: opts.bool("skip_jwt_bearer_tokens") == Some(true) && kind != "github",
        pass_access_token: opts.bool("pass_access_token") == Some(true),
        set_authorization_header: opts.bool("set_authorization_header") == Some(true)
            || opts.bool("pass_authorization_header") == Some(true),
        whitelist_domains: opts.list("whitelist_domains"),
        skip_provider_button: opts.bool("skip_provider_button").filter(|b| !b),
        pass_user_headers: opts.bool("pass_user_headers").filter(|b| !b),
        set_xauthrequest: opts.bool("set_xauthrequest").filter(|b| !b),
        prefer_email_to_user: opts.bool("prefer_email_to_user") == Some(true),
        ..AuthOut::default()
    };
    a.skip_auth_routes = opts.list("skip_auth_routes");
    a.skip_auth_routes.extend(opts.list("skip_auth_regex"));
    if opts.bool("skip_auth_preflight") == Some(true) {
        a.skip_auth_routes.push("OPTIONS=.*".to_owned());
    }
    if kind == "github" {
        let org = opts.str("github_org").map(str::to_owned);
        let teams = opts.list("github_team");
        if teams.is_empty() {
            a.github_org.extend(org);
        } else {
            for t in teams {
                match (t.split_once(':'), &org) {
                    (Some((o, slug)), _) => a.github_team.push(format!("{o}/{slug}")),
                    (None, Some(o)) => a.github_team.push(format!("{o}/{t}")),
                    (None, None) => ctx.findings.push(Finding::unmapped(
                        subject,
                        "github_team",
                        &format!("team {t} without an org"),
                    )),
                }
            }
        }
    }
    if let Some(file) = opts.str("authenticated_emails_file") {
        match std::fs::read_to_string(file) {
            Ok(text) => {
                a.allowed_emails.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_owned),
                );
                ctx.findings.push(Finding::info(
                    subject,
                    &format!(
                        "the {} emails of {file} were copied into allowed_emails (the file is not watched)",
                        a.allowed_emails.len()
                    ),
                ));
            }
            Err(e) => ctx.findings.push(Finding::unmapped(
                subject,
                "authenticated_emails_file",
                &format!("{file} could not be read here ({e}): copy its addresses into auth.allowed_emails"),
            )),
        }
    }
    a.allowed_emails.sort();
    a.allowed_emails.dedup();
    a
}

/// An app file name: lower-case letters, digits, `-`, `_`, `.`.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches(['-', '.']).to_owned();
    if s.is_empty() {
        "app".to_owned()
    } else {
        s
    }
}
