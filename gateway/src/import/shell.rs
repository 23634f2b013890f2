//! POSIX-shell-like word splitting for command lines as `sh`, a container `command:` string or
//! systemd's `ExecStart=` write them: single and double quotes, backslash escapes, `\`-newline
//! continuations and `#` comments. Variables (`$VAR`, `${VAR}`, `$(VAR)`) are kept as written.

/// Splits `text` into words. Errors on an unterminated quote.
pub(crate) fn split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') => {}
                Some('\r') if chars.peek() == Some(&'\n') => {
                    chars.next();
                }
                Some(other) => {
                    word.push(other);
                    in_word = true;
                }
                None => {}
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err("unterminated single quote".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                double_quoted(&mut chars, &mut word)?;
            }
            '#' if !in_word => {
                for ch in chars.by_ref() {
                    if ch == '\n' {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn double_quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, word: &mut String) -> Result<(), String> {
    loop {
        match chars.next() {
            Some('"') => return Ok(()),
            Some('\\') => match chars.next() {
                Some('\n') => {}
                Some(ch @ ('"' | '\\' | '$' | '`')) => word.push(ch),
                Some(ch) => {
                    word.push('\\');
                    word.push(ch);
                }
                None => return Err("unterminated double quote".to_owned()),
            },
            Some(ch) => word.push(ch),
            None => return Err("unterminated double quote".to_owned()),
        }
    }
}

/// The variable a whole word refers to: `$(VAR)` (Kubernetes), `${VAR}` or `$VAR`.
pub(crate) fn variable(word: &str) -> Option<&str> {
    let inner = word
        .strip_prefix("$(")
        .and_then(|w| w.strip_suffix(')'))
        .or_else(|| word.strip_prefix("${").and_then(|w| w.strip_suffix('}')))
        .or_else(|| word.strip_prefix('$'))?;
    (!inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_continuations_and_comments() {
        let text = "oauth2-proxy \\\n  --email-domain='example.com' \\\n  --skip-auth-route=\"GET=^/a b$\" # trailing\n  --x=a\\ b";
        assert_eq!(
            split(text).unwrap(),
            vec![
                "oauth2-proxy",
                "--email-domain=example.com",
                "--skip-auth-route=GET=^/a b$",
                "--x=a b"
            ]
        );
        assert_eq!(split("a\"b\\\"c\"d").unwrap(), vec!["ab\"cd"]);
        assert_eq!(
            split("--x=a#b").unwrap(),
            vec!["--x=a#b"],
            "# inside a word is not a comment"
        );
        assert!(split("'open").is_err());
        assert!(split("\"open").is_err());
    }

    #[test]
    fn variables() {
        assert_eq!(variable("$(CLIENT_SECRET)"), Some("CLIENT_SECRET"));
        assert_eq!(variable("${A_B}"), Some("A_B"));
        assert_eq!(variable("$X"), Some("X"));
        assert_eq!(variable("x$X"), None);
        assert_eq!(variable("$(a b)"), None);
    }
}
