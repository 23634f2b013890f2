//! `auth.authenticated_emails_file`: allowed addresses kept in a file, one per line, as
//! oauth2-proxy reads them (surrounding blanks trimmed, empty lines skipped, compared
//! case-insensitively).
//!
//! The file is read with the rest of the configuration: on every reload, and when it changes
//! (the reloader watches it). A missing, unreadable or malformed file rejects the app file
//! that names it, alone.

use std::path::{Path, PathBuf};

use super::policy::Email;
use crate::config::{resolve, Fingerprint};

/// The largest emails file read (a list of a million addresses would not be a policy).
const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// The addresses of an emails file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmailsFile {
    /// The file, resolved.
    pub path: PathBuf,
    /// Its addresses.
    pub emails: Vec<Email>,
}

/// The file `spec_path` names, resolved against `base` (the app file's directory).
pub fn path(base: &Path, spec_path: &Path) -> PathBuf {
    resolve(base, spec_path)
}

/// Reads and checks the file, mixing its bytes into `fingerprint`. The error is the message
/// for field `auth.authenticated_emails_file`.
pub fn load(base: &Path, spec_path: &Path, fingerprint: &mut Fingerprint) -> Result<EmailsFile, String> {
    let path = path(base, spec_path);
    let len = std::fs::metadata(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if len > MAX_BYTES {
        return Err(format!("{} is larger than {MAX_BYTES} bytes", path.display()));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    fingerprint.add(&path, text.as_bytes());
    let emails = parse(&text).map_err(|(line, entry)| {
        format!(
            "{} line {line}: {entry:?} is not a plain email address such as \"alice@example.com\"",
            path.display()
        )
    })?;
    Ok(EmailsFile { path, emails })
}

/// The addresses of `text`; the error is the first bad line's number and content.
fn parse(text: &str) -> Result<Vec<Email>, (usize, String)> {
    let mut emails = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.trim();
        if entry.is_empty() {
            continue;
        }
        match Email::parse(entry) {
            Some(e) => emails.push(e),
            None => return Err((i + 1, entry.chars().take(80).collect())),
        }
    }
    Ok(emails)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_per_line_blank_lines_skipped() {
        let list = parse("alice@example.com\n\n  Bob@Example.org \r\n").unwrap();
        let got: Vec<&str> = list.iter().map(Email::as_str).collect();
        assert_eq!(got, ["alice@example.com", "Bob@example.org"]);
        assert_eq!(parse("a@b.com\nnot an email\n"), Err((2, "not an email".to_owned())));
        assert_eq!(parse("").unwrap(), Vec::new());
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut fp = Fingerprint::default();
        let err = load(dir.path(), Path::new("nope.txt"), &mut fp).unwrap_err();
        assert!(err.contains("nope.txt") && err.contains("cannot read"), "{err}");
        std::fs::write(dir.path().join("ok.txt"), "a@example.com\n").unwrap();
        let before = fp.value();
        assert_eq!(load(dir.path(), Path::new("ok.txt"), &mut fp).unwrap().emails.len(), 1);
        assert_ne!(fp.value(), before, "the file's bytes are fingerprinted");
    }
}
