//! Heap allocations of the whole OpenAI → OpenAI non-streamed request path — client socket in,
//! admission, routing, the upstream exchange, the relay, usage and metrics — counted with a
//! global counting allocator and bounded. The upstream and the client here are written to
//! allocate nothing per request (fixed buffers, std sockets), so what the count sees is the
//! gateway's own: its workers, its control thread and its usage recorder. One test in this
//! binary, so no other test thread allocates meanwhile.
//!
//! The bound is the measured figure with headroom, not a target: a change that adds
//! allocations to every request fails here and has to say why (README, Performance).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // blocking test sockets

mod common;

use std::alloc::System;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations per request the gateway may make on this path. Measured 2026-12-06: 18.3
/// allocations and ~3.3 KB per request (usage log on, one worker); README, Performance.
const MAX_ALLOCATIONS_PER_REQUEST: f64 = 24.0;
/// Bytes allocated per request, at most.
const MAX_BYTES_PER_REQUEST: f64 = 6.0 * 1024.0;

const ANSWER: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}"#;
const BODY: &[u8] =
    br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;

/// Where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The Content-Length of a head (ASCII, case-insensitive), without allocating.
fn content_length(head: &[u8]) -> usize {
    for line in head.split(|b| *b == b'\n') {
        let l = line.strip_suffix(b"\r").unwrap_or(line);
        if l.len() > 15 && l[..15].eq_ignore_ascii_case(b"content-length:") {
            let digits = l[15..].trim_ascii();
            return digits
                .iter()
                .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
        }
    }
    0
}

/// Reads one HTTP/1.1 message (head + Content-Length body) into `buf`; its length, or None
/// at EOF.
fn read_message(s: &mut TcpStream, buf: &mut [u8]) -> Option<usize> {
    let mut have = 0;
    loop {
        if let Some(end) = find(&buf[..have], b"\r\n\r\n") {
            let total = end + 4 + content_length(&buf[..end]);
            while have < total {
                let n = s.read(&mut buf[have..]).ok()?;
                if n == 0 {
                    return None;
                }
                have += n;
            }
            return Some(total);
        }
        let n = s.read(&mut buf[have..]).ok()?;
        if n == 0 {
            return None;
        }
        have += n;
    }
}

/// An upstream that answers every request on every connection with `ANSWER`, from fixed
/// buffers.
fn upstream() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut head = Vec::new();
    write!(
        head,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        ANSWER.len()
    )
    .unwrap();
    let mut answer = head;
    answer.extend_from_slice(ANSWER);
    let answer: &'static [u8] = answer.leak();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                while read_message(&mut s, &mut buf).is_some() {
                    if s.write_all(answer).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn the_openai_request_path_allocates_a_bounded_amount_per_request() {
    let up = upstream();
    let gw = common::gateway(
        "io_uring_or_auto",
        &format!(
            "workers = 1\n\n[usage]\nlog = true\n{}",
            common::one_channel(up, &["gpt-4o-mini"])
        ),
    );
    let mut request = Vec::new();
    write!(
        request,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        BODY.len()
    )
    .unwrap();
    request.extend_from_slice(BODY);
    let mut client = TcpStream::connect(gw.local_addr()).unwrap();
    client.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut exchange = |client: &mut TcpStream| {
        client.write_all(&request).unwrap();
        let n = read_message(client, &mut buf).expect("an answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "not a 200");
    };
    // Warm: pools, buffers, the usage file, the histograms' buckets.
    for _ in 0..300 {
        exchange(&mut client);
    }
    const N: usize = 2000;
    let region = Region::new(GLOBAL);
    for _ in 0..N {
        exchange(&mut client);
    }
    let stats = region.change();
    let per_request = stats.allocations as f64 / N as f64;
    let bytes = stats.bytes_allocated as f64 / N as f64;
    eprintln!(
        "{N} requests: {:.2} allocations ({:.2} reallocations, {bytes:.0} bytes) per request",
        per_request,
        stats.reallocations as f64 / N as f64,
    );
    assert!(
        per_request <= MAX_ALLOCATIONS_PER_REQUEST,
        "{per_request:.2} allocations per request, over the documented {MAX_ALLOCATIONS_PER_REQUEST}"
    );
    assert!(
        bytes <= MAX_BYTES_PER_REQUEST,
        "{bytes:.0} bytes allocated per request, over the documented {MAX_BYTES_PER_REQUEST}"
    );
}
