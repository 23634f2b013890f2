//! Workloads (Deployment, StatefulSet, DaemonSet) with an oauth2-proxy container: its options
//! from a mounted ConfigMap (`--config`), its environment (literal, Secret and ConfigMap
//! references, `envFrom`) and its arguments, in oauth2-proxy's order of precedence.

use serde_yaml::Value;

use super::super::build::Finding;
use super::super::envfile::{self, PREFIX};
use super::super::{cfg, cmdline, Instance, RawOpt, ValueRef};
use super::{list_at, of_kind, str_at, Object};

const WORKLOADS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod"];

/// The oauth2-proxy instance of a workload, if it has an oauth2-proxy container.
pub(crate) fn instance(obj: &Object, objects: &[Object]) -> Option<Instance> {
    if !WORKLOADS.contains(&obj.kind.as_str()) {
        return None;
    }
    let spec = if obj.kind == "Pod" {
        obj.at("spec")?
    } else {
        obj.at("spec.template.spec")?
    };
    let containers = list_at(spec, "containers");
    let proxy = containers.iter().find(|c| is_oauth2_proxy(c))?;
    let cname = str_at(proxy, "name").unwrap_or_default();
    let origin = format!("{} container {cname}", obj.label());
    let mut notes = Vec::new();
    let env = environment(proxy, obj, objects, &origin, &mut notes);
    let mut args: Vec<String> = Vec::new();
    for key in ["command", "args"] {
        args.extend(list_at(proxy, key).iter().filter_map(cmdline::scalar));
    }
    let mut opts = config_file(&args, spec, obj, objects, &origin, &mut notes);
    opts.extend(env.iter().filter_map(|v| v.option(&origin)));
    for mut o in cmdline::options(&args, &origin) {
        if let Some(ValueRef::Env(name)) = &o.reference {
            if let Some(var) = env.iter().rev().find(|v| v.name == *name) {
                if let Some(value) = &var.value {
                    o = cmdline::option(&o.name, value, o.origin.clone());
                } else if var.reference.is_some() {
                    o.reference = var.reference.clone();
                }
            }
        }
        opts.push(o);
    }
    let app_ports: Vec<(String, u16)> = containers
        .iter()
        .filter(|c| !is_oauth2_proxy(c))
        .flat_map(|c| list_at(c, "ports").iter().map(move |p| (p, c)))
        .filter_map(|(p, _)| {
            let port = p
                .get("containerPort")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())?;
            Some((str_at(p, "name").unwrap_or_default(), port))
        })
        .collect();
    Some(Instance {
        name: obj.name.clone(),
        origin,
        opts,
        notes,
        app_ports,
        ..Instance::default()
    })
}

/// Whether a container runs oauth2-proxy (its image, or options only oauth2-proxy takes).
fn is_oauth2_proxy(c: &Value) -> bool {
    let image = str_at(c, "image").unwrap_or_default();
    if image.contains("oauth2-proxy") || image.contains("oauth2_proxy") {
        return true;
    }
    let env_hit = list_at(c, "env")
        .iter()
        .any(|e| str_at(e, "name").is_some_and(|n| n.starts_with(PREFIX)));
    let cmd_hit = ["command", "args"]
        .iter()
        .flat_map(|k| list_at(c, k))
        .filter_map(cmdline::scalar)
        .any(|a| a.contains("oauth2-proxy") || a.starts_with("--cookie-secret") || a.starts_with("--upstream="));
    env_hit || cmd_hit
}

/// One variable of the container: a literal value or a reference.
struct EnvVar {
    name: String,
    value: Option<String>,
    reference: Option<ValueRef>,
}

impl EnvVar {
    /// The oauth2-proxy option it sets, for `OAUTH2_PROXY_*` variables.
    fn option(&self, origin: &str) -> Option<RawOpt> {
        self.name.strip_prefix(PREFIX)?;
        if self.value.is_none() && self.reference.is_none() {
            return None;
        }
        let origin = format!("{origin}: env {}", self.name);
        let mut opt = envfile::variable(&self.name, self.value.as_deref().unwrap_or_default(), origin);
        if self.reference.is_some() {
            opt.values.clear();
            opt.reference = self.reference.clone();
        }
        Some(opt)
    }
}

