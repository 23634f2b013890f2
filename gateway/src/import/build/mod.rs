//! Mapping: every instance's options through the table into providers, app files, the shared
//! cookie and session settings, and findings for everything that needs a human.

mod app;
mod opts;
mod provider;
pub(crate) mod shared;

use std::collections::BTreeMap;

use super::table::Status;
use super::writer::{AppOut, GatewayOut, ProviderOut};
use super::{CertNeed, Instance, Inventory};
pub(crate) use opts::{Opts, SecretSource};

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    /// Something the sidecar did that the output does not do (counts for `--strict`).
    Unmapped,
    /// Something to do before switching (set a variable, copy a certificate, edit a Service).
    Action,
    /// Good to know.
    Info,
}

/// One thing the report tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub severity: Severity,
    /// The instance or object it is about.
    pub subject: String,
    /// The option, by its config key, when it is about one.
    pub option: Option<String>,
    pub message: String,
}

impl Finding {
    /// An unmapped option or value.
    pub(crate) fn unmapped(subject: &str, option: &str, message: &str) -> Self {
        Self {
            severity: Severity::Unmapped,
            subject: subject.to_owned(),
            option: Some(option.to_owned()),
            message: message.to_owned(),
        }
    }

    /// Something to do.
    pub(crate) fn action(subject: &str, message: &str) -> Self {
        Self {
            severity: Severity::Action,
            subject: subject.to_owned(),
            option: None,
            message: message.to_owned(),
        }
    }

    /// Good to know.
    pub(crate) fn info(subject: &str, message: &str) -> Self {
        Self {
            severity: Severity::Info,
            subject: subject.to_owned(),
            option: None,
            message: message.to_owned(),
        }
    }

    /// Something the inputs refer to but do not contain (options may be missing).
    pub(crate) fn unresolved(subject: &str, what: &str) -> Self {
        Self {
            severity: Severity::Unmapped,
            subject: subject.to_owned(),
            option: None,
            message: format!("not found among the inputs: {what}"),
        }
    }
}

/// An environment variable the gateway needs, and where its value is today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvNeed {
    pub var: String,
    pub purpose: String,
    /// Where the old value is (one line each); empty: make a new one.
    pub sources: Vec<String>,
}

/// One option of one instance, for the report's inventory.
#[derive(Debug, Clone)]
pub(crate) struct OptionUse {
    pub subject: String,
    pub option: String,
    pub shown: String,
    pub status: String,
    pub to: String,
}

/// Everything the writer and the report need.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub gateway: GatewayOut,
    pub apps: Vec<AppOut>,
    pub env: Vec<EnvNeed>,
    pub findings: Vec<Finding>,
    pub uses: Vec<OptionUse>,
    /// Redirect URIs to register, by provider.
    pub callbacks: BTreeMap<String, Vec<String>>,
    pub certs: Vec<CertNeed>,
}

impl Plan {
    /// Findings that make `--strict` fail.
    pub(crate) fn unmapped(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Unmapped)
            .count()
    }
}

/// State shared while mapping instances.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    /// Providers by name, with the identity (type, issuer, client id) they were merged on.
    pub providers: BTreeMap<String, (ProviderOut, String)>,
    pub env: Vec<EnvNeed>,
    pub findings: Vec<Finding>,
    pub uses: Vec<OptionUse>,
    pub apps: Vec<AppOut>,
    pub callbacks: BTreeMap<String, Vec<String>>,
    /// Per instance: its resolved options (for the gateway-wide cookie and session settings).
    pub resolved: Vec<(String, Opts)>,
}

impl Ctx {
    /// Records that `var` must hold `purpose`, from `source`.
    pub(crate) fn need_env(&mut self, var: &str, purpose: &str, source: Option<String>) {
        let idx = match self.env.iter().position(|e| e.var == var) {
            Some(i) => i,
            None => {
                self.env.push(EnvNeed {
                    var: var.to_owned(),
                    purpose: purpose.to_owned(),
                    sources: Vec::new(),
                });
                self.env.len() - 1
            }
        };
        if let Some(s) = source {
            if !self.env[idx].sources.contains(&s) {
                self.env[idx].sources.push(s);
            }
        }
    }
}

