//! The reference documentation keeps up with the code: every configuration field is in
//! docs/configuration.md, every metric in docs/operations.md, every `/oauth2/*` endpoint in
//! docs/configuration.md. A field, metric or endpoint added without its documentation fails here.
#![allow(clippy::unwrap_used)]

use std::path::Path;

fn read(relative: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Every capture of `pattern`'s first group in `text`.
fn names(text: &str, pattern: &str) -> Vec<String> {
    let re = regex::Regex::new(pattern).unwrap();
    let mut found: Vec<String> = re.captures_iter(text).map(|c| c[1].to_owned()).collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn every_configuration_field_is_documented() {
    let reference = read("docs/configuration.md");
    let mut missing = Vec::new();
    let mut seen = 0;
    for file in [
        "gateway/src/config/schema.rs",
        "gateway/src/config/auth_schema.rs",
        "gateway/src/config/traces.rs",
    ] {
        for field in names(&read(file), r"(?m)^\s+pub ([a-z][a-z0-9_]*):") {
            seen += 1;
            let documented = [format!("`{field}`"), format!(".{field}`"), format!("{field}:")]
                .iter()
                .any(|form| reference.contains(form.as_str()));
            if !documented {
                missing.push(format!("{file}: {field}"));
            }
        }
    }
    assert!(seen > 100, "the schema was not read ({seen} fields)");
    assert!(missing.is_empty(), "not in docs/configuration.md: {missing:#?}");
}

#[test]
fn every_metric_is_documented() {
    let operations = read("docs/operations.md");
    let metrics = names(&read("gateway/src/metrics.rs"), r#"Opts::new\(\s*"(authgate_[a-z_]+)""#);
    assert!(metrics.len() > 20, "{metrics:?}");
    let missing: Vec<_> = metrics.iter().filter(|m| !operations.contains(m.as_str())).collect();
    assert!(missing.is_empty(), "not in docs/operations.md: {missing:?}");
}

#[test]
fn every_gateway_endpoint_is_documented() {
    let reference = read("docs/configuration.md");
    let endpoints = names(&read("gateway/src/auth/endpoints.rs"), r#""(/oauth2/[a-z_]+)""#);
    assert!(endpoints.len() >= 8, "{endpoints:?}");
    let missing: Vec<_> = endpoints
        .iter()
        .filter(|e| !reference.contains(&format!("`{e}")))
        .collect();
    assert!(missing.is_empty(), "not in docs/configuration.md: {missing:?}");
}
