//! What the sidecars had each and the gateway has once: the cookie, the session store, the
//! listeners and certificates.

use std::collections::BTreeSet;

use super::super::writer::{
    CertOut, CookieOut, GatewayOut, ListenOut, RedisOut, RedisTlsOut, SentinelOut, ServerOut, SessionsOut, TlsOut,
};
use super::super::CertNeed;
use super::{Ctx, Finding, Opts};

/// The cookie keyring's variable.
pub(crate) const COOKIE_ENV: &str = "AUTHGATE_COOKIE_SECRETS";
const REDIS_PASSWORD_ENV: &str = "AUTHGATE_REDIS_PASSWORD";
const SENTINEL_PASSWORD_ENV: &str = "AUTHGATE_SENTINEL_PASSWORD";

/// `redis://user:pass@host` → `redis://user@host` (for the output and the report).
pub(crate) fn without_password(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut u) if u.password().is_some() && u.scheme().starts_with("redis") => {
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => value.to_owned(),
    }
}

/// Assembles `gateway.yaml` from every instance's shared settings.
pub(crate) fn gateway(ctx: &mut Ctx, certs: &[CertNeed]) -> GatewayOut {
    let cookie = cookie(ctx);
    let sessions = sessions(ctx);
    let certificates = if certs.is_empty() {
        vec![CertOut {
            cert_file: "certs/tls.crt".to_owned(),
            key_file: "certs/tls.key".to_owned(),
        }]
    } else {
        certs
            .iter()
            .map(|c| CertOut {
                cert_file: format!("certs/{}.crt", c.secret),
                key_file: format!("certs/{}.key", c.secret),
            })
            .collect()
    };
    GatewayOut {
        listen: ListenOut {
            https: "0.0.0.0:8443".to_owned(),
            http: "0.0.0.0:8080".to_owned(),
            admin: "127.0.0.1:9090".to_owned(),
        },
        tls: TlsOut { certificates },
        apps_dir: "apps.d".to_owned(),
        server: trusted_proxies(ctx).map(|trusted_proxies| ServerOut { trusted_proxies }),
        cookie: (!ctx.providers.is_empty()).then_some(cookie),
        providers: ctx.providers.iter().map(|(k, (p, _))| (k.clone(), p.clone())).collect(),
        sessions,
    }
}

/// The one value most instances agree on; disagreements are reported.
fn agreed(ctx: &mut Ctx, toml: &str, what: &str) -> Option<String> {
    let values: Vec<(String, String)> = ctx
        .resolved
        .iter()
        .filter_map(|(who, o)| o.str(toml).map(|v| (who.clone(), v.to_owned())))
        .collect();
    let distinct: BTreeSet<&String> = values.iter().map(|(_, v)| v).collect();
    if distinct.len() > 1 {
        let list: Vec<String> = values.iter().map(|(w, v)| format!("{v} ({w})")).collect();
        ctx.findings.push(Finding::info(
            "gateway",
            &format!(
                "the sidecars disagree on {toml} ({what}): {}; the gateway has one, the first was kept",
                list.join("; ")
            ),
        ));
    }
    values.into_iter().next().map(|(_, v)| v)
}

fn cookie(ctx: &mut Ctx) -> CookieOut {
    let name = agreed(ctx, "cookie_name", "cookie name")
        .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    let domain = {
        let firsts: Vec<(String, Opts)> = ctx.resolved.clone();
        let mut seen = Vec::new();
        for (who, o) in &firsts {
            if let Some(d) = o.list("cookie_domains").first() {
                seen.push((who.clone(), d.split(':').next().unwrap_or_default().to_owned()));
            }
        }
        let distinct: BTreeSet<&String> = seen.iter().map(|(_, d)| d).collect();
        if distinct.len() > 1 {
            ctx.findings.push(Finding::info("gateway", &format!("several cookie domains: {distinct:?}; the first was kept. Apps outside it get host-only cookies (planned: a per-app cookie domain)")));
        }
        seen.into_iter()
            .next()
            .map(|(_, d)| if d.starts_with('.') { d } else { format!(".{d}") })
    };
    let expire = agreed(ctx, "cookie_expire", "session lifetime").filter(|d| duration_ok(d));
    let refresh = agreed(ctx, "cookie_refresh", "refresh period").filter(|d| duration_ok(d) && !is_zero(d));
    let refresh = match (&refresh, &expire) {
        (Some(r), Some(e)) if secs(r) >= secs(e) => {
            ctx.findings.push(Finding::info(
                "gateway",
                &format!("cookie_refresh {r} is not shorter than cookie_expire {e}: authgate's default 1h was kept"),
            ));
            None
        }
        (Some(r), None) if secs(r) >= 168 * 3600 => None,
        _ => refresh,
    };
    let mut sources = BTreeSet::new();
    let mut lines = Vec::new();
    for (who, o) in &ctx.resolved {
        if let Some(s) = o.secret("cookie_secret").or(o.secret("cookie_secret_file")) {
            sources.insert(s.identity());
            lines.push(format!("{who}: {}", s.describe()));
        }
    }
    let mut note = "a new keyring: `openssl rand -base64 32` (authgate cannot read oauth2-proxy cookies, so every user signs in once after the move)".to_owned();
    if sources.len() > 1 {
        note.push_str(&format!(
            "; the sidecars used {} different cookie secrets, so users already signed in once per app",
            sources.len()
        ));
        ctx.findings.push(Finding::info(
            "gateway",
            &format!("{} different cookie secrets across the sidecars: authgate has one keyring for all apps; users sign in once more after the move (and from then on once per provider and cookie domain)", sources.len()),
        ));
    }
    ctx.need_env(COOKIE_ENV, &note, None);
    for l in lines {
        ctx.findings
            .push(Finding::info("gateway", &format!("old cookie secret, not reused: {l}")));
    }
    let samesite = agreed(ctx, "cookie_samesite", "cookie SameSite")
        .map(|v| v.to_ascii_lowercase())
        .filter(|v| matches!(v.as_str(), "strict" | "none" | ""));
    let secure = agreed(ctx, "cookie_secure", "cookie Secure").and_then(|v| match v.to_ascii_lowercase().as_str() {
        "false" | "0" => Some(false),
        _ => None,
    });
    CookieOut {
        name,
        domain,
        secrets_env: COOKIE_ENV.to_owned(),
        expire,
        refresh,
        samesite,
        secure,
    }
}

