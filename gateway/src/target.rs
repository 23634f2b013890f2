//! The canonical request target: one view of a request's path, computed once per request
//! and used by every rule (`skip_auth_routes`, `api_routes`), `/oauth2/*` dispatch, the login
//! redirect, the access log, and the request sent upstream.
//!
//! A rule that judges one spelling of a path while the upstream routes another is an
//! authentication bypass (`/private/..;/public/x` judged public, routed private). So the
//! gateway never forwards a path it did not judge: the upstream receives the canonical path,
//! re-encoded once, or the request is refused with 400.
//!
//! # The canonical form
//! The path (everything before the first `?`) is read as follows; the query is forwarded
//! byte for byte and never takes part in a rule.
//!
//! 1. A literal `\` is a separator, like `/` (as browsers read it).
//! 2. Every `%XX` is decoded exactly once (`%252e` is the three characters `%2e`, not `.`).
//!    An encoded separator (`%2F`, `%5C`) is refused: re-encoding could not say whether it was
//!    a separator or data, and upstreams disagree.
//! 3. A control character (U+0000–U+001F, U+007F), literal or encoded, is refused; so is a
//!    path that is not UTF-8 once decoded, and a literal `#`.
//! 4. Segments `.` and `..` (also `%2e`, `.%2E`, …) are resolved as in RFC 3986 §5.2.4; `..`
//!    never climbs above the root. Empty segments (`//`) are dropped. A trailing `/` is kept,
//!    and a path ending in a dot segment ends in `/` (`/a/b/..` is `/a/`).
//! 5. A dot segment carrying a parameter (`..;x`, `.;`, `..%3B`) is refused: servlet containers
//!    read it as `..`, RFC 3986 as a name.
//!
//! The string rules match ([`Target::path`]) is the decoded path. The upstream receives the
//! same segments re-encoded ([`Target::apply`]): unreserved characters literally; `!$&'()*+,;=:@`
//! literally when they were literal and as `%XX` when they were encoded; every other byte as
//! `%XX` with upper-case hex digits. So `/%70ublic/x` is judged and forwarded as `/public/x`,
//! and `/a%3Bb` stays `/a%3Bb` upstream while `/a;b` stays `/a;b`.
//!
//! Matrix parameters (`/a;jsessionid=1`) stay in the path both views see; because some
//! upstreams (servlet containers) cut them before routing, [`Target::stripped_path`] also
//! offers the path without them, and the gateway refuses a request whose verdict differs
//! between the two views (`/admin;.css` against a rule `\.css$`).
//!
//! An app with `forward_raw_path: true` (allowed only without path rules) receives the raw
//! target unchanged; its canonical view then reads encoded separators and dot segments with
//! parameters as data rather than refusing them.

use std::borrow::Cow;

use pingora::http::RequestHeader;

/// Why a request target was refused (the request gets a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// A `%` not followed by two hexadecimal digits.
    #[error("the request path has an invalid percent-encoding")]
    InvalidPercentEncoding,
    /// The percent-decoded path is not valid UTF-8.
    #[error("the request path is not valid UTF-8 once percent-decoded")]
    InvalidUtf8,
    /// A control character (U+0000–U+001F or U+007F), literal or encoded.
    #[error("the request path contains a control character")]
    ControlCharacter,
    /// `%2F` or `%5C`: a separator that re-encoding could not preserve.
    #[error("the request path contains an encoded slash or backslash (%2F, %5C)")]
    EncodedSeparator,
    /// `..;x`, `.;x`: a dot segment with a parameter.
    #[error("the request path has a dot segment with a parameter (such as ..;)")]
    DotSegmentParameter,
    /// A literal `#` (fragments are never sent in a request).
    #[error("the request target contains a fragment (#)")]
    Fragment,
    /// Not origin form, absolute form or (for OPTIONS) `*`.
    #[error("the request target is not a path")]
    NotAPath,
}

/// How strictly a path is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathMode {
    /// Refuse what re-encoding cannot preserve (the default).
    #[default]
    Canonical,
    /// `forward_raw_path: true`: the upstream gets the raw target; encoded separators and
    /// dot segments with parameters are read as data in the canonical view.
    Raw,
}

