//! Page templates from `templates_dir`: `sign_in.html` and `error.html`, read and checked when
//! the configuration loads (never per request), with `{{name}}` placeholders whose values are
//! always HTML-escaped.
//!
//! A placeholder the page does not know is a configuration error, so a typo shows at `check`
//! time, not as a literal `{{provder}}` in front of users.

use std::path::Path;

use crate::config::{resolve, Fingerprint};

/// Placeholders of `sign_in.html`.
pub const SIGN_IN_PLACEHOLDERS: &[&str] = &["provider", "start_url", "rd"];
/// Placeholders of `error.html`.
pub const ERROR_PLACEHOLDERS: &[&str] = &["status", "title", "message", "code", "sign_out_url"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(&'static str),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`, whose placeholders must be among `known`.
    pub fn parse(text: &str, known: &[&'static str]) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let Some(close) = rest[open..].find("}}") else {
                return Err("a \"{{\" has no closing \"}}\"".to_owned());
            };
            let name = rest[open + 2..open + close].trim();
            let Some(var) = known.iter().find(|k| **k == name) else {
                return Err(format!(
                    "unknown placeholder {{{{{name}}}}} (known: {})",
                    known
                        .iter()
                        .map(|k| format!("{{{{{k}}}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            parts.push(Part::Var(var));
            rest = &rest[open + close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// True when the template uses placeholder `name`.
    pub fn uses(&self, name: &str) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var(v) if *v == name))
    }

    /// The page with every placeholder replaced by its HTML-escaped value (missing: empty).
    pub fn render(&self, values: &[(&str, &str)]) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => {
                    if let Some((_, value)) = values.iter().find(|(k, _)| k == v) {
                        out.push_str(&html_escape(value));
                    }
                }
            }
        }
        out
    }
}

/// Escapes `&`, `<`, `>`, `"` and `'`.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The templates of `templates_dir`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Templates {
    /// `sign_in.html`, replacing the built-in sign-in page.
    pub sign_in: Option<Template>,
    /// `error.html`, replacing the built-in pages of the sign-in flow (403, 400, 429, 503).
    pub error: Option<Template>,
}

/// The files a templates directory may hold.
pub const FILES: [&str; 2] = ["sign_in.html", "error.html"];

impl Templates {
    /// Reads `dir` (resolved against `base`): each of `sign_in.html` and `error.html` is
    /// optional, but at least one must be there. Errors are messages for `templates_dir`.
    pub fn load(base: &Path, dir: &Path, fingerprint: &mut Fingerprint) -> Result<Templates, Vec<String>> {
        let dir = resolve(base, dir);
        let mut errors = Vec::new();
        let mut read = |file: &str, known: &[&'static str]| -> Option<Template> {
            let path = dir.join(file);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                Err(e) => {
                    errors.push(format!("cannot read {}: {e}", path.display()));
                    return None;
                }
            };
            fingerprint.add(&path, text.as_bytes());
            Template::parse(&text, known)
                .map_err(|e| errors.push(format!("{}: {e}", path.display())))
                .ok()
        };
        let sign_in = read("sign_in.html", SIGN_IN_PLACEHOLDERS);
        let error = read("error.html", ERROR_PLACEHOLDERS);
        if let Some(t) = &sign_in {
            if !t.uses("start_url") {
                errors.push(format!(
                    "{}: has no {{{{start_url}}}}, so it could not start a sign-in",
                    dir.join("sign_in.html").display()
                ));
            }
        }
        if sign_in.is_none() && error.is_none() && errors.is_empty() {
            errors.push(format!("{} holds neither sign_in.html nor error.html", dir.display()));
        }
        if errors.is_empty() {
            Ok(Templates { sign_in, error })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_checked_and_values_escaped() {
        let t = Template::parse(
            "<a href=\"{{ start_url }}\">{{provider}}</a>{{rd}}",
            SIGN_IN_PLACEHOLDERS,
        )
        .unwrap();
        let html = t.render(&[
            ("provider", "<b>Corp & Co</b>"),
            ("start_url", "/oauth2/start?rd=%2F\"x"),
        ]);
        assert_eq!(
            html,
            "<a href=\"/oauth2/start?rd=%2F&quot;x\">&lt;b&gt;Corp &amp; Co&lt;/b&gt;</a>"
        );
        let err = Template::parse("{{provder}}", SIGN_IN_PLACEHOLDERS).unwrap_err();
        assert!(err.contains("unknown placeholder {{provder}}"), "{err}");
        assert!(Template::parse("x {{ y", ERROR_PLACEHOLDERS).is_err());
        assert_eq!(
            Template::parse("no placeholders", ERROR_PLACEHOLDERS)
                .unwrap()
                .render(&[]),
            "no placeholders"
        );
    }

    #[test]
    fn a_directory_needs_one_template_and_sign_in_needs_start_url() {
        let dir = tempfile::tempdir().unwrap();
        let mut fp = Fingerprint::default();
        let errors = Templates::load(dir.path(), Path::new("."), &mut fp).unwrap_err();
        assert!(errors[0].contains("neither"), "{errors:?}");
        std::fs::write(dir.path().join("error.html"), "{{status}} {{message}}").unwrap();
        let t = Templates::load(dir.path(), Path::new("."), &mut fp).unwrap();
        assert!(t.sign_in.is_none() && t.error.is_some());
        std::fs::write(dir.path().join("sign_in.html"), "{{provider}}").unwrap();
        let errors = Templates::load(dir.path(), Path::new("."), &mut fp).unwrap_err();
        assert!(errors[0].contains("start_url"), "{errors:?}");
    }
}