fn duration_ok(d: &str) -> bool {
    humantime::parse_duration(d).is_ok()
}
fn is_zero(d: &str) -> bool {
    secs(d) == 0
}
fn secs(d: &str) -> u64 {
    humantime::parse_duration(d).map(|d| d.as_secs()).unwrap_or(0)
}

/// The session store: Redis when any sidecar used it (settings of the first).
fn sessions(ctx: &mut Ctx) -> Option<SessionsOut> {
    let resolved = ctx.resolved.clone();
    let (who, o) = resolved
        .iter()
        .find(|(_, o)| o.str("session_store_type") == Some("redis"))?;
    let mut redis = RedisOut::default();
    if o.bool("redis_use_sentinel") == Some(true) {
        let addresses = o
            .list("redis_sentinel_connection_urls")
            .iter()
            .map(|u| {
                url::Url::parse(u)
                    .ok()
                    .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port().unwrap_or(26379))))
                    .unwrap_or_else(|| u.clone())
            })
            .collect();
        redis.sentinel = Some(SentinelOut {
            master: o.str("redis_sentinel_master_name").unwrap_or("mymaster").to_owned(),
            addresses,
            password_env: o
                .secret("redis_sentinel_password")
                .map(|_| SENTINEL_PASSWORD_ENV.to_owned()),
        });
        if let Some(s) = o.secret("redis_sentinel_password") {
            ctx.need_env(
                SENTINEL_PASSWORD_ENV,
                "password of the Redis sentinels",
                Some(format!("{who}: {}", s.describe())),
            );
        }
    } else if let Some(url) = o.str("redis_connection_url") {
        let has_password = url::Url::parse(url).ok().is_some_and(|u| u.password().is_some());
        redis.url = Some(without_password(url));
        if has_password && o.secret("redis_password").is_none() {
            redis.password_env = Some(REDIS_PASSWORD_ENV.to_owned());
            ctx.need_env(
                REDIS_PASSWORD_ENV,
                "password of the Redis server",
                Some(format!(
                    "{who}: the password inside redis_connection_url (removed from the output)"
                )),
            );
        }
    } else {
        ctx.findings.push(Finding::unmapped(
            who,
            "session_store_type",
            "redis without a connection URL or sentinels",
        ));
        return None;
    }
    if let Some(s) = o.secret("redis_password") {
        redis.password_env = Some(REDIS_PASSWORD_ENV.to_owned());
        ctx.need_env(
            REDIS_PASSWORD_ENV,
            "password of the Redis data nodes",
            Some(format!("{who}: {}", s.describe())),
        );
    }
    if let Some(ca) = o.str("redis_ca_path") {
        redis.tls = Some(RedisTlsOut { ca_file: ca.to_owned() });
    }
    Some(SessionsOut {
        store: "redis".to_owned(),
        redis: Some(redis),
    })
}

/// Every sidecar's `trusted_proxy_ips`, as networks (`10.0.0.1` → `10.0.0.1/32`).
fn trusted_proxies(ctx: &mut Ctx) -> Option<Vec<String>> {
    let mut nets: Vec<String> = Vec::new();
    for (_, o) in &ctx.resolved {
        for ip in o.list("trusted_proxy_ips") {
            let net = match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(_)) => format!("{ip}/32"),
                Ok(std::net::IpAddr::V6(_)) => format!("{ip}/128"),
                Err(_) => ip.clone(),
            };
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
    }
    (!nets.is_empty()).then_some(nets)
}
