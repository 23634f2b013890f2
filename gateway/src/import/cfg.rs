//! oauth2-proxy's configuration file (`oauth2-proxy.cfg`): TOML-like `key = value` lines with
//! strings, booleans, numbers and (multi-line) arrays, and `#` comments.

use super::RawOpt;

/// Parses a configuration file into options (keys as written, arrays as several values).
pub(crate) fn parse(text: &str, origin: &str) -> Result<Vec<RawOpt>, String> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let line = strip_comment(line);
        let line = line.trim();
        if line.is_empty() || line.starts_with('[') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected key = value, found {line:?}", n + 1));
        };
        let key = key.trim().trim_matches('"');
        let mut value = value.trim().to_owned();
        if value.starts_with('[') {
            while !balanced(&value) {
                let Some((_, more)) = lines.next() else {
                    return Err(format!("line {}: array of {key} is not closed", n + 1));
                };
                value.push(' ');
                value.push_str(strip_comment(more).trim());
            }
        }
        let values = parse_value(&value).map_err(|e| format!("line {}: {key}: {e}", n + 1))?;
        out.push(RawOpt::new(key, values, format!("{origin}:{}", n + 1)));
    }
    Ok(out)
}

/// The line up to a `#` that is outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some('"'), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(q), c) if c == q && !escaped => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => return &line[..i],
            _ => {}
        }
        escaped = false;
    }
    line
}

/// Whether the brackets of an array value are closed (outside strings).
fn balanced(value: &str) -> bool {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for c in value.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth -= 1,
            _ => {}
        }
    }
    depth <= 0
}

/// A value: a string, a bare word (boolean, number, duration) or an array of those.
fn parse_value(value: &str) -> Result<Vec<String>, String> {
    if let Some(inner) = value.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("array not closed")?;
        let mut items = Vec::new();
        let mut rest = inner.trim();
        while !rest.is_empty() {
            let (item, after) = scalar(rest)?;
            items.push(item);
            rest = after.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
        return Ok(items);
    }
    let (item, after) = scalar(value)?;
    if !after.trim().is_empty() {
        return Err(format!("unexpected {:?} after the value", after.trim()));
    }
    Ok(vec![item])
}

/// One scalar at the start of `s`, and what follows it.
fn scalar(s: &str) -> Result<(String, &str), String> {
    if let Some(body) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((out, &body[i + 1..])),
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, other)) => out.push(other),
                    None => break,
                },
                c => out.push(c),
            }
        }
        return Err("unterminated string".to_owned());
    }
    if let Some(body) = s.strip_prefix('\'') {
        let end = body.find('\'').ok_or("unterminated string")?;
        return Ok((body[..end].to_owned(), &body[end + 1..]));
    }
    let end = s.find([',', ']']).unwrap_or(s.len());
    let word = s[..end].trim();
    if word.is_empty() {
        return Err("missing value".to_owned());
    }
    Ok((word.to_owned(), &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_arrays_bools_and_comments() {
        let text = "## comment\nhttp_address=\"0.0.0.0:4180\"\ncookie_secure=\"false\"\nreverse_proxy = true\n\
                    cookie_domains=[\".localtest.me\"] # Required\nemail_domains = [\n  \"a.com\", # one\n  'b.com',\n]\n\
                    skip_auth_routes = [\"GET=^/a#b\"]\nlogging_max_size = 100\n";
        let opts = parse(text, "f").unwrap();
        let got: Vec<(&str, Vec<&str>)> = opts
            .iter()
            .map(|o| (o.name.as_str(), o.values.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("http_address", vec!["0.0.0.0:4180"]),
                ("cookie_secure", vec!["false"]),
                ("reverse_proxy", vec!["true"]),
                ("cookie_domains", vec![".localtest.me"]),
                ("email_domains", vec!["a.com", "b.com"]),
                ("skip_auth_routes", vec!["GET=^/a#b"]),
                ("logging_max_size", vec!["100"]),
            ]
        );
        assert_eq!(opts[4].origin, "f:6");
    }

    #[test]
    fn errors_name_the_line() {
        assert!(parse("a = \"open\n", "f").unwrap_err().starts_with("line 1"));
        assert!(parse("x\n", "f").unwrap_err().contains("key = value"));
        assert!(parse("a = [\"x\"\n", "f").unwrap_err().contains("not closed"));
    }
}