/// The canonical target of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    form: Form,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Form {
    /// The raw origin-form path is already canonical: `req.uri.path()` is the path, and the
    /// target goes upstream untouched. The common case; nothing is allocated.
    Unchanged,
    /// The path was rewritten (or came in absolute form).
    Rewritten(Box<Rewritten>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rewritten {
    /// Decoded canonical path: what rules see.
    path: String,
    /// The same path re-encoded: what the upstream receives.
    encoded: String,
    /// The decoded path without matrix parameters, when it had any.
    stripped: Option<String>,
    /// Forward the raw target unchanged (`PathMode::Raw`).
    raw: bool,
}

impl Target {
    /// Computes the canonical target of `req`. The raw target must be origin form, absolute
    /// form, or `*` for `OPTIONS`.
    pub fn of(req: &RequestHeader, mode: PathMode) -> Result<Target, TargetError> {
        if !req.raw_path_is_utf8() {
            // Raw bytes that are not UTF-8 cannot be a UTF-8 path once decoded either.
            return Err(TargetError::InvalidUtf8);
        }
        let raw = req.raw_path();
        let path = match split_target(raw, &req.method)? {
            RawPath::Asterisk => return Ok(Target { form: Form::Unchanged }),
            RawPath::Origin(path) if is_canonical(path) => return Ok(Target { form: Form::Unchanged }),
            RawPath::Origin(path) | RawPath::Absolute(path) => path,
        };
        let rewritten = canonicalize(path, mode)?;
        Ok(Target {
            form: Form::Rewritten(Box::new(rewritten)),
        })
    }

    /// The decoded canonical path rules match (`*` for `OPTIONS *`).
    pub fn path<'a>(&'a self, req: &'a RequestHeader) -> &'a str {
        match &self.form {
            // An empty target (only a direct caller can build one; parsers refuse it) is `/`.
            Form::Unchanged if req.uri.path().is_empty() => "/",
            Form::Unchanged => req.uri.path(),
            Form::Rewritten(r) => &r.path,
        }
    }

    /// The canonical path without matrix parameters, when the path has any (`/a;x/b` gives
    /// `/a/b`). A rule's verdict must not differ between this and [`Self::path`].
    pub fn stripped_path(&self) -> Option<&str> {
        match &self.form {
            Form::Unchanged => None,
            Form::Rewritten(r) => r.stripped.as_deref(),
        }
    }

    /// The encoded path and query the upstream receives (for redirects back after login).
    pub fn path_and_query<'a>(&'a self, req: &'a RequestHeader) -> Cow<'a, str> {
        let query = req.uri.query();
        match (&self.form, query) {
            (Form::Unchanged, _) => Cow::Borrowed(req.uri.path_and_query().map_or("/", |pq| pq.as_str())),
            (Form::Rewritten(r), None) => Cow::Borrowed(&r.encoded),
            (Form::Rewritten(r), Some(q)) => Cow::Owned(format!("{}?{q}", r.encoded)),
        }
    }

    /// Writes the canonical target into the request sent upstream (a copy of the client's
    /// request), keeping its query byte for byte.
    pub fn apply(&self, upstream: &mut RequestHeader) -> pingora::Result<()> {
        let Form::Rewritten(r) = &self.form else {
            return Ok(());
        };
        if r.raw {
            return Ok(());
        }
        let raw = upstream.raw_path();
        let query = raw.iter().position(|&b| b == b'?').map_or(&[][..], |i| &raw[i..]);
        let mut target = Vec::with_capacity(r.encoded.len() + query.len());
        target.extend_from_slice(r.encoded.as_bytes());
        target.extend_from_slice(query);
        upstream.set_raw_path(&target)
    }
}

/// A request target split by form.
enum RawPath<'a> {
    Asterisk,
    /// The path of an origin-form target (before `?`).
    Origin(&'a [u8]),
    /// The path of an absolute-form target.
    Absolute(&'a [u8]),
}

fn split_target<'a>(raw: &'a [u8], method: &http::Method) -> Result<RawPath<'a>, TargetError> {
    let before_query = |t: &'a [u8]| t.split(|&b| b == b'?').next().unwrap_or_default();
    if raw.first() == Some(&b'/') {
        return Ok(RawPath::Origin(before_query(raw)));
    }
    if raw == b"*" && method == http::Method::OPTIONS {
        return Ok(RawPath::Asterisk);
    }
    match pingora::http::authority::raw_target_authority(raw) {
        pingora::http::authority::RawTargetAuthority::Absolute { path_and_query, .. } => {
            let path = before_query(path_and_query);
            // `http://host` and `http://host?q` name the root.
            Ok(RawPath::Absolute(if path.is_empty() { b"/" } else { path }))
        }
        _ => Err(TargetError::NotAPath),
    }
}

/// The authority (`host[:port]`) of an absolute-form target, if the target is one.
pub fn absolute_authority(raw: &[u8]) -> Option<&[u8]> {
    if raw.first() == Some(&b'/') {
        return None;
    }
    pingora::http::authority::raw_target_authority(raw).authority()
}

/// True for a byte RFC 3986 calls unreserved.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// True for a byte that may stand literally in a path segment besides the unreserved ones:
/// sub-delims, `:` and `@`.
fn pchar_delimiter(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@'
    )
}

/// The fast path: a path made only of literal characters, with no `;`, no empty segment and
/// no dot segment, is its own canonical form.
fn is_canonical(path: &[u8]) -> bool {
    let plain = |b: u8| unreserved(b) || b == b'/' || (pchar_delimiter(b) && b != b';');
    if path.first() != Some(&b'/') || !path.iter().all(|&b| plain(b)) {
        return false;
    }
    let mut segments = path[1..].split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || segment == b"." || segment == b".." {
            return false;
        }
    }
    true
}

