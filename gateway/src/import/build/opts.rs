//! An instance's options resolved through the mapping table: one value (or list) per option,
//! secrets reduced to where they come from (a literal secret is kept only as a digest).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use super::super::table::{self, Entry, Kind};
use super::super::{RawOpt, ValueRef};

/// Where a secret's value is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum SecretSource {
    /// Written in an input; only a digest is kept, to tell equal values from different ones.
    Literal {
        /// Digest of the value.
        digest: u64,
        /// Where it is written.
        origin: String,
    },
    /// A reference (Kubernetes Secret, environment variable).
    Ref(ValueRef),
    /// A file holding it (`*_secret_file`).
    File(String),
}

impl SecretSource {
    /// The digest or reference that identifies the value (origins aside).
    pub(crate) fn identity(&self) -> String {
        match self {
            SecretSource::Literal { digest, .. } => format!("literal:{digest:x}"),
            SecretSource::Ref(r) => format!("ref:{r}"),
            SecretSource::File(f) => format!("file:{f}"),
        }
    }

    /// Where to find the value, for the report.
    pub(crate) fn describe(&self) -> String {
        match self {
            SecretSource::Literal { origin, .. } => {
                format!("written literally in {origin} (move it into a Secret, and rotate it: it was in plain text)")
            }
            SecretSource::Ref(r) => r.to_string(),
            SecretSource::File(f) => format!("the content of the file `{f}`"),
        }
    }
}

/// A digest of a secret value (so the value itself is not kept).
pub(crate) fn digest(value: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// One option's final value.
#[derive(Debug, Clone)]
pub(crate) struct Val {
    /// Its table row.
    pub entry: &'static Entry,
    /// Values (empty for secrets and unresolved references).
    pub values: Vec<String>,
    /// For secrets: where the value is.
    pub secret: Option<SecretSource>,
    /// A non-secret option given by an unresolved reference.
    pub unresolved: Option<ValueRef>,
    /// Where it was set (the last place for single values).
    pub origin: String,
}

impl Val {
    /// What the report shows: the value, or where a secret is.
    pub(crate) fn shown(&self) -> String {
        if let Some(s) = &self.secret {
            return match s {
                SecretSource::Literal { .. } => "(secret, not shown)".to_owned(),
                other => format!("(secret: {})", other.describe()),
            };
        }
        if let Some(r) = &self.unresolved {
            return format!("({r})");
        }
        let text = self
            .values
            .iter()
            .map(|v| super::shared::without_password(v))
            .collect::<Vec<_>>()
            .join(", ");
        if text.chars().count() > 100 {
            format!("{}…", text.chars().take(100).collect::<String>())
        } else {
            text
        }
    }
}

/// Every option of one instance.
#[derive(Debug, Clone, Default)]
pub(crate) struct Opts {
    /// Known options by config key, in table order of first appearance.
    pub vals: BTreeMap<&'static str, Val>,
    /// Options the table does not know (and positional arguments, foreign variables).
    pub unknown: Vec<RawOpt>,
}

impl Opts {
    /// Resolves `raw` in order: lists accumulate, single values are replaced by later ones.
    pub(crate) fn collect(raw: &[RawOpt]) -> Opts {
        let mut out = Opts::default();
        for o in raw {
            let Some(entry) = table::lookup(&o.name) else {
                out.unknown.push(o.clone());
                continue;
            };
            let secret = if entry.kind == Kind::Secret {
                match (&o.reference, o.values.last()) {
                    (Some(r), _) => Some(SecretSource::Ref(r.clone())),
                    (None, Some(v)) if !v.is_empty() => Some(SecretSource::Literal {
                        digest: digest(v),
                        origin: o.origin.clone(),
                    }),
                    _ => None,
                }
            } else if entry.toml.ends_with("_secret_file") {
                o.values.last().map(|f| SecretSource::File(f.clone()))
            } else {
                None
            };
            let values = if entry.kind == Kind::Secret {
                Vec::new()
            } else {
                o.values.clone()
            };
            let unresolved = if entry.kind == Kind::Secret {
                None
            } else {
                o.reference.clone()
            };
            let slot = out.vals.entry(entry.toml).or_insert_with(|| Val {
                entry,
                values: Vec::new(),
                secret: None,
                unresolved: None,
                origin: o.origin.clone(),
            });
            if entry.kind == Kind::List {
                slot.values.extend(values);
            } else {
                slot.values = values;
            }
            if secret.is_some() {
                slot.secret = secret;
            }
            slot.unresolved = unresolved.or(slot.unresolved.take());
            slot.origin = o.origin.clone();
        }
        out
    }

    /// The last non-empty value of a single-valued option.
    pub(crate) fn str(&self, toml: &str) -> Option<&str> {
        self.vals
            .get(toml)
            .and_then(|v| v.values.last())
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The values of a list option (empty ones dropped).
    pub(crate) fn list(&self, toml: &str) -> Vec<String> {
        self.vals
            .get(toml)
            .map(|v| v.values.iter().filter(|s| !s.trim().is_empty()).cloned().collect())
            .unwrap_or_default()
    }

    /// A boolean option, when set.
    pub(crate) fn bool(&self, toml: &str) -> Option<bool> {
        self.str(toml)
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "t"))
    }

    /// Where a secret option's value is.
    pub(crate) fn secret(&self, toml: &str) -> Option<&SecretSource> {
        self.vals.get(toml).and_then(|v| v.secret.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_accumulate_singles_replace_and_secrets_are_digests() {
        let raw = vec![
            RawOpt::new("email_domains", vec!["a.com".into()], "cfg:1".into()),
            RawOpt::new("EMAIL_DOMAINS", vec!["b.com".into()], "env".into()),
            RawOpt::new("email-domain", vec!["c.com".into()], "arg".into()),
            RawOpt::new("provider", vec!["google".into()], "cfg:2".into()),
            RawOpt::new("provider", vec!["github".into()], "arg".into()),
            RawOpt::new("client_secret", vec!["hunter2".into()], "cfg:3".into()),
            RawOpt::new("bogus", vec!["x".into()], "cfg:4".into()),
        ];
        let o = Opts::collect(&raw);
        assert_eq!(o.list("email_domains"), vec!["a.com", "b.com", "c.com"]);
        assert_eq!(o.str("provider"), Some("github"));
        let v = &o.vals["client_secret"];
        assert!(v.values.is_empty());
        assert!(matches!(v.secret, Some(SecretSource::Literal { .. })));
        assert!(!format!("{v:?}").contains("hunter2"), "the value is not kept");
        assert_eq!(o.unknown.len(), 1);
    }
}
