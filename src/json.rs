//! A small JSON writer for the documents the layer sends on its hot paths
//! (status and problem documents): objects of strings and numbers written
//! straight into a buffer, byte for byte as `serde_json` writes them, without
//! an intermediate tree, `fmt` or an allocation per field.
//!
//! Kept over `serde_json` on evidence (issue 11, see BENCHMARKS.md): the
//! same documents written by `serde_json` cost 24 % more instructions per
//! `GET` of a status document, most of them escaping keys, ids and
//! timestamps byte by byte, which need no escaping.

use std::cell::RefCell;

use bytes::Bytes;
use serde::Serialize;

/// An object being written: `{`, fields separated by `,`, and `}` on
/// [`end`](Self::end).
pub(crate) struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// A key: the crate's own names, which need no escaping.
    fn key(&mut self, key: &str) {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A string field.
    pub(crate) fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        string(self.out, value);
    }

    /// A string field whose value needs no escaping (ASCII digits, letters,
    /// `-`, `:`); written as it is.
    pub(crate) fn plain(&mut self, key: &str, value: &[u8]) {
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(value);
        self.out.push(b'"');
    }

    /// An unsigned integer field.
    pub(crate) fn uint(&mut self, key: &str, value: u64) {
        self.key(key);
        uint(self.out, value);
    }

    /// A field whose value `serde_json` writes (floats, for its exact
    /// formatting).
    pub(crate) fn serialized<T: Serialize>(&mut self, key: &str, value: &T) {
        self.key(key);
        // Writing to a `Vec` cannot fail, nor can serializing a number.
        let _ = serde_json::to_writer(&mut *self.out, value);
    }

    /// A field holding an object, written by `fill`.
    pub(crate) fn object(&mut self, key: &str, fill: impl FnOnce(&mut Object<'_>)) {
        self.key(key);
        let mut inner = Object::new(self.out);
        fill(&mut inner);
        inner.end();
    }

    pub(crate) fn end(self) {
        self.out.push(b'}');
    }
}

/// A document written by `write` into a buffer kept by the thread, then
/// copied once into a `Bytes` of its exact size: one allocation per
/// document, whatever its length.
pub(crate) fn document(write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            write(&mut buffer);
            let bytes = Bytes::copy_from_slice(&buffer);
            // A rare huge document does not stay in the thread's buffer.
            if buffer.capacity() > 16 * 1024 {
                *buffer = Vec::new();
            }
            bytes
        }
        // Only if `write` itself writes a document.
        Err(_) => {
            let mut buffer = Vec::new();
            write(&mut buffer);
            Bytes::from(buffer)
        }
    })
}

/// Writes `value` as a JSON string, escaped as `serde_json` escapes it:
/// `"` and `\` with a backslash, control characters as `\b`, `\t`, `\n`,
/// `\f`, `\r` or `\u00XX`; everything else, non-ASCII included, as it is.
pub(crate) fn string(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Writes `value` in decimal.
pub(crate) fn uint(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        let cases = [
            "",
            "plain",
            "quote \" and backslash \\ and slash /",
            "tab\tnewline\nreturn\rbackspace\u{8}formfeed\u{c}",
            "nul\u{0} unit separator\u{1f} escape\u{1b} delete\u{7f}",
            "non-ASCII: é, ß, 東京, 🦀, \u{2028}\u{2029}",
            "\"\\\"\\",
            "ends with a control\u{1}",
        ];
        for case in cases {
            assert_eq!(encoded(case), serde_json::to_string(case).unwrap(), "{case:?}");
        }
        // Every single character below 0x80, and a few around it.
        for c in (0u32..0x100).filter_map(char::from_u32) {
            let s = format!("a{c}b");
            assert_eq!(encoded(&s), serde_json::to_string(&s).unwrap(), "{c:?}");
        }
        assert_eq!(encoded("\u{1f}"), r#""\u001f""#);
        assert_eq!(encoded("\u{0}"), r#""\u0000""#);
    }

    #[test]
    fn objects_and_numbers() {
        let mut out = Vec::new();
        let mut object = Object::new(&mut out);
        object.str("a", "x\"y");
        object.uint("n", 0);
        object.uint("m", u64::MAX);
        object.serialized("f", &0.4f32);
        object.serialized("nan", &f32::NAN);
        object.object("o", |inner| inner.plain("p", b"2026"));
        object.end();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":"x\"y","n":0,"m":18446744073709551615,"f":0.4,"nan":null,"o":{"p":"2026"}}"#
        );
    }
}
