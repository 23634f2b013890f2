//! Which kind of input a file is, from its content alone.

/// The kinds of input the importer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputKind {
    /// `oauth2-proxy.cfg`.
    Cfg,
    /// A command line: shell, systemd `ExecStart=`, container `command:`/`args:`.
    CommandLine,
    /// `OAUTH2_PROXY_*=` lines.
    EnvFile,
    /// oauth2-proxy's alpha configuration (YAML).
    Alpha,
    /// Kubernetes manifests (YAML with `apiVersion` and `kind`).
    Kubernetes,
    /// None of these.
    Unknown,
}

/// Detects the kind of `text`.
pub(crate) fn detect(text: &str) -> InputKind {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("//"))
        .collect();
    if lines.iter().any(|l| l.starts_with("ExecStart=")) {
        return InputKind::CommandLine;
    }
    if lines.iter().any(|l| l.contains("OAUTH2_PROXY_")) && lines.iter().all(|l| is_env_line(l)) {
        return InputKind::EnvFile;
    }
    if let Some(kind) = yaml_kind(text) {
        return kind;
    }
    if !lines.is_empty() && lines.iter().all(|l| is_cfg_line(l)) {
        return InputKind::Cfg;
    }
    let words = text.split_whitespace().collect::<Vec<_>>();
    if words
        .iter()
        .any(|w| w.contains("oauth2-proxy") || w.contains("oauth2_proxy"))
        || words.first().is_some_and(|w| w.starts_with("--"))
    {
        return InputKind::CommandLine;
    }
    InputKind::Unknown
}

fn is_env_line(l: &str) -> bool {
    let l = l.strip_prefix("export ").unwrap_or(l);
    l.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// A cfg line: `key = value`, an array continuation, or a closing bracket.
fn is_cfg_line(l: &str) -> bool {
    if let Some((k, _)) = l.split_once('=') {
        let k = k.trim();
        if !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return true;
        }
    }
    l.starts_with(']') || l.starts_with('"') || l.starts_with('\'')
}

fn yaml_kind(text: &str) -> Option<InputKind> {
    let mut any_k8s = false;
    let mut first: Option<serde_yaml::Mapping> = None;
    for doc in serde_yaml::Deserializer::from_str(text) {
        let Ok(value) = <serde_yaml::Value as serde::Deserialize>::deserialize(doc) else {
            return None;
        };
        let Some(map) = value.as_mapping() else {
            continue;
        };
        if map.contains_key("apiVersion") && map.contains_key("kind") {
            any_k8s = true;
        }
        if first.is_none() {
            first = Some(map.clone());
        }
    }
    if any_k8s {
        return Some(InputKind::Kubernetes);
    }
    let map = first?;
    if ["upstreamConfig", "injectRequestHeaders", "injectResponseHeaders"]
        .iter()
        .any(|k| map.contains_key(*k))
        || map.get("providers").is_some_and(serde_yaml::Value::is_sequence)
    {
        return Some(InputKind::Alpha);
    }
    if map
        .get("command")
        .or_else(|| map.get("args"))
        .is_some_and(|v| v.is_sequence() || v.is_string())
    {
        return Some(InputKind::CommandLine);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_content() {
        assert_eq!(
            detect("http_address=\"0.0.0.0:4180\"\nemail_domains = [\n \"a\",\n]\n"),
            InputKind::Cfg
        );
        assert_eq!(
            detect("# c\nOAUTH2_PROXY_PROVIDER=github\nexport OAUTH2_PROXY_X=1\n"),
            InputKind::EnvFile
        );
        assert_eq!(
            detect("[Unit]\n[Service]\nExecStart=/usr/bin/oauth2-proxy --config=/x\n"),
            InputKind::CommandLine
        );
        assert_eq!(detect("oauth2-proxy \\\n --provider=github\n"), InputKind::CommandLine);
        assert_eq!(detect("args: [--provider=github]\n"), InputKind::CommandLine);
        assert_eq!(
            detect("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\nkind: X\n"),
            InputKind::Kubernetes
        );
        assert_eq!(detect("upstreamConfig:\n  upstreams: []\n"), InputKind::Alpha);
        assert_eq!(detect("hello world\n"), InputKind::Unknown);
    }
}
