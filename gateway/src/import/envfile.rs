//! Environment files of `OAUTH2_PROXY_*` variables, as `docker --env-file` and systemd's
//! `EnvironmentFile=` read them: `KEY=VALUE` lines, optional `export`, quotes, `#` comments.

use super::cmdline;
use super::RawOpt;

/// The prefix of oauth2-proxy's variables.
pub(crate) const PREFIX: &str = "OAUTH2_PROXY_";

/// Parses an environment file; variables without the prefix become `(variable)` entries that
/// the mapping reports as not oauth2-proxy's.
pub(crate) fn parse(text: &str, origin: &str) -> Vec<RawOpt> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        out.push(variable(key.trim(), &value, format!("{origin}:{}", n + 1)));
    }
    out
}

/// One `OAUTH2_PROXY_*` variable as an option.
pub(crate) fn variable(key: &str, value: &str, origin: String) -> RawOpt {
    match key.strip_prefix(PREFIX) {
        Some(name) => cmdline::option(name, value, origin),
        None => RawOpt::new("(variable)", vec![key.to_owned()], origin),
    }
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_owned();
        }
    }
    v.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_quotes_and_lists() {
        let opts = parse(
            "# env\nOAUTH2_PROXY_PROVIDER=github\nexport OAUTH2_PROXY_EMAIL_DOMAINS=\"a.com,b.com\"\nOAUTH2_PROXY_SKIP_AUTH_ROUTES='GET=^/x'\nPATH=/bin\n",
            "e",
        );
        assert_eq!(opts[0].name, "PROVIDER");
        assert_eq!(opts[1].values, vec!["a.com", "b.com"]);
        assert_eq!(opts[2].values, vec!["GET=^/x"]);
        assert_eq!(opts[3].name, "(variable)");
        assert_eq!(opts[1].origin, "e:3");
    }
}
