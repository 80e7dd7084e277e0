//! Secrets and their fingerprints: the redacting [`Secret`] wrapper for API keys and tokens,
//! SHA-256 digests of client keys (stored and compared instead of the keys), their hex form,
//! short fingerprints for admin output, and constant-time comparison.
//!
//! Invariants: a `Secret` never prints itself (`Debug` and `Display` show `***`); comparisons
//! of secrets take a time that does not depend on where they differ (`subtle`). Pure, no I/O.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret string (an API key): never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<Box<str>>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place it belongs: the upstream request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// SHA-256 of a presented key.
pub fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// Lower-case hex of a digest.
pub fn hex(d: &[u8; 32]) -> String {
    let mut s = String::with_capacity(64);
    for b in d {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// Parses 64 hex digits (either case).
pub(crate) fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nib(b[2 * i])? << 4 | nib(b[2 * i + 1])?;
    }
    Some(out)
}

/// Equality whose time does not depend on where the inputs differ (their lengths are not
/// secret: a length mismatch answers at once).
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The first 8 hex digits of a secret's SHA-256 (`none` for an empty one): enough to tell two
/// keys apart in admin output, never enough to recover one.
pub(crate) fn fingerprint(secret: &str) -> String {
    if secret.is_empty() {
        return "none".into();
    }
    hex(&digest(secret.as_bytes()))[..8].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_bad_input() {
        let d = digest(b"sk-test");
        assert_eq!(parse_hex(&hex(&d)), Some(d));
        assert_eq!(parse_hex(&hex(&d).to_uppercase()), Some(d));
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(parse_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn constant_time_equality_is_equality() {
        let a = digest(b"a");
        let mut b = a;
        assert!(same(&a, &b));
        b[31] ^= 1;
        assert!(!same(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!same(&a, &b));
        assert!(same(b"abcdefghijklmnop", b"abcdefghijklmnop"));
        assert!(!same(b"abc", b"abcd"));
    }

    #[test]
    fn secrets_never_print_themselves() {
        let s = Secret::new("sk-live-123");
        assert_eq!(format!("{s} {s:?}"), "*** \"***\"");
        assert_eq!(fingerprint("sk-live-123").len(), 8);
        assert_eq!(fingerprint(""), "none");
    }
}