/// The container's variables, in order (`envFrom` first, then `env`).
fn environment(c: &Value, obj: &Object, objects: &[Object], origin: &str, notes: &mut Vec<Finding>) -> Vec<EnvVar> {
    let mut out = Vec::new();
    let secret_ref = |name: &str, key: &str| ValueRef::Secret {
        namespace: obj.namespace.clone(),
        name: name.to_owned(),
        key: key.to_owned(),
    };
    for src in list_at(c, "envFrom") {
        let prefix = str_at(src, "prefix").unwrap_or_default();
        if let Some(name) = str_at(src, "secretRef.name") {
            match find(objects, "Secret", &obj.namespace, &name) {
                Some(secret) => out.extend(data_keys(secret).into_iter().map(|key| EnvVar {
                    name: format!("{prefix}{key}"),
                    value: None,
                    reference: Some(secret_ref(&name, &key)),
                })),
                None => notes.push(Finding::unresolved(origin, &format!("envFrom Secret `{name}`"))),
            }
        }
        if let Some(name) = str_at(src, "configMapRef.name") {
            match find(objects, "ConfigMap", &obj.namespace, &name) {
                Some(cm) => out.extend(data(cm).into_iter().map(|(key, value)| EnvVar {
                    name: format!("{prefix}{key}"),
                    value: Some(value),
                    reference: None,
                })),
                None => notes.push(Finding::unresolved(origin, &format!("envFrom ConfigMap `{name}`"))),
            }
        }
    }
    for e in list_at(c, "env") {
        let Some(name) = str_at(e, "name") else { continue };
        let mut var = EnvVar {
            name: name.clone(),
            value: str_at(e, "value"),
            reference: None,
        };
        if let (Some(s), Some(key)) = (
            str_at(e, "valueFrom.secretKeyRef.name"),
            str_at(e, "valueFrom.secretKeyRef.key"),
        ) {
            var.reference = Some(secret_ref(&s, &key));
        } else if let (Some(cm), Some(key)) = (
            str_at(e, "valueFrom.configMapKeyRef.name"),
            str_at(e, "valueFrom.configMapKeyRef.key"),
        ) {
            var.value = find(objects, "ConfigMap", &obj.namespace, &cm)
                .and_then(|o| data(o).into_iter().find(|(k, _)| *k == key).map(|(_, v)| v));
            if var.value.is_none() {
                notes.push(Finding::unresolved(
                    origin,
                    &format!("ConfigMap `{cm}` key `{key}` (variable {name})"),
                ));
            }
        }
        out.push(var);
    }
    out
}

/// Options of the file named by `--config=PATH` when a mounted ConfigMap holds it.
fn config_file(
    args: &[String],
    spec: &Value,
    obj: &Object,
    objects: &[Object],
    origin: &str,
    notes: &mut Vec<Finding>,
) -> Vec<RawOpt> {
    let Some(path) = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=")
            .map(str::to_owned)
            .or_else(|| (a == "--config").then(|| args.get(i + 1).cloned()).flatten())
    }) else {
        return Vec::new();
    };
    let containers = list_at(spec, "containers");
    let mounts = containers.iter().flat_map(|c| list_at(c, "volumeMounts"));
    for m in mounts {
        let (Some(mount), Some(vol)) = (str_at(m, "mountPath"), str_at(m, "name")) else {
            continue;
        };
        let Some(rest) = path.strip_prefix(mount.trim_end_matches('/')) else {
            continue;
        };
        let key = str_at(m, "subPath").unwrap_or_else(|| rest.trim_start_matches('/').to_owned());
        let volume = list_at(spec, "volumes")
            .iter()
            .find(|v| str_at(v, "name").as_deref() == Some(vol.as_str()));
        let Some(cm_name) = volume.and_then(|v| str_at(v, "configMap.name")) else {
            continue;
        };
        let Some(cm) = find(objects, "ConfigMap", &obj.namespace, &cm_name) else {
            continue;
        };
        if let Some((_, text)) = data(cm).into_iter().find(|(k, _)| *k == key) {
            let o = format!("ConfigMap {}/{cm_name} key {key}", obj.namespace);
            match cfg::parse(&text, &o) {
                Ok(opts) => return opts,
                Err(e) => notes.push(Finding::unresolved(origin, &format!("{o}: {e}"))),
            }
            return Vec::new();
        }
    }
    notes.push(Finding::unresolved(
        origin,
        &format!("--config={path} (no ConfigMap among the inputs holds it; pass the file as an INPUT)"),
    ));
    Vec::new()
}

fn find<'a>(objects: &'a [Object], kind: &'a str, ns: &str, name: &str) -> Option<&'a Object> {
    of_kind(objects, kind).find(|o| o.namespace == ns && o.name == name)
}

/// The keys of a Secret (values are never read).
fn data_keys(secret: &Object) -> Vec<String> {
    let mut keys: Vec<String> = ["data", "stringData"]
        .iter()
        .filter_map(|k| secret.at(k).and_then(Value::as_mapping))
        .flat_map(|m| m.keys().filter_map(cmdline::scalar))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The data of a ConfigMap.
fn data(cm: &Object) -> Vec<(String, String)> {
    cm.at("data")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((cmdline::scalar(k)?, cmdline::scalar(v)?)))
                .collect()
        })
        .unwrap_or_default()
}
