//! `import-report.md`: what was written, what to do before switching, and every option of
//! every input with what became of it. Secret values never appear: only where they are.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::build::{Plan, Severity};

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Renders the report.
pub(crate) fn render(plan: &Plan, inputs: &[PathBuf]) -> String {
    let mut o = String::from("# authgate import report\n\n");
    let unmapped = plan.unmapped();
    let actions = plan.findings.iter().filter(|f| f.severity == Severity::Action).count();
    let _ = writeln!(
        o,
        "Inputs: {}.\n\nWritten: `gateway.yaml` ({} providers) and {} app files in `apps.d/`. \
         {unmapped} options or values are **not carried over** (`--strict` fails on them), {actions} actions are listed below.\n",
        inputs.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", "),
        plan.gateway.providers.len(),
        plan.apps.len()
    );
    before_you_switch(&mut o, plan);
    o.push_str("\n## Not carried over\n\n");
    if unmapped == 0 {
        o.push_str("Nothing: every option was mapped.\n");
    } else {
        o.push_str("| where | option | why, and the nearest equivalent |\n|---|---|---|\n");
        for f in plan.findings.iter().filter(|f| f.severity == Severity::Unmapped) {
            let _ = writeln!(
                o,
                "| {} | `{}` | {} |",
                cell(&f.subject),
                f.option.as_deref().unwrap_or("-"),
                cell(&f.message)
            );
        }
    }
    o.push_str("\n## Apps\n\n| app file | host | upstream | provider | from |\n|---|---|---|---|---|\n");
    for a in &plan.apps {
        let _ = writeln!(
            o,
            "| `apps.d/{}.yaml` | `{}` | `{}` | `{}` | {} |",
            a.name,
            a.host,
            a.upstreams.join(", "),
            a.auth.provider,
            cell(&a.sources.join("; "))
        );
    }
    o.push_str("\n## Good to know\n\n");
    for f in plan.findings.iter().filter(|f| f.severity == Severity::Info) {
        let _ = writeln!(o, "- {} — {}", f.subject, f.message);
    }
    o.push_str("\n## Every option\n");
    let mut last = "";
    for u in &plan.uses {
        if u.subject != last {
            let _ = write!(
                o,
                "\n### {}\n\n| option | value | status | authgate |\n|---|---|---|---|\n",
                u.subject
            );
            last = &u.subject;
        }
        let _ = writeln!(
            o,
            "| `{}` | {} | {} | {} |",
            u.option,
            cell(&u.shown),
            u.status,
            cell(&u.to)
        );
    }
    o
}

/// Variables to set, certificates to copy, redirect URIs to register, and other actions.
fn before_you_switch(o: &mut String, plan: &Plan) {
    o.push_str("## Before you switch\n\n### Environment variables\n\nSecrets are never written to these files: set each variable in the gateway's environment (for example from a Kubernetes Secret).\n\n| variable | holds | where the value is today |\n|---|---|---|\n");
    for e in &plan.env {
        let src = if e.sources.is_empty() {
            "make a new one".to_owned()
        } else {
            e.sources.join("<br>")
        };
        let _ = writeln!(o, "| `{}` | {} | {} |", e.var, cell(&e.purpose), cell(&src));
    }
    o.push_str("\n### Certificates\n\n");
    if plan.certs.is_empty() {
        o.push_str("No TLS secret was found: put the certificate and key for every host below into `certs/tls.crt` and `certs/tls.key` (or edit `tls.certificates`).\n");
    }
    for c in &plan.certs {
        let _ = writeln!(
            o,
            "- `certs/{s}.crt` / `certs/{s}.key` ({hosts}): `kubectl -n {ns} get secret {s} -o jsonpath='{{.data.tls\\.crt}}' | base64 -d > certs/{s}.crt` (and `tls\\.key` for the key)",
            s = c.secret,
            ns = c.namespace,
            hosts = c.hosts.join(", ")
        );
    }
    o.push_str("\n### Redirect URIs to register at the providers\n\n");
    for (p, urls) in &plan.callbacks {
        let _ = writeln!(
            o,
            "- `{p}`: {}",
            urls.iter().map(|u| format!("`{u}`")).collect::<Vec<_>>().join(", ")
        );
    }
    o.push('\n');
    for f in plan.findings.iter().filter(|f| f.severity == Severity::Action) {
        let _ = writeln!(o, "- {} — {}", f.subject, f.message);
    }
}
