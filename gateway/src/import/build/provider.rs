//! Providers: oauth2-proxy's `provider` and its settings become an authgate provider; sidecars
//! with the same type, issuer and client id share one.

use super::super::writer::ProviderOut;
use super::super::Instance;
use super::{Ctx, Finding, Opts, SecretSource};

/// Maps the provider of `inst`; returns its name and authgate type, or `None` (reported) when
/// it cannot be mapped.
pub(crate) fn map(inst: &Instance, opts: &Opts, ctx: &mut Ctx) -> Option<(String, String)> {
    let subject = inst.origin.as_str();
    let (kind, issuer) = kind_and_issuer(opts, subject, ctx)?;
    if let Some(i) = issuer.as_deref().filter(|i| !i.starts_with("https://")) {
        ctx.findings.push(Finding::unmapped(
            subject,
            "oidc_issuer_url",
            &format!(
                "issuer {i} is not https://: authgate talks to providers over TLS only; its apps were NOT written"
            ),
        ));
        return None;
    }
    let Some(client_id) = opts.str("client_id").map(str::to_owned) else {
        ctx.findings.push(Finding::unmapped(
            subject,
            "client_id",
            "no client id: its apps were NOT written",
        ));
        return None;
    };
    let mut out = ProviderOut {
        kind: kind.to_owned(),
        issuer_url: issuer.clone(),
        client_id: client_id.clone(),
        client_secret_env: String::new(),
        scopes: scopes(opts, kind),
        ca_file: opts.list("provider_ca_files").first().cloned(),
        groups_claim: opts
            .str("oidc_groups_claim")
            .filter(|c| *c != "groups" && kind != "github")
            .map(str::to_owned),
        login_url: None,
        api_url: None,
        display_name: opts.str("provider_display_name").map(str::to_owned),
        extra_jwt_issuers: if kind == "github" {
            Vec::new()
        } else {
            opts.list("extra_jwt_issuers")
        },
    };
    if opts.list("provider_ca_files").len() > 1 {
        ctx.findings.push(Finding::action(
            subject,
            "several provider_ca_files: concatenate them into the one ca_file written",
        ));
    }
    if kind == "github" {
        github_enterprise(opts, &mut out);
    }
    let identity = format!("{kind} {} {client_id}", issuer.unwrap_or_default());
    let name = merge(out, &identity, ctx, subject);
    let env = ctx
        .providers
        .get(&name)
        .map(|(p, _)| p.client_secret_env.clone())
        .unwrap_or_default();
    let source = match (opts.secret("client_secret"), opts.secret("client_secret_file")) {
        (Some(s @ SecretSource::Literal { .. }), _) => Some(s.describe()),
        (Some(s), _) | (None, Some(s)) => Some(format!("{}: {}", subject, s.describe())),
        (None, None) => {
            ctx.findings.push(Finding::action(
                subject,
                &format!("no client secret among the inputs: set {env} from the provider's app registration"),
            ));
            None
        }
    };
    ctx.need_env(
        &env,
        &format!("client secret of provider `{name}` (client id `{client_id}`)"),
        source,
    );
    if let Some(SecretSource::Literal { .. }) = opts.secret("client_secret") {
        ctx.findings.push(Finding::action(
            subject,
            "the client secret is written in plain text in the input: move it into a Secret and rotate it",
        ));
    }
    Some((name, kind.to_owned()))
}

/// The authgate type and issuer of oauth2-proxy's `provider`, or `None` (reported).
fn kind_and_issuer(opts: &Opts, subject: &str, ctx: &mut Ctx) -> Option<(&'static str, Option<String>)> {
    let provider = opts.str("provider").unwrap_or("google").to_ascii_lowercase();
    let kind = match provider.as_str() {
        "oidc" | "keycloak-oidc" | "adfs" => match opts.str("oidc_issuer_url") {
            Some(i) => ("oidc", Some(i.trim_end_matches('/').to_owned())),
            None => {
                ctx.findings.push(Finding::unmapped(
                    subject,
                    "oidc_issuer_url",
                    "provider oidc without an issuer: authgate needs discovery; set issuer_url by hand",
                ));
                return None;
            }
        },
        "google" => (
            "google",
            opts.str("oidc_issuer_url")
                .map(str::to_owned)
                .filter(|i| i != "https://accounts.google.com"),
        ),
        "entra-id" | "azure" => match entra_issuer(opts) {
            Ok(i) => ("entra", Some(i)),
            Err(message) => {
                ctx.findings.push(Finding::unmapped(subject, "provider", &message));
                return None;
            }
        },
        "github" => ("github", None),
        other => {
            let nearest = if ["gitlab", "keycloak", "gitea", "nextcloud", "cidaas", "digitalocean"].contains(&other) {
                "nearest: type oidc with its issuer URL, if it speaks OpenID Connect"
            } else {
                "nearest: type oidc, if the provider speaks OpenID Connect"
            };
            ctx.findings.push(Finding::unmapped(
                subject,
                "provider",
                &format!("provider `{other}` has no authgate type ({nearest}); its apps were NOT written (they would be public)"),
            ));
            return None;
        }
    };
    Some(kind)
}

