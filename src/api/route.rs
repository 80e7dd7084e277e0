//! The routing dry run: `POST /v1/route` takes a chat request and answers with the ranked
//! candidates, each with its score breakdown, and every matched entry that a filter removed
//! with the reason — without calling any upstream. `smart-ai-router route` prints the same.
//!
//! Invariants: a dry run never changes routing state (round-robin counters, trials).

use std::time::Instant;

use crate::json;
use crate::routing::{Attempt, Ranking, Scored};
use crate::snapshot::Snapshot;

/// The dry-run document (DESIGN.md §4a).
pub(crate) fn render(
    snap: &Snapshot,
    requested: &str,
    ranking: &Ranking<'_>,
    now: Instant,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(256 + ranking.candidates.len() * 300);
    b.extend_from_slice(b"{\"model\":");
    json::write_str(&mut b, requested);
    b.extend_from_slice(b",\"strategy\":");
    json::write_str(&mut b, ranking.strategy);
    b.extend_from_slice(b",\"panic\":");
    b.extend_from_slice(if ranking.panic { b"true" } else { b"false" });
    b.extend_from_slice(b",\"candidates\":[");
    for (i, c) in ranking.candidates.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        candidate(&mut b, snap, c);
    }
    b.extend_from_slice(b"],\"rejected\":[");
    for (i, r) in ranking.rejected.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        let e = &snap.catalog.entries[r.entry as usize];
        let ch = &snap.channels[e.channel as usize];
        b.extend_from_slice(b"{\"channel\":");
        json::write_str(&mut b, &ch.id);
        b.extend_from_slice(b",\"model\":");
        json::write_str(&mut b, &e.model);
        b.extend_from_slice(b",\"reason\":");
        json::write_str(&mut b, &r.reason.describe(now));
        b.push(b'}');
    }
    b.extend_from_slice(b"]}");
    b
}

fn candidate(b: &mut Vec<u8>, snap: &Snapshot, c: &Scored) {
    let e = &snap.catalog.entries[c.entry as usize];
    let ch = &snap.channels[e.channel as usize];
    b.extend_from_slice(b"{\"channel\":");
    json::write_str(b, &ch.id);
    b.extend_from_slice(b",\"provider\":");
    json::write_str(b, &ch.provider);
    b.extend_from_slice(b",\"model\":");
    json::write_str(b, &e.model);
    b.extend_from_slice(b",\"priority\":");
    b.extend_from_slice(itoa::Buffer::new().format(ch.priority).as_bytes());
    b.extend_from_slice(b",\"score\":");
    num(b, c.score);
    let s = &c.scores;
    b.extend_from_slice(b",\"scores\":{");
    for (k, (name, v)) in [
        ("cost", s.cost),
        ("speed", s.speed),
        ("quality", s.quality),
        ("reliability", s.reliability),
        ("context", s.context),
        ("parameters", s.parameters),
        ("free", s.free),
        ("local", s.local),
    ]
    .into_iter()
    .enumerate()
    {
        if k > 0 {
            b.push(b',');
        }
        json::write_key(b, name);
        num(b, v);
    }
    b.extend_from_slice(b"},\"half_open\":");
    b.extend_from_slice(if c.attempt == Attempt::Trial {
        b"true"
    } else {
        b"false"
    });
    b.extend_from_slice(b",\"attempt\":");
    json::write_str(
        b,
        match c.attempt {
            Attempt::Normal => "normal",
            Attempt::Trial => "trial",
            Attempt::Panic => "panic",
        },
    );
    b.push(b'}');
}

fn num(b: &mut Vec<u8>, v: f32) {
    use std::io::Write as _;
    let v = if v.is_finite() { v } else { 0.0 };
    let _ = write!(b, "{v:.4}");
}
