//! oauth2-proxy command lines: a shell command, a systemd unit's `ExecStart=`, or a container's
//! `command:`/`args:` (YAML lists or a `sh -c` string).

use super::table::{self, Kind};
use super::{shell, RawOpt, ValueRef};

/// Parses a file holding a command line into options.
pub(crate) fn parse(text: &str, origin: &str) -> Result<Vec<RawOpt>, String> {
    let words = if let Some(words) = yaml_words(text) {
        words
    } else if let Some(exec) = exec_start(text) {
        shell::split(&exec)?
    } else {
        shell::split(text)?
    };
    Ok(options(&words, origin))
}

/// The `command:` and `args:` lists of a container snippet, when `text` is one.
fn yaml_words(text: &str) -> Option<Vec<String>> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    let map = value.as_mapping()?;
    let mut words = Vec::new();
    let mut any = false;
    for key in ["command", "args"] {
        match map.get(key) {
            Some(serde_yaml::Value::Sequence(items)) => {
                any = true;
                words.extend(items.iter().filter_map(scalar));
            }
            Some(serde_yaml::Value::String(s)) => {
                any = true;
                words.extend(shell::split(s).ok()?);
            }
            _ => {}
        }
    }
    any.then_some(words)
}

/// A YAML scalar as a string.
pub(crate) fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The command of a systemd unit's `ExecStart=` (with its continuation lines).
fn exec_start(text: &str) -> Option<String> {
    let start = text.find("ExecStart=")?;
    let rest = &text[start + "ExecStart=".len()..];
    let mut command = String::new();
    for line in rest.lines() {
        command.push_str(line);
        command.push('\n');
        if !line.trim_end().ends_with('\\') {
            break;
        }
    }
    let command = command.trim_start();
    Some(command.trim_start_matches(['-', '@', '+', '!', ':']).to_owned())
}

/// The options of an oauth2-proxy argument list. A leading program (and a `sh -c` wrapper) is
/// skipped; `--flag=value`, `--flag value` and bare boolean flags are understood.
pub(crate) fn options(words: &[String], origin: &str) -> Vec<RawOpt> {
    let words = unwrap_shell(words);
    let mut out = Vec::new();
    let mut i = words.iter().position(|w| w.starts_with('-')).unwrap_or(words.len());
    while i < words.len() {
        let word = &words[i];
        i += 1;
        let Some(flag) = word.strip_prefix("--").or_else(|| word.strip_prefix('-')) else {
            out.push(RawOpt::new(
                "(argument)",
                vec![word.clone()],
                format!("{origin}: argument {word:?}"),
            ));
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => {
                let is_bool = table::lookup(flag).is_some_and(|e| e.kind == Kind::Bool);
                let next_is_value = words.get(i).is_some_and(|w| !w.starts_with('-'));
                if is_bool || !next_is_value {
                    (flag.to_owned(), "true".to_owned())
                } else {
                    i += 1;
                    (flag.to_owned(), words[i - 1].clone())
                }
            }
        };
        out.push(option(&name, &value, format!("{origin}: --{name}")));
    }
    out
}

/// One option from a flag or variable value: lists split on commas, `$(VAR)` kept as a reference.
pub(crate) fn option(name: &str, value: &str, origin: String) -> RawOpt {
    if let Some(var) = shell::variable(value) {
        return RawOpt {
            name: name.to_owned(),
            values: Vec::new(),
            reference: Some(ValueRef::Env(var.to_owned())),
            origin,
        };
    }
    let list = table::lookup(name).is_some_and(|e| e.kind == Kind::List);
    let values = if list {
        value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        vec![value.to_owned()]
    };
    RawOpt::new(name, values, origin)
}

/// `sh -c "oauth2-proxy --x"` → the words of the inner command.
fn unwrap_shell(words: &[String]) -> Vec<String> {
    let is_shell = words.first().is_some_and(|w| w.ends_with("sh"));
    if let (true, Some(pos)) = (is_shell, words.iter().position(|w| w == "-c")) {
        if let Some(inner) = words.get(pos + 1).and_then(|s| shell::split(s).ok()) {
            return inner;
        }
    }
    words.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(opts: &[RawOpt]) -> Vec<(String, Vec<String>)> {
        opts.iter().map(|o| (o.name.clone(), o.values.clone())).collect()
    }

    #[test]
    fn flags_repeated_bare_and_separate() {
        let opts = parse(
            "/bin/oauth2-proxy --email-domain=a.com --email-domain b.com,c.com \\\n --reverse-proxy --upstream http://127.0.0.1:8080/ # the app\n --skip-provider-button=false",
            "x",
        )
        .unwrap();
        assert_eq!(
            names(&opts),
            vec![
                ("email-domain".into(), vec!["a.com".into()]),
                ("email-domain".into(), vec!["b.com".into(), "c.com".into()]),
                ("reverse-proxy".into(), vec!["true".into()]),
                ("upstream".into(), vec!["http://127.0.0.1:8080/".into()]),
                ("skip-provider-button".into(), vec!["false".into()]),
            ]
        );
    }

    #[test]
    fn systemd_exec_start_and_container_lists() {
        let unit = "[Service]\nUser=o\nExecStart=-/usr/bin/oauth2-proxy --provider=github \\\n  --github-org=\"acme\"\nRestart=always\n";
        assert_eq!(
            names(&parse(unit, "u").unwrap()),
            vec![
                ("provider".into(), vec!["github".into()]),
                ("github-org".into(), vec!["acme".into()])
            ]
        );
        let yaml =
            "command: [\"/bin/oauth2-proxy\"]\nargs:\n  - --provider=google\n  - --client-secret=$(CLIENT_SECRET)\n";
        let opts = parse(yaml, "y").unwrap();
        assert_eq!(opts[1].reference, Some(ValueRef::Env("CLIENT_SECRET".into())));
        let sh = "command: [sh, -c, \"exec oauth2-proxy --provider=oidc\"]";
        assert_eq!(
            names(&parse(sh, "s").unwrap()),
            vec![("provider".into(), vec!["oidc".into()])]
        );
    }
}
