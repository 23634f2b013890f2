//! Formatting one log line into a reusable byte buffer: JSON or `key=value` text, with the
//! timestamp, numbers and escaping written by hand (no `serde`, no `fmt` machinery for the
//! common fields), so a line costs about a microsecond.

use std::cell::Cell;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::logging::LogFormat;

/// One line being written: `begin`, fields, `end`.
pub struct Line<'b> {
    buf: &'b mut Vec<u8>,
    format: LogFormat,
}

impl<'b> Line<'b> {
    /// Starts a line of `target` at level INFO, stamped with the current time.
    pub fn begin(buf: &'b mut Vec<u8>, format: LogFormat, target: &str) -> Line<'b> {
        buf.clear();
        match format {
            LogFormat::Json => {
                buf.extend_from_slice(b"{\"timestamp\":\"");
                timestamp(buf, SystemTime::now());
                buf.extend_from_slice(b"\",\"level\":\"INFO\",\"target\":\"");
                json_escape(buf, target);
                buf.push(b'"');
            }
            LogFormat::Text => {
                timestamp(buf, SystemTime::now());
                buf.extend_from_slice(b"  INFO ");
                buf.extend_from_slice(target.as_bytes());
                buf.push(b':');
            }
        }
        Line { buf, format }
    }

    fn key(&mut self, key: &str) {
        match self.format {
            LogFormat::Json => {
                self.buf.extend_from_slice(b",\"");
                self.buf.extend_from_slice(key.as_bytes());
                self.buf.extend_from_slice(b"\":");
            }
            LogFormat::Text => {
                self.buf.push(b' ');
                self.buf.extend_from_slice(key.as_bytes());
                self.buf.push(b'=');
            }
        }
    }

    /// A string field (escaped; `-` in text when empty).
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        match self.format {
            LogFormat::Json => {
                self.buf.push(b'"');
                json_escape(self.buf, value);
                self.buf.push(b'"');
            }
            LogFormat::Text => text_value(self.buf, value),
        }
        self
    }

    /// A string field, or JSON `null` / text `-` when absent.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    fn null(&mut self, key: &str) -> &mut Self {
        self.key(key);
        self.buf.extend_from_slice(match self.format {
            LogFormat::Json => b"null",
            LogFormat::Text => b"-",
        });
        self
    }

    /// An unsigned integer field.
    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// A duration in milliseconds with three decimals (microsecond resolution).
    pub fn millis(&mut self, key: &str, value: Duration) -> &mut Self {
        self.key(key);
        millis(self.buf, value);
        self
    }

    /// A duration in milliseconds, or null / `-`.
    pub fn opt_millis(&mut self, key: &str, value: Option<Duration>) -> &mut Self {
        match value {
            Some(v) => self.millis(key, v),
            None => self.null(key),
        }
    }

    /// A field written with `Display` (addresses: no characters that need escaping), or null.
    pub fn display<T: std::fmt::Display>(&mut self, key: &str, value: Option<T>) -> &mut Self {
        let Some(value) = value else { return self.null(key) };
        self.key(key);
        let quote = self.format == LogFormat::Json;
        if quote {
            self.buf.push(b'"');
        }
        let _ = write!(self.buf, "{value}");
        if quote {
            self.buf.push(b'"');
        }
        self
    }

    /// Ends the line (`}` and the newline).
    pub fn end(self) {
        if self.format == LogFormat::Json {
            self.buf.push(b'}');
        }
        self.buf.push(b'\n');
    }
}

/// Appends `micros / 1000` `.` `micros % 1000`, e.g. `12.045`.
fn millis(buf: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros().min(u128::from(u64::MAX)) as u64;
    buf.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    let frac = micros % 1000;
    buf.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Appends `s` escaped for a JSON string (RFC 8259: `"`, `\` and control characters).
pub fn json_escape(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(b >> 4)]);
            buf.push(HEX[usize::from(b & 0xf)]);
        } else {
            buf.extend_from_slice(escaped);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

/// A text value: as is when it is a plain token, else quoted and escaped like JSON.
fn text_value(buf: &mut Vec<u8>, s: &str) {
    if s.is_empty() {
        buf.push(b'-');
    } else if s
        .bytes()
        .all(|b| b > b' ' && b != b'"' && b != b'\\' && b != b'=' && b != 0x7f)
    {
        buf.extend_from_slice(s.as_bytes());
    } else {
        buf.push(b'"');
        json_escape(buf, s);
        buf.push(b'"');
    }
}

thread_local! {
    /// The last formatted second: (Unix seconds, `YYYY-MM-DDTHH:MM:SS`).
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// Appends an RFC 3339 UTC timestamp with microseconds, `2026-11-30T06:07:13.123456Z`.
pub fn timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        text = civil(secs);
        SECOND.set((secs, text));
    }
    buf.extend_from_slice(&text);
    let micros = since.subsec_micros();
    let mut frac = [b'.', 0, 0, 0, 0, 0, 0, b'Z'];
    let mut m = micros;
    for slot in frac[1..7].iter_mut().rev() {
        *slot = b'0' + (m % 10) as u8;
        m /= 10;
    }
    buf.extend_from_slice(&frac);
}

/// `YYYY-MM-DDTHH:MM:SS` of Unix time `secs` (UTC; Howard Hinnant's `civil_from_days`).
fn civil(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, rem / 3600);
    put(14, 2, rem / 60 % 60);
    put(17, 2, rem % 60);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut buf = Vec::new();
        json_escape(&mut buf, s);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn json_escaping_round_trips_through_a_json_parser() {
        for s in ["plain", "a\"b\\c", "new\nline\r\t", "\u{1}\u{1f}\u{7f}", "é ü 日本", ""] {
            let json = format!("\"{}\"", escaped(s));
            let back: String = serde_json::from_str(&json).unwrap();
            assert_eq!(back, s, "{json}");
        }
        assert_eq!(escaped("\u{1}"), "\\u0001");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let mut buf = Vec::new();
        timestamp(&mut buf, UNIX_EPOCH + Duration::new(1_796_019_233, 4_560_000));
        assert_eq!(String::from_utf8(buf).unwrap(), "2026-11-30T06:13:53.004560Z");
        let mut buf = Vec::new();
        timestamp(&mut buf, UNIX_EPOCH + Duration::new(951_782_400, 0)); // a leap day
        assert_eq!(String::from_utf8(buf).unwrap(), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn json_lines_parse_and_text_lines_quote_what_needs_it() {
        let mut buf = Vec::new();
        let mut line = Line::begin(&mut buf, LogFormat::Json, "authgate::access");
        line.str("path", "/a\"b")
            .opt_str("user", None)
            .u64("status", 200)
            .millis("duration_ms", Duration::from_micros(12_045))
            .display("client", Some(std::net::Ipv4Addr::LOCALHOST));
        line.end();
        assert_eq!(buf.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["target"], "authgate::access");
        assert_eq!(v["path"], "/a\"b");
        assert_eq!(v["user"], serde_json::Value::Null);
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"].as_f64(), Some(12.045));
        assert_eq!(v["client"], "127.0.0.1");

        let mut line = Line::begin(&mut buf, LogFormat::Text, "authgate::access");
        line.str("host", "a.example.com").str("path", "/a b").str("app", "");
        line.end();
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.contains(" INFO authgate::access: host=a.example.com path=\"/a b\" app=-\n"),
            "{text}"
        );
    }
}