/// Maps the whole inventory.
pub(crate) fn plan(inventory: Inventory) -> Plan {
    let mut ctx = Ctx::default();
    ctx.findings.extend(inventory.notes);
    // Instances serving a host's root first: one serving only some paths of that host then
    // becomes a route of its app, whatever the order of the inputs.
    let mut instances: Vec<&Instance> = inventory.instances.iter().collect();
    instances.sort_by_key(|i| !i.sites.is_empty() && i.sites.iter().all(|s| !s.paths.is_empty()));
    for inst in instances {
        map_instance(inst, &mut ctx);
    }
    let gateway = shared::gateway(&mut ctx, &inventory.certs);
    let mut findings = std::mem::take(&mut ctx.findings);
    findings.sort_by(|a, b| (a.severity, &a.subject).cmp(&(b.severity, &b.subject)));
    findings.dedup();
    ctx.apps.sort_by(|a, b| a.name.cmp(&b.name));
    Plan {
        gateway,
        apps: ctx.apps,
        env: ctx.env,
        findings,
        uses: ctx.uses,
        callbacks: ctx.callbacks,
        certs: inventory.certs,
    }
}

fn map_instance(inst: &Instance, ctx: &mut Ctx) {
    ctx.findings.extend(inst.notes.iter().cloned());
    let opts = Opts::collect(&inst.opts);
    inventory_and_checks(inst, &opts, ctx);
    let provider = provider::map(inst, &opts, ctx);
    app::map(inst, &opts, provider, ctx);
    ctx.resolved.push((inst.origin.clone(), opts));
}

/// Lists every option of `inst` with its status, and reports those not carried over.
fn inventory_and_checks(inst: &Instance, opts: &Opts, ctx: &mut Ctx) {
    let subject = inst.origin.as_str();
    for (toml, val) in &opts.vals {
        let problem = app::value_problem(toml, val, opts);
        let trivial = val.secret.is_none()
            && val.values.iter().all(|v| {
                v.is_empty()
                    || v.eq_ignore_ascii_case("false")
                    || (*toml == "cookie_samesite" && v.eq_ignore_ascii_case("lax"))
            });
        let status = match (val.entry.status, &problem) {
            (_, Some(_)) => "unmapped (value)".to_owned(),
            (Status::Unsupported, _) if trivial => "not needed (off)".to_owned(),
            (s, None) => s.label().to_owned(),
        };
        if let Some(message) = problem {
            ctx.findings.push(Finding::unmapped(subject, toml, &message));
        } else if val.entry.status == Status::Unsupported && !trivial {
            ctx.findings.push(Finding::unmapped(
                subject,
                toml,
                &format!("unsupported: {} Nearest: {}.", val.entry.note, val.entry.to).replace(":  ", ": "),
            ));
        }
        if let Some(r) = &val.unresolved {
            ctx.findings.push(Finding::unmapped(
                subject,
                toml,
                &format!("its value is {r}, unknown here: set it by hand"),
            ));
        }
        ctx.uses.push(OptionUse {
            subject: subject.to_owned(),
            option: (*toml).to_owned(),
            shown: val.shown(),
            status,
            to: val.entry.to.to_owned(),
        });
    }
    for raw in &opts.unknown {
        let (status, message) = match raw.name.as_str() {
            "(variable)" => (
                "ignored",
                format!("{} is not an oauth2-proxy variable", raw.values.join("")),
            ),
            "(argument)" => (
                "unknown",
                format!("positional argument {:?} is not an option", raw.values.join("")),
            ),
            n if n.starts_with("alpha:") => (
                "unknown",
                "alpha configuration key without an authgate equivalent".to_owned(),
            ),
            _ => (
                "unknown",
                "not an option of oauth2-proxy v7.15 (typo, or a newer option)".to_owned(),
            ),
        };
        if status == "ignored" {
            ctx.findings.push(Finding::info(subject, &message));
        } else {
            ctx.findings.push(Finding::unmapped(subject, &raw.name, &message));
        }
        ctx.uses.push(OptionUse {
            subject: subject.to_owned(),
            option: raw.name.clone(),
            shown: if raw.name == "(variable)" {
                raw.values.join("")
            } else {
                "(not shown)".to_owned()
            },
            status: status.to_owned(),
            to: "none".to_owned(),
        });
    }
}
