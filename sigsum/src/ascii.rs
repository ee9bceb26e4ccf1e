//! The Sigsum v1 ASCII key=value codec (log.md section 2.2.1), as strict as sigsum-go:
//! keys in the specified order, every line `\n`-terminated, no CR, lowercase-or-uppercase hex
//! of exact length, decimals without leading zeros and at most 2^63 - 1, multi-value lines
//! separated by exactly one space, nothing after the last expected line.

use std::fmt::Write as _;
use thiserror::Error;

/// Largest integer the wire format allows.
pub const MAX_INT: u64 = (1 << 63) - 1;

/// Why a body did not parse. The message is meant for a human reading a 400 response.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AsciiError {
    /// The input ended where another line was expected.
    #[error("unexpected end of input, expected key {0:?}")]
    MissingKey(&'static str),
    /// The last line has no terminating newline.
    #[error("last line is not terminated by a newline")]
    Unterminated,
    /// A line contains a carriage return.
    #[error("line {0} contains a carriage return")]
    CarriageReturn(usize),
    /// A line has no `=`.
    #[error("line {0} is not of the form key=value")]
    NoEquals(usize),
    /// A line has a different key than the one expected at that position.
    #[error("line {line}: expected key {expected:?}, got {got:?}")]
    WrongKey {
        /// Line number, from 1.
        line: usize,
        /// Key the format requires here.
        expected: &'static str,
        /// Key found.
        got: String,
    },
    /// A value is not valid for its type.
    #[error("line {line}: invalid value for {key:?}: {reason}")]
    BadValue {
        /// Line number, from 1.
        line: usize,
        /// Key of the line.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// More lines follow the last expected one.
    #[error("unexpected data after the last line (line {0})")]
    TrailingData(usize),
    /// A repeated key appears too few or too many times.
    #[error("key {key:?} must appear {min} to {max} times, got {got}")]
    Count {
        /// The repeated key.
        key: &'static str,
        /// Minimum count.
        min: usize,
        /// Maximum count.
        max: usize,
        /// Count found (or the count at which parsing stopped).
        got: usize,
    },
}

/// Why text is not a plain decimal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DigitsError {
    /// Empty, or holding something other than 0-9 (a sign, a space, a separator).
    #[error("not a decimal number")]
    NotDigits,
    /// More than 64 bits hold.
    #[error("too large")]
    TooLarge,
}

/// Parses one or more ASCII digits, nothing else: unlike `u64::from_str`, no leading `+`.
/// Leading zeros are accepted; the Sigsum wire format refuses them ([`parse_int`]).
pub fn parse_digits(s: &str) -> Result<u64, DigitsError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DigitsError::NotDigits);
    }
    s.parse().map_err(|_| DigitsError::TooLarge)
}

/// Parses a decimal as the wire format requires: `0|[1-9][0-9]*`, at most 2^63 - 1.
pub fn parse_int(s: &str) -> Result<u64, String> {
    let v = parse_digits(s);
    if v == Err(DigitsError::NotDigits) {
        return Err(format!("{s:?} is not a decimal number"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!("{s:?} has a leading zero"));
    }
    match v {
        Ok(v) if v <= MAX_INT => Ok(v),
        _ => Err(format!("{s:?} is larger than 2^63-1")),
    }
}

/// Parses exactly `N` bytes of hex (either case).
pub fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], String> {
    if s.len() != 2 * N {
        return Err(format!("expected {} hex digits, got {}", 2 * N, s.len()));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| format!("{s:?} is not hex"))?;
    Ok(out)
}

/// Reads a body line by line in a fixed key order.
pub struct Parser<'a> {
    rest: &'a str,
    line: usize,
}

