//! oauth2-proxy's alpha configuration (YAML: `providers`, `upstreamConfig`, `server`,
//! `injectRequestHeaders`, `injectResponseHeaders`), turned into the legacy option names so one
//! mapping serves both. Keys without a legacy equivalent are kept under their YAML path and
//! reported.

use serde_yaml::Value;

use super::cmdline::scalar;
use super::RawOpt;

/// Legacy option of a provider key (`oidcConfig.issuerURL` → `oidc_issuer_url`).
const PROVIDER_KEYS: &[(&str, &str)] = &[
    ("provider", "provider"),
    ("clientID", "client_id"),
    ("clientSecret", "client_secret"),
    ("clientSecretFile", "client_secret_file"),
    ("scope", "scope"),
    ("allowedGroups", "allowed_groups"),
    ("caFiles", "provider_ca_files"),
    ("name", "provider_display_name"),
    ("loginURL", "login_url"),
    ("redeemURL", "redeem_url"),
    ("validateURL", "validate_url"),
    ("profileURL", "profile_url"),
    ("code_challenge_method", "code_challenge_method"),
    ("codeChallengeMethod", "code_challenge_method"),
    ("oidcConfig.issuerURL", "oidc_issuer_url"),
    ("oidcConfig.groupsClaim", "oidc_groups_claim"),
    ("oidcConfig.emailClaim", "oidc_email_claim"),
    ("oidcConfig.audienceClaims", "oidc_audience_claims"),
    ("oidcConfig.extraAudiences", "oidc_extra_audiences"),
    ("oidcConfig.insecureSkipNonce", "insecure_oidc_skip_nonce"),
    (
        "oidcConfig.insecureAllowUnverifiedEmail",
        "insecure_oidc_allow_unverified_email",
    ),
    ("oidcConfig.jwksURL", "oidc_jwks_url"),
    ("oidcConfig.skipDiscovery", "skip_oidc_discovery"),
    ("githubConfig.org", "github_org"),
    ("githubConfig.team", "github_team"),
    ("githubConfig.repo", "github_repo"),
    ("githubConfig.users", "github_users"),
    ("googleConfig.groups", "google_groups"),
    ("googleConfig.adminEmail", "google_admin_email"),
    ("azureConfig.tenant", "azure_tenant"),
];

/// Parses an alpha configuration file.
pub(crate) fn parse(text: &str, origin: &str) -> Result<Vec<RawOpt>, String> {
    let root: Value = serde_yaml::from_str(text).map_err(|e| format!("alpha config: {e}"))?;
    let mut out = Vec::new();
    let at = |path: &str| format!("{origin}: {path}");
    let providers = root
        .get("providers")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    if providers.len() > 1 {
        out.push(RawOpt::new(
            "alpha:providers[1..]",
            vec![format!("{} providers", providers.len())],
            at("providers"),
        ));
    }
    if let Some(p) = providers.first() {
        let mut flat = Vec::new();
        flatten("", p, &mut flat);
        for (path, values) in flat {
            let name = PROVIDER_KEYS
                .iter()
                .find(|(k, _)| *k == path)
                .map(|(_, n)| (*n).to_owned());
            let name = name.unwrap_or_else(|| format!("alpha:providers[0].{path}"));
            let values = if name == "scope" {
                vec![values.join(" ")]
            } else {
                values
            };
            if path != "id" {
                out.push(RawOpt::new(&name, values, at(&format!("providers[0].{path}"))));
            }
        }
    }
    for (i, u) in root
        .get("upstreamConfig")
        .and_then(|c| c.get("upstreams"))
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = u.get("path").and_then(scalar).unwrap_or_else(|| "/".to_owned());
        let target = match (u.get("uri").and_then(scalar), u.get("static").and_then(Value::as_bool)) {
            (Some(uri), _) => format!("{}{}", uri.trim_end_matches('/'), path),
            (None, Some(true)) => format!("static://{}", u.get("staticCode").and_then(scalar).unwrap_or_default()),
            _ => String::new(),
        };
        out.push(RawOpt::new(
            "upstreams",
            vec![target],
            at(&format!("upstreamConfig.upstreams[{i}]")),
        ));
    }
    let server = root.get("server");
    if let Some(addr) = server
        .and_then(|s| s.get("bindAddress").or_else(|| s.get("BindAddress")))
        .and_then(scalar)
    {
        out.push(RawOpt::new("http_address", vec![addr], at("server.bindAddress")));
    }
    for section in ["injectRequestHeaders", "injectResponseHeaders"] {
        for h in root.get(section).and_then(Value::as_sequence).into_iter().flatten() {
            let name = h.get("name").and_then(scalar).unwrap_or_default();
            out.push(header(section, &name, h, at(&format!("{section}[{name}]"))));
        }
    }
    Ok(out)
}

/// An injected header: the standard identity headers are what authgate sends anyway.
fn header(section: &str, name: &str, h: &Value, origin: String) -> RawOpt {
    let claim = serde_yaml::to_string(h).unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    if lower == "authorization" && claim.contains("id_token") {
        return RawOpt::new("set_authorization_header", vec!["true".into()], origin);
    }
    if claim.contains("access_token") {
        return RawOpt::new("pass_access_token", vec!["true".into()], origin);
    }
    let standard = [
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-preferred-username",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-groups",
        "x-auth-request-preferred-username",
    ];
    if standard.contains(&lower.as_str()) {
        return RawOpt::new("set_xauthrequest", vec!["true".into()], origin);
    }
    RawOpt::new(
        &format!("alpha:{section}[{name}]"),
        vec![claim.trim().to_owned()],
        origin,
    )
}

/// `a: {b: x}` → `("a.b", [x])`; lists of scalars become several values.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Vec<String>)>) {
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                let key = scalar(k).unwrap_or_default();
                let path = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, v, out);
            }
        }
        Value::Sequence(items) => out.push((prefix.to_owned(), items.iter().filter_map(scalar).collect())),
        other => out.push((prefix.to_owned(), scalar(other).into_iter().collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_upstreams_and_headers() {
        let text = "server:\n  bindAddress: \"0.0.0.0:4180\"\nupstreamConfig:\n  upstreams:\n    - id: httpbin\n      path: /\n      uri: http://httpbin\n\
                    injectRequestHeaders:\n  - name: X-Forwarded-User\n    values:\n      - claimSource:\n          claim: user\n\
                    providers:\n  - id: oidc\n    provider: oidc\n    clientSecret: s\n    clientID: oauth2-proxy\n    oidcConfig:\n      issuerURL: http://dex\n      userIDClaim: oid\n";
        let opts = parse(text, "a").unwrap();
        let names: Vec<&str> = opts.iter().map(|o| o.name.as_str()).collect();
        assert!(names.contains(&"oidc_issuer_url"), "{names:?}");
        assert!(names.contains(&"client_secret"));
        assert!(names.contains(&"alpha:providers[0].oidcConfig.userIDClaim"));
        let up = opts.iter().find(|o| o.name == "upstreams").unwrap();
        assert_eq!(up.values, vec!["http://httpbin/"]);
        assert!(names.contains(&"set_xauthrequest"));
    }
}
