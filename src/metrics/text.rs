//! The Prometheus text exposition format (0.0.4): `# HELP` and `# TYPE` headers, samples with
//! escaped label values, and histograms as cumulative `_bucket` lines with `le`, `_sum` and
//! `_count`.
//!
//! Invariants: every label value goes through the escaper (backslash, double quote, newline),
//! whatever its type; values are written with Rust's `Display` (`1` for 1.0, full precision
//! otherwise), which Prometheus parses. Not here: which families exist (their owners render
//! them), content negotiation (the admin API sends `text/plain; version=0.0.4`).

use std::fmt::{self, Display, Write as _};

use super::{Histogram, LATENCY_BUCKETS};

/// A metric family's type (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only grows (a reload keeps it).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Bucketed observations with `_sum` and `_count`.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Label names and values of one sample, in order. Values are anything `Display`; they are
/// escaped as they are written.
pub(crate) type Labels<'a> = [(&'a str, &'a dyn Display)];

/// A text-format document being written.
#[derive(Debug, Default)]
pub(crate) struct Text {
    out: String,
}

impl Text {
    /// An empty document with room for `bytes`.
    pub(crate) fn with_capacity(bytes: usize) -> Text {
        Text {
            out: String::with_capacity(bytes),
        }
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Its samples follow.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample: `name{labels} value` (no braces without labels).
    pub(crate) fn sample(&mut self, name: &str, labels: &Labels<'_>, value: impl Display) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// A histogram's `_bucket` lines (cumulative, `le` last among the labels, `+Inf` at the
    /// end), then `_sum` and `_count`.
    pub(crate) fn histogram(&mut self, name: &str, labels: &Labels<'_>, h: &Histogram) {
        let mut cumulative = 0;
        for (i, c) in h.counts.iter().enumerate() {
            cumulative += c;
            let _ = write!(self.out, "{name}_bucket");
            match LATENCY_BUCKETS.get(i) {
                Some(b) => self.labels(labels, Some(b)),
                None => self.labels(labels, Some(&"+Inf")),
            }
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", h.sum);
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", h.count);
    }

    /// The document.
    pub(crate) fn finish(self) -> String {
        self.out
    }

    /// `{a="x",b="y"}` (plus `le` when given); nothing when there are no labels at all.
    fn labels(&mut self, labels: &Labels<'_>, le: Option<&dyn Display>) {
        let le = le.map(|v| ("le", v));
        let mut all = labels.iter().copied().chain(le).peekable();
        if all.peek().is_none() {
            return;
        }
        self.out.push('{');
        for (i, (name, value)) in all.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{name}=\"");
            let _ = write!(Escaped(&mut self.out), "{value}");
            self.out.push('"');
        }
        self.out.push('}');
    }
}

/// Writes through to a string, escaping a label value per the text format.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            match ch {
                '\\' => self.0.push_str("\\\\"),
                '"' => self.0.push_str("\\\""),
                '\n' => self.0.push_str("\\n"),
                c => self.0.push(c),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape(v: &str) -> String {
        let mut s = String::new();
        let _ = Escaped(&mut s).write_str(v);
        s
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_inf() {
        let mut h = Histogram::default();
        h.observe(0.000_07);
        h.observe(0.3);
        h.observe(100.0);
        h.observe(f64::NAN);
        let mut text = Text::default();
        text.histogram("x", &[("a", &"b")], &h);
        let out = text.finish();
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"30\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn samples_and_headers() {
        let mut text = Text::default();
        text.family("n_total", Kind::Counter, "Things.");
        text.sample("n_total", &[], 3);
        text.sample("n_total", &[("k", &"v\""), ("status", &200u16)], 1.5);
        assert_eq!(
            text.finish(),
            "# HELP n_total Things.\n# TYPE n_total counter\nn_total 3\n\
             n_total{k=\"v\\\"\",status=\"200\"} 1.5\n"
        );
    }
}