impl<'a> Parser<'a> {
    /// Starts parsing `input`. Non-UTF-8 input cannot be valid and is rejected at once.
    pub fn new(input: &'a [u8]) -> Result<Parser<'a>, AsciiError> {
        let rest = std::str::from_utf8(input).map_err(|_| AsciiError::BadValue {
            line: 0,
            key: "",
            reason: "input is not ASCII".into(),
        })?;
        Ok(Parser { rest, line: 0 })
    }

    /// True when all input has been consumed.
    pub fn at_end(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next line's value for `key`.
    pub fn value(&mut self, key: &'static str) -> Result<&'a str, AsciiError> {
        if self.rest.is_empty() {
            return Err(AsciiError::MissingKey(key));
        }
        let nl = self.rest.find('\n').ok_or(AsciiError::Unterminated)?;
        let line = &self.rest[..nl];
        self.rest = &self.rest[nl + 1..];
        self.line += 1;
        if line.contains('\r') {
            return Err(AsciiError::CarriageReturn(self.line));
        }
        let eq = line.find('=').ok_or(AsciiError::NoEquals(self.line))?;
        if &line[..eq] != key {
            return Err(AsciiError::WrongKey {
                line: self.line,
                expected: key,
                got: line[..eq].to_string(),
            });
        }
        Ok(&line[eq + 1..])
    }

    /// An invalid-value error for `key` at the line just read.
    pub fn invalid(&self, key: &'static str, reason: String) -> AsciiError {
        AsciiError::BadValue {
            line: self.line,
            key,
            reason,
        }
    }

    /// The next line as a decimal integer.
    pub fn int(&mut self, key: &'static str) -> Result<u64, AsciiError> {
        let v = self.value(key)?;
        parse_int(v).map_err(|r| self.invalid(key, r))
    }

    /// The next line as `N` bytes of hex.
    pub fn hex<const N: usize>(&mut self, key: &'static str) -> Result<[u8; N], AsciiError> {
        let v = self.value(key)?;
        parse_hex::<N>(v).map_err(|r| self.invalid(key, r))
    }

    /// The next line as exactly `count` values separated by single spaces.
    pub fn values(&mut self, key: &'static str, count: usize) -> Result<Vec<&'a str>, AsciiError> {
        let v = self.value(key)?;
        let parts: Vec<&str> = v.split(' ').collect();
        if parts.len() != count {
            return Err(self.invalid(
                key,
                format!(
                    "expected {count} space-separated values, got {}",
                    parts.len()
                ),
            ));
        }
        Ok(parts)
    }

    /// Parses the remaining lines, all with `key`, with `each`, requiring `min..=max` of them.
    pub fn repeated<T>(
        &mut self,
        key: &'static str,
        min: usize,
        max: usize,
        mut each: impl FnMut(&mut Parser<'a>) -> Result<T, AsciiError>,
    ) -> Result<Vec<T>, AsciiError> {
        let mut out = Vec::new();
        while !self.at_end() {
            if out.len() == max {
                return Err(AsciiError::Count {
                    key,
                    min,
                    max,
                    got: out.len() + 1,
                });
            }
            out.push(each(self)?);
        }
        if out.len() < min {
            return Err(AsciiError::Count {
                key,
                min,
                max,
                got: out.len(),
            });
        }
        Ok(out)
    }

    /// Requires that nothing follows.
    pub fn end(&self) -> Result<(), AsciiError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(AsciiError::TrailingData(self.line + 1))
        }
    }
}

/// Builds a body in the wire format: lowercase hex, one `key=value\n` per call.
#[derive(Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    /// An empty body.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// `key=<decimal>`.
    pub fn int(&mut self, key: &str, v: u64) -> &mut Writer {
        let _ = writeln!(self.out, "{key}={v}");
        self
    }

    /// `key=<lowercase hex>`.
    pub fn hex(&mut self, key: &str, v: &[u8]) -> &mut Writer {
        let _ = writeln!(self.out, "{key}={}", hex::encode(v));
        self
    }

    /// `key=<v1> <v2> ...` with each value already formatted.
    pub fn values(&mut self, key: &str, vs: &[&str]) -> &mut Writer {
        let _ = writeln!(self.out, "{key}={}", vs.join(" "));
        self
    }

    /// The finished body.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_int("0"), Ok(0));
        assert_eq!(parse_int("10"), Ok(10));
        assert_eq!(parse_int("9223372036854775807"), Ok(MAX_INT));
        for bad in [
            "",
            "01",
            "00",
            "+1",
            "-1",
            "1 ",
            " 1",
            "9223372036854775808",
            "1e3",
            "0x1",
        ] {
            assert!(parse_int(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn plain_digits() {
        assert_eq!(parse_digits("007"), Ok(7));
        assert_eq!(parse_digits("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_digits("18446744073709551616"),
            Err(DigitsError::TooLarge)
        );
        for bad in ["", "+1", "-1", " 1", "1 ", "1_000", "1.0", "١"] {
            assert_eq!(parse_digits(bad), Err(DigitsError::NotDigits), "{bad:?}");
        }
        // The wire format's messages are unchanged by the shared parser.
        assert_eq!(parse_int("00").unwrap_err(), "\"00\" has a leading zero");
        assert_eq!(
            parse_int("99999999999999999999").unwrap_err(),
            "\"99999999999999999999\" is larger than 2^63-1"
        );
    }

    #[test]
    fn hex_values() {
        assert_eq!(parse_hex::<2>("abCD"), Ok([0xab, 0xcd]));
        assert!(parse_hex::<2>("abc").is_err());
        assert!(parse_hex::<2>("abcdef").is_err());
        assert!(parse_hex::<2>("zzzz").is_err());
    }

    #[test]
    fn strict_lines() {
        let mut p = Parser::new(b"a=1\nb=2\n").unwrap();
        assert_eq!(p.int("a"), Ok(1));
        assert_eq!(p.int("b"), Ok(2));
        assert_eq!(p.end(), Ok(()));

        let mut p = Parser::new(b"a=1").unwrap();
        assert_eq!(p.int("a"), Err(AsciiError::Unterminated));

        let mut p = Parser::new(b"a=1\r\n").unwrap();
        assert_eq!(p.int("a"), Err(AsciiError::CarriageReturn(1)));

        let mut p = Parser::new(b"b=1\n").unwrap();
        assert!(matches!(p.int("a"), Err(AsciiError::WrongKey { .. })));

        let mut p = Parser::new(b"a1\n").unwrap();
        assert_eq!(p.int("a"), Err(AsciiError::NoEquals(1)));

        let mut p = Parser::new(b"a=1\nextra\n").unwrap();
        p.int("a").unwrap();
        assert_eq!(p.end(), Err(AsciiError::TrailingData(2)));

        let mut p = Parser::new(b"").unwrap();
        assert_eq!(p.int("a"), Err(AsciiError::MissingKey("a")));

        assert!(Parser::new(&[0xff, b'\n']).is_err());
    }

    #[test]
    fn the_key_ends_at_the_first_equals() {
        let mut p = Parser::new(b"a==1\n").unwrap();
        assert!(matches!(p.int("a"), Err(AsciiError::BadValue { .. })));
        let mut p = Parser::new(b"a=b=c\n").unwrap();
        assert_eq!(p.value("a"), Ok("b=c"));
    }

    #[test]
    fn multi_values_use_single_spaces() {
        let mut p = Parser::new(b"x=a b c\n").unwrap();
        assert_eq!(p.values("x", 3).unwrap(), vec!["a", "b", "c"]);
        let mut p = Parser::new(b"x=a  b\n").unwrap();
        assert!(p.values("x", 2).is_err());
        let mut p = Parser::new(b"x=a b \n").unwrap();
        assert!(p.values("x", 2).is_err());
    }

    #[test]
    fn repeated_counts() {
        let body = b"n=1\nn=2\nn=3\n";
        let mut p = Parser::new(body).unwrap();
        assert_eq!(
            p.repeated("n", 1, 3, |p| p.int("n")).unwrap(),
            vec![1, 2, 3]
        );
        let mut p = Parser::new(body).unwrap();
        assert!(matches!(
            p.repeated("n", 1, 2, |p| p.int("n")),
            Err(AsciiError::Count { got: 3, .. })
        ));
        let mut p = Parser::new(b"").unwrap();
        assert!(matches!(
            p.repeated("n", 1, 2, |p| p.int("n")),
            Err(AsciiError::Count { got: 0, .. })
        ));
    }

    #[test]
    fn writer_round_trips() {
        let body = Writer::new()
            .int("size", 7)
            .hex("root_hash", &[0xAB; 2])
            .values("leaf", &["01", "02"])
            .finish();
        assert_eq!(body, "size=7\nroot_hash=abab\nleaf=01 02\n");
        let mut p = Parser::new(body.as_bytes()).unwrap();
        assert_eq!(p.int("size"), Ok(7));
        assert_eq!(p.hex::<2>("root_hash"), Ok([0xab; 2]));
        assert_eq!(p.values("leaf", 2).unwrap(), vec!["01", "02"]);
        p.end().unwrap();
    }
}
