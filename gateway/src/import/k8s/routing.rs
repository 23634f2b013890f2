//! Which hosts and paths reach an oauth2-proxy instance: Services selecting its pod, Istio
//! VirtualServices and Ingresses routing to those Services, ingress-nginx `auth-url`
//! annotations pointing at a central proxy; and the TLS secrets the gateway will need.

use serde_yaml::Value;

use super::super::build::Finding;
use super::super::{CertNeed, Instance, Site};
use super::{at, list_at, of_kind, str_at, Found, Object};

const AUTH_URL: &str = "nginx.ingress.kubernetes.io/auth-url";

/// Finds the Services of `inst`'s pod and the hosts routed to them.
pub(crate) fn attach(inst: &mut Instance, workload: &Object, objects: &[Object], notes: &mut Vec<Finding>) {
    let labels = workload
        .at("spec.template.metadata.labels")
        .or_else(|| workload.at("metadata.labels"))
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let app_port = loopback_upstream_port(inst).filter(|_| !inst.app_ports.is_empty());
    for svc in of_kind(objects, "Service").filter(|s| s.namespace == workload.namespace) {
        let Some(selector) = svc.at("spec.selector").and_then(Value::as_mapping) else {
            continue;
        };
        if selector.is_empty() || !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        let fqdn = format!("{}.{}.svc.cluster.local", svc.name, svc.namespace);
        inst.service_names.extend([
            svc.name.clone(),
            format!("{}.{}", svc.name, svc.namespace),
            format!("{}.{}.svc", svc.name, svc.namespace),
            fqdn.clone(),
        ]);
        let upstream = app_port.map(|port| {
            let named = inst.app_ports.iter().find(|(_, p)| *p == port).map(|(n, _)| n.clone());
            match service_port_for(svc, port, named.as_deref()) {
                Some(sp) => format!("{fqdn}:{sp}"),
                None => {
                    notes.push(Finding::action(
                        &inst.origin,
                        &format!(
                            "{} has no port for the app container's port {port} (it targets the sidecar): add `{{port: {port}, targetPort: {port}}}` to it before removing the sidecar",
                            svc.label()
                        ),
                    ));
                    format!("{fqdn}:{port}")
                }
            }
        });
        for (host, paths, origin) in routes_to(svc, objects) {
            let name = if inst.sites.is_empty() {
                inst.name.clone()
            } else {
                format!(
                    "{}-{}",
                    inst.name,
                    host.split('.').next().unwrap_or_default().trim_start_matches('*')
                )
            };
            if inst.sites.iter().any(|s| s.host == host) {
                continue;
            }
            inst.sites.push(Site {
                name,
                host,
                upstream: upstream.clone(),
                paths,
                origin,
            });
        }
    }
}

/// The port of a sidecar `--upstream` on loopback (the app container's port).
fn loopback_upstream_port(inst: &Instance) -> Option<u16> {
    let up = inst
        .opts
        .iter()
        .filter(|o| super::super::table::lookup(&o.name).is_some_and(|e| e.toml == "upstreams"))
        .flat_map(|o| o.values.iter())
        .next()?;
    let url = url::Url::parse(up).ok()?;
    let host = url.host_str()?;
    let loopback = ["127.0.0.1", "localhost", "0.0.0.0", "[::1]", "::1"].contains(&host);
    loopback.then(|| url.port_or_known_default()).flatten()
}

/// The Service port whose targetPort is the app container's port (by number or name).
fn service_port_for(svc: &Object, port: u16, name: Option<&str>) -> Option<u64> {
    list_at(&svc.body, "spec.ports").iter().find_map(|p| {
        let number = p.get("port").and_then(Value::as_u64)?;
        let target = p.get("targetPort");
        let hit = match target {
            None => number == u64::from(port),
            Some(Value::Number(n)) => n.as_u64() == Some(u64::from(port)),
            Some(Value::String(s)) => Some(s.as_str()) == name || s.parse::<u16>().ok() == Some(port),
            _ => false,
        };
        hit.then_some(number)
    })
}

/// `(host, non-root path prefixes, origin)` of every VirtualService and Ingress rule that
/// routes to `svc`.
fn routes_to(svc: &Object, objects: &[Object]) -> Vec<(String, Vec<String>, String)> {
    let mut out = Vec::new();
    for vs in of_kind(objects, "VirtualService") {
        let names = [
            format!("{}.{}", svc.name, svc.namespace),
            format!("{}.{}.svc", svc.name, svc.namespace),
            format!("{}.{}.svc.cluster.local", svc.name, svc.namespace),
        ];
        let mut paths = Vec::new();
        let mut hit = false;
        for http in list_at(&vs.body, "spec.http") {
            let to_svc = list_at(http, "route").iter().any(|r| {
                str_at(r, "destination.host")
                    .is_some_and(|h| names.contains(&h) || (h == svc.name && vs.namespace == svc.namespace))
            });
            if !to_svc {
                continue;
            }
            hit = true;
            paths.extend(
                list_at(http, "match")
                    .iter()
                    .filter_map(|m| str_at(m, "uri.prefix").or_else(|| str_at(m, "uri.exact"))),
            );
        }
        if hit {
            paths.retain(|p| p != "/");
            for host in list_at(&vs.body, "spec.hosts")
                .iter()
                .filter_map(super::super::cmdline::scalar)
            {
                out.push((host, paths.clone(), vs.label()));
            }
        }
    }
    for ing in of_kind(objects, "Ingress").filter(|i| i.namespace == svc.namespace) {
        for rule in list_at(&ing.body, "spec.rules") {
            let paths: Vec<String> = list_at(rule, "http.paths")
                .iter()
                .filter(|p| backend_service(p).as_deref() == Some(svc.name.as_str()))
                .map(|p| str_at(p, "path").unwrap_or_else(|| "/".to_owned()))
                .collect();
            if paths.is_empty() || has_auth_url(ing) {
                continue;
            }
            let host = str_at(rule, "host").unwrap_or_else(|| "*".to_owned());
            out.push((host, paths.into_iter().filter(|p| p != "/").collect(), ing.label()));
        }
    }
    out
}

