//! W3C trace context (`traceparent`) for OpenTelemetry spans: reading the client's, deciding
//! whether a request is traced (parent-based, else by ratio), and writing the one the gateway
//! sends upstream (its attempt span as the parent).
//!
//! Invariants: pure and allocation-free (ids are fixed arrays, the header an `ArrayString`);
//! a client's sampled parent is always honoured and an unsampled one never overridden.
//! Not here: span data and export (`usage::Traced`, `telemetry`).

use arrayvec::ArrayString;

/// A valid client `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parent {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// The client's span (the gateway's server span's parent).
    pub span_id: [u8; 8],
    /// Flags bit 0: the client's tracer recorded its span.
    pub sampled: bool,
}

/// The trace a request belongs to, as the gateway continues it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Context {
    /// The client's trace id, or a new one.
    pub trace_id: [u8; 16],
    /// The client's span, if it sent a `traceparent`.
    pub parent: Option<[u8; 8]>,
    /// The gateway's server span.
    pub span_id: [u8; 8],
    /// Spans are recorded and exported.
    pub sampled: bool,
}

/// `traceparent` as sent upstream: `00-<trace>-<span>-<flags>`.
pub(crate) type Header = ArrayString<55>;

impl Context {
    /// The context of a request: the client's `traceparent` (if valid) decides; without one a
    /// new trace is sampled with probability `ratio`. `random` yields fresh 64-bit values.
    pub(crate) fn begin(
        traceparent: Option<&[u8]>,
        ratio: f64,
        mut random: impl FnMut() -> u64,
    ) -> Context {
        let parent = traceparent.and_then(parse);
        let span_id = span_id(&mut random);
        match parent {
            Some(p) => Context {
                trace_id: p.trace_id,
                parent: Some(p.span_id),
                span_id,
                sampled: p.sampled,
            },
            None => {
                let hi = random();
                let lo = random();
                let mut trace_id = [0u8; 16];
                trace_id[..8].copy_from_slice(&hi.to_be_bytes());
                trace_id[8..].copy_from_slice(&lo.to_be_bytes());
                if trace_id == [0; 16] {
                    trace_id[15] = 1;
                }
                // 53 random bits as a uniform share in [0, 1).
                let share = (lo >> 11) as f64 / (1u64 << 53) as f64;
                Context {
                    trace_id,
                    parent: None,
                    span_id,
                    sampled: share < ratio,
                }
            }
        }
    }

    /// The `traceparent` naming `span` (an attempt's) as the parent, in this trace.
    pub(crate) fn header(&self, span: &[u8; 8]) -> Header {
        let mut h = Header::new();
        h.push_str("00-");
        push_hex(&mut h, &self.trace_id);
        h.push('-');
        push_hex(&mut h, span);
        h.push_str(if self.sampled { "-01" } else { "-00" });
        h
    }
}

/// A fresh, non-zero span id.
pub(crate) fn span_id(random: &mut impl FnMut() -> u64) -> [u8; 8] {
    let v = random();
    (if v == 0 { 1 } else { v }).to_be_bytes()
}

fn push_hex<const N: usize>(out: &mut ArrayString<N>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

/// Lower-case hex of `bytes` (span and trace ids for the OTLP JSON mapping and logs).
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = ArrayString::<64>::new();
    push_hex(&mut s, &bytes[..bytes.len().min(32)]);
    s.to_string()
}

/// A W3C `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`), if valid: lower-case hex, ids
/// not all zeros, version not `ff`; later versions may append `-…`.
pub(crate) fn parse(traceparent: &[u8]) -> Option<Parent> {
    let v = traceparent.trim_ascii();
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let (version, id, parent, flags) = (&v[..2], &v[3..35], &v[36..52], &v[53..55]);
    if version == b"ff" || (v.len() > 55 && (version == b"00" || v[55] != b'-')) {
        return None;
    }
    let version = unhex::<1>(version)?;
    let _ = version;
    let trace_id = unhex::<16>(id)?;
    let span_id = unhex::<8>(parent)?;
    let flags = unhex::<1>(flags)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags[0] & 1 == 1,
    })
}

fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    if s.len() != 2 * N {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(s[2 * i])? << 4 | digit(s[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_client_parent_decides_and_its_trace_continues() {
        let mut n = 0u64;
        let mut rnd = || {
            n += 1;
            n
        };
        let c = Context::begin(Some(TP), 0.0, &mut rnd);
        assert!(c.sampled, "a sampled parent wins over ratio 0");
        assert_eq!(hex(&c.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            c.parent.map(|p| hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        let h = c.header(&[0xab; 8]);
        assert_eq!(
            h.as_str(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-abababababababab-01"
        );
        assert_eq!(parse(h.as_bytes()).map(|p| p.span_id), Some([0xab; 8]));
        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let c = Context::begin(Some(unsampled), 1.0, &mut rnd);
        assert!(!c.sampled, "an unsampled parent wins over ratio 1");
        assert!(c.header(&[1; 8]).ends_with("-00"));
    }

    #[test]
    fn without_a_parent_the_ratio_decides() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut rnd = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x
        };
        let none = (0..1000)
            .filter(|_| Context::begin(None, 0.0, &mut rnd).sampled)
            .count();
        let all = (0..1000)
            .filter(|_| Context::begin(None, 1.0, &mut rnd).sampled)
            .count();
        let half = (0..1000)
            .filter(|_| Context::begin(Some(b"garbage"), 0.5, &mut rnd).sampled)
            .count();
        assert_eq!((none, all), (0, 1000));
        assert!((350..650).contains(&half), "{half}");
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later").is_some());
    }
}