/// oauth2-proxy's scopes (space separated); `groups` added for OIDC group checks as it does.
fn scopes(opts: &Opts, kind: &str) -> Option<Vec<String>> {
    match opts.str("scope") {
        Some(s) => Some(s.split_whitespace().map(str::to_owned).collect()),
        None if kind == "oidc" && !opts.list("allowed_groups").is_empty() => {
            Some(["openid", "email", "profile", "groups"].map(str::to_owned).to_vec())
        }
        None => None,
    }
}

fn entra_issuer(opts: &Opts) -> Result<String, String> {
    if let Some(i) = opts.str("oidc_issuer_url") {
        return Ok(i.trim_end_matches('/').to_owned());
    }
    match opts.str("azure_tenant") {
        Some(t) if !["common", "organizations", "consumers"].contains(&t) => {
            Ok(format!("https://login.microsoftonline.com/{t}/v2.0"))
        }
        _ => Err("Entra ID without a tenant (multi-tenant `common`): authgate needs the tenant-specific issuer https://login.microsoftonline.com/<tenant>/v2.0; its apps were NOT written".to_owned()),
    }
}

/// GitHub Enterprise: `login_url`/`redeem_url` give the login base, `validate_url` the API base.
fn github_enterprise(opts: &Opts, out: &mut ProviderOut) {
    let base = |u: &str| url::Url::parse(u).ok().map(|u| u.origin().ascii_serialization());
    if let Some(login) = opts.str("login_url").or(opts.str("redeem_url")).and_then(base) {
        if login != "https://github.com" {
            out.login_url = Some(login);
        }
    }
    if let Some(v) = opts.str("validate_url") {
        if let Ok(u) = url::Url::parse(v) {
            let origin = u.origin().ascii_serialization();
            if origin != "https://api.github.com" {
                let path = u.path().trim_end_matches('/').trim_end_matches("/user");
                out.api_url = Some(format!("{origin}{path}"));
            }
        }
    }
}

/// Adds `out` under a new name, or returns the name of the provider with the same identity.
fn merge(mut out: ProviderOut, identity: &str, ctx: &mut Ctx, subject: &str) -> String {
    if let Some((name, (existing, _))) = ctx.providers.iter_mut().find(|(_, (_, id))| id == identity) {
        let (mine, theirs) = (effective_scopes(&out), effective_scopes(existing));
        if mine != theirs {
            let mut union = theirs;
            union.extend(mine.into_iter().filter(|s| !existing_has(existing, s)));
            existing.scopes = Some(union);
        }
        let mut cmp = out.clone();
        cmp.client_secret_env = existing.client_secret_env.clone();
        cmp.scopes = existing.scopes.clone();
        if &cmp != existing {
            ctx.findings.push(Finding::info(
                subject,
                &format!("merged into provider `{name}` (same type, issuer and client id) although its CA or claims differ; the first sidecar's settings were kept"),
            ));
        }
        return name.clone();
    }
    let base = out.kind.clone();
    let mut name = base.clone();
    let mut n = 2;
    while ctx.providers.contains_key(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    out.client_secret_env = format!("AUTHGATE_{}_CLIENT_SECRET", name.to_ascii_uppercase().replace('-', "_"));
    ctx.providers.insert(name.clone(), (out, identity.to_owned()));
    name
}

/// The scopes a provider requests (its own, or authgate's default for its type).
fn effective_scopes(p: &ProviderOut) -> Vec<String> {
    p.scopes.clone().unwrap_or_else(|| {
        let default: &[&str] = if p.kind == "github" {
            &["read:user", "user:email", "read:org"]
        } else {
            &["openid", "email", "profile"]
        };
        default.iter().map(|s| (*s).to_owned()).collect()
    })
}

fn existing_has(p: &ProviderOut, scope: &str) -> bool {
    effective_scopes(p).iter().any(|s| s == scope)
}