fn backend_service(path: &Value) -> Option<String> {
    str_at(path, "backend.service.name").or_else(|| str_at(path, "backend.serviceName"))
}

fn backend_port(path: &Value) -> Option<String> {
    str_at(path, "backend.service.port.number")
        .or_else(|| str_at(path, "backend.service.port.name"))
        .or_else(|| str_at(path, "backend.servicePort"))
}

fn has_auth_url(ing: &Object) -> bool {
    at(&ing.body, "metadata.annotations")
        .and_then(|a| a.get(AUTH_URL))
        .is_some()
}

/// ingress-nginx's central pattern: every Ingress with an `auth-url` becomes sites of the
/// oauth2-proxy instance that URL reaches (by its routed host or its Service name).
pub(crate) fn central(found: &mut Found, objects: &[Object]) {
    for ing in of_kind(objects, "Ingress").filter(|i| has_auth_url(i)) {
        let url = at(&ing.body, "metadata.annotations")
            .and_then(|a| a.get(AUTH_URL))
            .and_then(super::super::cmdline::scalar)
            .unwrap_or_default();
        let auth_host = url::Url::parse(&url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let target = found
            .instances
            .iter_mut()
            .find(|i| i.sites.iter().any(|s| s.host == auth_host) || i.service_names.contains(&auth_host));
        let Some(inst) = target else {
            found.notes.push(Finding::unresolved(
                &ing.label(),
                &format!("its auth-url {url} reaches no oauth2-proxy among the inputs (pass that proxy's manifests or configuration); the Ingress's hosts were not imported"),
            ));
            continue;
        };
        for rule in list_at(&ing.body, "spec.rules") {
            let host = str_at(rule, "host").unwrap_or_else(|| "*".to_owned());
            let paths = list_at(rule, "http.paths");
            let Some(first) = paths.first() else { continue };
            let (Some(svc), Some(port)) = (backend_service(first), backend_port(first)) else {
                continue;
            };
            let upstream = format!("{svc}.{}.svc.cluster.local:{}", ing.namespace, port);
            let extra: Vec<String> = paths
                .iter()
                .filter_map(|p| str_at(p, "path"))
                .filter(|p| p != "/")
                .collect();
            inst.sites.push(Site {
                name: ing.name.clone(),
                host,
                upstream: Some(upstream),
                paths: extra,
                origin: format!("{} (auth-url {url})", ing.label()),
            });
        }
    }
}

/// TLS secrets named by Istio Gateways, Gateway API Gateways and Ingresses.
pub(crate) fn certificates(objects: &[Object]) -> Vec<CertNeed> {
    let mut out: Vec<CertNeed> = Vec::new();
    let mut add = |namespace: &str, secret: String, hosts: Vec<String>| match out
        .iter_mut()
        .find(|c| c.namespace == namespace && c.secret == secret)
    {
        Some(c) => c.hosts.extend(hosts),
        None => out.push(CertNeed {
            namespace: namespace.to_owned(),
            secret,
            hosts,
        }),
    };
    for gw in of_kind(objects, "Gateway") {
        for server in list_at(&gw.body, "spec.servers") {
            if let Some(secret) = str_at(server, "tls.credentialName") {
                let hosts = list_at(server, "hosts")
                    .iter()
                    .filter_map(super::super::cmdline::scalar)
                    .map(|h| h.rsplit('/').next().unwrap_or_default().to_owned())
                    .collect();
                add(&gw.namespace, secret, hosts);
            }
        }
        for listener in list_at(&gw.body, "spec.listeners") {
            for r in list_at(listener, "tls.certificateRefs") {
                if let Some(secret) = str_at(r, "name") {
                    add(
                        &gw.namespace,
                        secret,
                        str_at(listener, "hostname").into_iter().collect(),
                    );
                }
            }
        }
    }
    for ing in of_kind(objects, "Ingress") {
        for tls in list_at(&ing.body, "spec.tls") {
            if let Some(secret) = str_at(tls, "secretName") {
                add(
                    &ing.namespace,
                    secret,
                    list_at(tls, "hosts")
                        .iter()
                        .filter_map(super::super::cmdline::scalar)
                        .collect(),
                );
            }
        }
    }
    for c in &mut out {
        c.hosts.sort();
        c.hosts.dedup();
    }
    out.sort();
    out
}