/// One decoded segment.
struct Segment {
    /// Decoded bytes.
    decoded: Vec<u8>,
    /// Re-encoded text.
    encoded: String,
    /// Length of `decoded` before the first literal `;`.
    before_param: usize,
}

/// The slow path: decode, resolve dot segments, re-encode.
fn canonicalize(path: &[u8], mode: PathMode) -> Result<Rewritten, TargetError> {
    let mut kept: Vec<Segment> = Vec::new();
    let mut trailing_slash = false;
    for raw_segment in path.split(|&b| b == b'/' || b == b'\\') {
        let segment = decode_segment(raw_segment, mode)?;
        match dot_kind(&segment.decoded, mode)? {
            Some(Dot::Current) => trailing_slash = true,
            Some(Dot::Parent) => {
                kept.pop();
                trailing_slash = true;
            }
            None if segment.decoded.is_empty() => trailing_slash = true,
            None => {
                kept.push(segment);
                trailing_slash = false;
            }
        }
    }
    let decoded_path = join(kept.iter().map(|s| &s.decoded[..]), trailing_slash);
    let path = String::from_utf8(decoded_path).map_err(|_| TargetError::InvalidUtf8)?;
    let encoded = String::from_utf8(join(kept.iter().map(|s| s.encoded.as_bytes()), trailing_slash))
        .map_err(|_| TargetError::InvalidUtf8)?;
    let stripped = if kept.iter().any(|s| s.before_param < s.decoded.len()) {
        let parts: Vec<&[u8]> = kept
            .iter()
            .map(|s| &s.decoded[..s.before_param])
            .filter(|p| !p.is_empty())
            .collect();
        let last_empty = kept.last().is_some_and(|s| s.before_param == 0);
        let bytes = join(parts.into_iter(), trailing_slash || last_empty);
        Some(String::from_utf8(bytes).map_err(|_| TargetError::InvalidUtf8)?)
    } else {
        None
    };
    Ok(Rewritten {
        path,
        encoded,
        stripped,
        raw: mode == PathMode::Raw,
    })
}

/// `/` + segments joined by `/`, plus a trailing `/` when asked; the root is `/`.
fn join<'s>(segments: impl Iterator<Item = &'s [u8]>, trailing_slash: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for s in segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || trailing_slash {
        out.push(b'/');
    }
    out
}

enum Dot {
    Current,
    Parent,
}

/// Whether a decoded segment is `.` or `..`; a dot segment with a parameter is an error.
fn dot_kind(decoded: &[u8], mode: PathMode) -> Result<Option<Dot>, TargetError> {
    let name = decoded.split(|&b| b == b';').next().unwrap_or_default();
    let dot = match name {
        b"." => Dot::Current,
        b".." => Dot::Parent,
        _ => return Ok(None),
    };
    if name.len() == decoded.len() {
        Ok(Some(dot))
    } else if mode == PathMode::Raw {
        Ok(None)
    } else {
        Err(TargetError::DotSegmentParameter)
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// Decodes one raw segment, refusing what the canonical form cannot carry.
fn decode_segment(raw: &[u8], mode: PathMode) -> Result<Segment, TargetError> {
    let mut decoded = Vec::with_capacity(raw.len());
    let mut encoded = String::with_capacity(raw.len());
    let mut before_param = None;
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let (byte, was_escaped) = if b == b'%' {
            let hi = raw.get(i + 1).copied().and_then(hex_value);
            let lo = raw.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(TargetError::InvalidPercentEncoding);
            };
            i += 3;
            ((hi << 4) | lo, true)
        } else {
            i += 1;
            (b, false)
        };
        if byte < 0x20 || byte == 0x7f {
            return Err(TargetError::ControlCharacter);
        }
        if was_escaped && (byte == b'/' || byte == b'\\') && mode == PathMode::Canonical {
            return Err(TargetError::EncodedSeparator);
        }
        if !was_escaped && byte == b'#' {
            return Err(TargetError::Fragment);
        }
        if !was_escaped && byte == b';' && before_param.is_none() {
            before_param = Some(decoded.len());
        }
        if unreserved(byte) || (!was_escaped && pchar_delimiter(byte)) {
            encoded.push(char::from(byte));
        } else {
            push_escaped(&mut encoded, byte);
        }
        decoded.push(byte);
    }
    Ok(Segment {
        before_param: before_param.unwrap_or(decoded.len()),
        decoded,
        encoded,
    })
}

/// Decodes every `%XX` of `s` exactly once; `None` for a `%` not followed by two hex digits.
/// Shared by redirect checks, so every value is read the same way.
pub fn decode_percent(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value)?;
            let lo = bytes.get(i + 2).copied().and_then(hex_value)?;
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// The value of one hexadecimal digit (either case).
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
