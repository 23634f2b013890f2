//! Kubernetes manifests: workloads with an oauth2-proxy container (a sidecar in front of the
//! app, or a central proxy behind ingress-nginx's `auth-url`), their Services, and the routing
//! that sends traffic to them (Istio `Gateway`/`VirtualService`, `networking.k8s.io` `Ingress`).

mod routing;
mod workload;

use std::path::PathBuf;

use serde_yaml::Value;

use super::build::Finding;
use super::{CertNeed, Instance};

/// One manifest object, with the file it came from.
#[derive(Debug, Clone)]
pub(crate) struct Object {
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub body: Value,
}

impl Object {
    /// `Kind namespace/name`.
    pub(crate) fn label(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    /// A value at a dotted path.
    pub(crate) fn at(&self, path: &str) -> Option<&Value> {
        at(&self.body, path)
    }
}

/// A value at a dotted path (`spec.template.metadata.labels`).
pub(crate) fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

/// A string at a dotted path.
pub(crate) fn str_at(v: &Value, path: &str) -> Option<String> {
    at(v, path).and_then(super::cmdline::scalar)
}

/// The list at a dotted path (empty when absent).
pub(crate) fn list_at<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// What the manifests hold.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub instances: Vec<Instance>,
    pub certs: Vec<CertNeed>,
    pub notes: Vec<Finding>,
}

/// Reads every object of `files` and assembles oauth2-proxy instances with their sites.
pub(crate) fn read(files: &[(PathBuf, String)]) -> Result<Found, (PathBuf, String)> {
    let mut objects = Vec::new();
    for (file, text) in files {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value = <Value as serde::Deserialize>::deserialize(doc)
                .map_err(|e| (file.clone(), format!("document {}: {e}", i + 1)))?;
            collect(value, &mut objects);
        }
    }
    let mut found = Found::default();
    for obj in &objects {
        if let Some(mut inst) = workload::instance(obj, &objects) {
            routing::attach(&mut inst, obj, &objects, &mut found.notes);
            found.instances.push(inst);
        }
    }
    routing::central(&mut found, &objects);
    found.certs = routing::certificates(&objects);
    Ok(found)
}

/// Adds the objects of one document (a `List` holds several).
fn collect(value: Value, out: &mut Vec<Object>) {
    let kind = str_at(&value, "kind").unwrap_or_default();
    if kind == "List" {
        for item in list_at(&value, "items") {
            collect(item.clone(), out);
        }
        return;
    }
    if kind.is_empty() {
        return;
    }
    out.push(Object {
        name: str_at(&value, "metadata.name").unwrap_or_default(),
        namespace: str_at(&value, "metadata.namespace").unwrap_or_else(|| "default".to_owned()),
        kind,
        body: value,
    });
}

/// The objects of one kind.
pub(crate) fn of_kind<'a>(objects: &'a [Object], kind: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
    objects.iter().filter(move |o| o.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::ValueRef;

    const MANIFESTS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: team }
spec:
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: web
          image: web:1
          ports: [{ name: http-web, containerPort: 8080 }]
        - name: proxy
          image: quay.io/oauth2-proxy/oauth2-proxy:v7
          args: ["--upstream=http://127.0.0.1:8080/", "--client-secret=$(SECRET)", "--email-domain=a.com"]
          env:
            - name: SECRET
              valueFrom: { secretKeyRef: { name: web-oauth, key: cs } }
            - { name: OAUTH2_PROXY_CLIENT_ID, value: web-client }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: team }
spec:
  selector: { app: web }
  ports: [{ port: 80, targetPort: 4180 }, { port: 8081, targetPort: http-web }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: web, namespace: team }
spec:
  hosts: [web.example.com]
  http:
    - match: [{ uri: { prefix: /api/ } }]
      route: [{ destination: { host: web } }]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: other, namespace: team }
spec:
  tls: [{ hosts: [other.example.com], secretName: other-tls }]
  rules:
    - host: other.example.com
      http: { paths: [{ path: /, backend: { service: { name: web, port: { number: 80 } } } }] }
"#;

    #[test]
    fn sidecar_with_its_service_routes_and_secret_references() {
        let found = read(&[(PathBuf::from("m.yaml"), MANIFESTS.to_owned())]).unwrap_or_else(|(_, e)| panic!("{e}"));
        assert_eq!(found.instances.len(), 1);
        let inst = &found.instances[0];
        assert_eq!(inst.origin, "Deployment team/web container proxy");
        let secret = inst
            .opts
            .iter()
            .find(|o| o.name == "client-secret")
            .and_then(|o| o.reference.clone());
        assert_eq!(
            secret,
            Some(ValueRef::Secret {
                namespace: "team".into(),
                name: "web-oauth".into(),
                key: "cs".into()
            }),
            "$(SECRET) resolved to the Secret it comes from"
        );
        let hosts: Vec<(&str, Option<&str>, &[String])> = inst
            .sites
            .iter()
            .map(|s| (s.host.as_str(), s.upstream.as_deref(), s.paths.as_slice()))
            .collect();
        let api = vec!["/api/".to_owned()];
        assert_eq!(
            hosts,
            vec![
                (
                    "web.example.com",
                    Some("web.team.svc.cluster.local:8081"),
                    api.as_slice()
                ),
                ("other.example.com", Some("web.team.svc.cluster.local:8081"), &[][..]),
            ],
            "the app container's port through the Service's named targetPort"
        );
        assert_eq!(found.certs.len(), 1);
        assert_eq!(found.certs[0].secret, "other-tls");
    }
}
