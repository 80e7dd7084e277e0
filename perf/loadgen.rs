//! Load generator for `perf/`: the two loads wrk cannot make.
//!
//! - `rate`: open-loop requests at a fixed rate. Request `i` is due at `start + i / rate`
//!   whatever happened to earlier ones; its latency is measured from when it was *due*, not from
//!   when a connection got round to sending it, so a stalled server shows up as latency instead
//!   of as a politely slower client (no coordinated omission).
//! - `streams`: many concurrent SSE streams (`"stream": true` requests), all open at once:
//!   time to first event, the gap between consecutive events, events per stream, `[DONE]` seen,
//!   and stalls (a gap over `--stall-ms`, or a stream that ends without `[DONE]`). With `--pid`
//!   it also samples that process's RSS while the streams are open.
//!
//! One monoio thread (pin it with `taskset`); plain HTTP/1.1 over keep-alive connections, the
//! gateway's own head parser and chunked decoder. Output: one line `LOADGEN key=value …` on
//! stdout (what `perf/*.sh` parse) and optionally every sample with `--raw FILE`.
//!
//! Not part of the gateway: built with `cargo build --release --example loadgen`. It may block
//! (it reads `/proc` and writes its raw file), which the data plane may not.
#![allow(clippy::disallowed_methods)] // a load tool, not the data plane: it may block on /proc

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use monoio::time::Instant;
use smart_ai_router::h1::chunked::Decoder;
use smart_ai_router::h1::head::{Body, ResponseHead};
use smart_ai_router::h1::sse;

const USAGE: &str = "\
usage: loadgen rate    --url URL --body FILE --rate N --seconds S [--connections C] [options]
       loadgen streams --url URL --body FILE --streams N [--ramp-ms MS] [--pid PID] [options]
options: --header 'name: value' (repeatable)  --raw FILE  --stall-ms MS (streams, default 1000)
         --timeout-ms MS (per request, default 10000)  --connect-ms MS (streams: spread the
         connects over this long before the first request, default 1000 + N/8)";

struct Args {
    mode: String,
    addr: SocketAddr,
    request: Rc<Vec<u8>>,
    rate: f64,
    seconds: f64,
    connections: usize,
    streams: usize,
    ramp: Duration,
    connect: Duration,
    stall: Duration,
    timeout: Duration,
    pid: Option<u32>,
    raw: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or(USAGE)?;
    if mode != "rate" && mode != "streams" {
        return Err(USAGE.into());
    }
    let (mut url, mut body, mut headers) = (None, None, Vec::new());
    let mut a = Args {
        mode,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        request: Rc::new(Vec::new()),
        rate: 0.0,
        seconds: 0.0,
        connections: 0,
        streams: 0,
        ramp: Duration::from_millis(250),
        connect: Duration::ZERO,
        stall: Duration::from_millis(1000),
        timeout: Duration::from_secs(10),
        pid: None,
        raw: None,
    };
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{k}: not a number: {v}"))
        };
        let ms = |v: &str| num(v).map(|n| Duration::from_micros((n * 1000.0) as u64));
        match k.as_str() {
            "--url" => url = Some(v),
            "--body" => body = Some(std::fs::read(&v).map_err(|e| format!("--body {v}: {e}"))?),
            "--header" => headers.push(v),
            "--rate" => a.rate = num(&v)?,
            "--seconds" => a.seconds = num(&v)?,
            "--connections" => a.connections = num(&v)? as usize,
            "--streams" => a.streams = num(&v)? as usize,
            "--ramp-ms" => a.ramp = ms(&v)?,
            "--connect-ms" => a.connect = ms(&v)?,
            "--stall-ms" => a.stall = ms(&v)?,
            "--timeout-ms" => a.timeout = ms(&v)?,
            "--pid" => a.pid = Some(num(&v)? as u32),
            "--raw" => a.raw = Some(v),
            _ => return Err(format!("unknown option {k}\n{USAGE}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let rest = url
        .strip_prefix("http://")
        .ok_or("--url: only http:// (loopback benchmarks)")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    a.addr = host
        .parse()
        .map_err(|_| format!("--url: host must be ip:port, not {host}"))?;
    let body = body.ok_or("--body is required")?;
    let mut req = format!(
        "POST {} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        if path.is_empty() { "/" } else { path },
        body.len()
    );
    for h in headers {
        req.push_str(&h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(&body);
    a.request = Rc::new(bytes);
    if a.mode == "rate" && (a.rate <= 0.0 || a.seconds <= 0.0) {
        return Err("rate needs --rate and --seconds".into());
    }
    if a.mode == "streams" && a.streams == 0 {
        return Err("streams needs --streams".into());
    }
    if a.connections == 0 {
        // Enough for the rate times a 20 ms upstream, four times over.
        a.connections = ((a.rate * 0.08) as usize).clamp(16, 4096);
    }
    if a.connect.is_zero() {
        a.connect = Duration::from_millis(1000 + a.streams as u64 / 8);
    }
    Ok(a)
}

/// Why an exchange failed.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Connect,
    Io,
    Closed,
    Malformed,
    Timeout,
}

/// One connection and what it has read past the last response.
struct Conn {
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    async fn ensure(&mut self, addr: SocketAddr) -> Result<&mut TcpStream, Failure> {
        if self.stream.is_none() {
            let s = TcpStream::connect_addr(addr)
                .await
                .map_err(|_| Failure::Connect)?;
            let _ = s.set_nodelay(true);
            self.buf.clear();
            self.stream = Some(s);
        }
        Ok(self.stream.as_mut().expect("just set"))
    }

    async fn read_more(&mut self) -> Result<(), Failure> {
        let s = self.stream.as_mut().ok_or(Failure::Io)?;
        match smart_ai_router::h1::read_into(s, &mut self.buf).await {
            Ok(0) => Err(Failure::Closed),
            Ok(_) => Ok(()),
            Err(_) => Err(Failure::Io),
        }
    }

    /// Sends the request and reads the response head; returns it with its length consumed.
    async fn start(
        &mut self,
        addr: SocketAddr,
        req: &Rc<Vec<u8>>,
    ) -> Result<ResponseHead, Failure> {
        let s = self.ensure(addr).await?;
        let (r, _) = s.write_all(req.clone()).await;
        r.map_err(|_| Failure::Io)?;
        loop {
            match ResponseHead::parse(&self.buf, 64 * 1024, false) {
                Ok(Some(h)) => {
                    self.buf.drain(..h.len);
                    return Ok(h);
                }
                Ok(None) => self.read_more().await?,
                Err(_) => return Err(Failure::Malformed),
            }
        }
    }

    /// Reads a whole body, calling `on_bytes(now, decoded)` as pieces arrive.
    async fn body(
        &mut self,
        head: &ResponseHead,
        mut on_bytes: impl FnMut(Instant, &[u8]),
    ) -> Result<(), Failure> {
        match head.body {
            Body::None => Ok(()),
            Body::Length(n) => {
                let mut left = n as usize;
                loop {
                    let take = left.min(self.buf.len());
                    if take > 0 {
                        on_bytes(Instant::now(), &self.buf[..take]);
                        self.buf.drain(..take);
                        left -= take;
                    }
                    if left == 0 {
                        return Ok(());
                    }
                    self.read_more().await?;
                }
            }
            Body::Chunked => {
                let mut dec = Decoder::new();
                let mut out = Vec::new();
                loop {
                    if !self.buf.is_empty() {
                        out.clear();
                        let used = dec
                            .decode(&self.buf, &mut out)
                            .map_err(|_| Failure::Malformed)?;
                        self.buf.drain(..used);
                        if !out.is_empty() {
                            on_bytes(Instant::now(), &out);
                        }
                    }
                    if dec.is_done() {
                        return Ok(());
                    }
                    self.read_more().await?;
                }
            }
            Body::Close => {
                loop {
                    if !self.buf.is_empty() {
                        on_bytes(Instant::now(), &self.buf);
                        self.buf.clear();
                    }
                    match self.read_more().await {
                        Ok(()) => {}
                        Err(Failure::Closed) => break,
                        Err(e) => return Err(e),
                    }
                }
                self.stream = None;
                Ok(())
            }
        }
    }
}

/// Percentiles of microsecond samples (sorts them).
fn pct(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

fn write_raw(path: &Option<String>, header: &str, rows: &[u64]) {
    let Some(p) = path else { return };
    let mut text = String::with_capacity(rows.len() * 8 + 16);
    text.push_str(header);
    text.push('\n');
    for r in rows {
        text.push_str(&r.to_string());
        text.push('\n');
    }
    if let Err(e) = std::fs::write(p, text) {
        eprintln!("loadgen: --raw {p}: {e}");
    }
}

#[derive(Default)]
struct RateStats {
    latencies: Vec<u64>,
    ok: u64,
    non2xx: u64,
    errors: [u64; 5],
    late: u64,
}

async fn rate(a: Rc<Args>) -> String {
    let total = (a.rate * a.seconds).round() as u64;
    let step = 1.0 / a.rate;
    let start = Instant::now() + Duration::from_millis(200);
    let next = Rc::new(Cell::new(0u64));
    let stats = Rc::new(RefCell::new(RateStats {
        latencies: Vec::with_capacity(total as usize),
        ..RateStats::default()
    }));
    let mut tasks = Vec::with_capacity(a.connections);
    for _ in 0..a.connections {
        let (a, next, stats) = (a.clone(), next.clone(), stats.clone());
        tasks.push(monoio::spawn(async move {
            let mut conn = Conn {
                stream: None,
                buf: Vec::with_capacity(4096),
            };
            loop {
                let i = next.get();
                if i >= total {
                    break;
                }
                next.set(i + 1);
                let due = start + Duration::from_secs_f64(i as f64 * step);
                let now = Instant::now();
                if now < due {
                    monoio::time::sleep_until(due).await;
                } else if now - due > Duration::from_millis(1) {
                    stats.borrow_mut().late += 1;
                }
                let exchange = async {
                    let head = conn.start(a.addr, &a.request).await?;
                    conn.body(&head, |_, _| {}).await?;
                    if !head.keep_alive {
                        conn.stream = None;
                    }
                    Ok::<u16, Failure>(head.status)
                };
                let r = monoio::time::timeout(a.timeout, exchange).await;
                let done = Instant::now();
                let mut st = stats.borrow_mut();
                match r {
                    Ok(Ok(status)) => {
                        st.latencies.push(us(done - due));
                        if (200..300).contains(&status) {
                            st.ok += 1;
                        } else {
                            st.non2xx += 1;
                        }
                    }
                    Ok(Err(f)) => {
                        st.errors[f as usize] += 1;
                        conn.stream = None;
                    }
                    Err(_) => {
                        st.errors[Failure::Timeout as usize] += 1;
                        conn.stream = None;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut st = stats.borrow_mut();
    write_raw(&a.raw, "latency_us", &st.latencies); // in completion order
    let n = st.latencies.len() as u64;
    let lat = &mut st.latencies;
    let (p50, p90, p99, p999) = (
        pct(lat, 0.50),
        pct(lat, 0.90),
        pct(lat, 0.99),
        pct(lat, 0.999),
    );
    let max = lat.last().copied().unwrap_or(0);
    let mean = lat.iter().sum::<u64>().checked_div(n).unwrap_or(0);
    format!(
        "mode=rate rate={} seconds={} connections={} sent={} completed={n} ok={} non2xx={} \
         err_connect={} err_io={} err_closed={} err_malformed={} err_timeout={} late_starts={} \
         achieved_rps={:.0} p50_us={p50} p90_us={p90} p99_us={p99} p999_us={p999} max_us={max} mean_us={mean}",
        a.rate,
        a.seconds,
        a.connections,
        total,
        st.ok,
        st.non2xx,
        st.errors[0],
        st.errors[1],
        st.errors[2],
        st.errors[3],
        st.errors[4],
        st.late,
        n as f64 / elapsed
    )
}

#[derive(Default)]
struct StreamStats {
    ttft: Vec<u64>,
    gaps: Vec<u64>,
    events: u64,
    complete: u64,
    stalls: u64,
    non2xx: u64,
    errors: [u64; 5],
    live: u64,
    live_peak: u64,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn streams(a: Rc<Args>) -> String {
    let n = a.streams;
    let t0 = Instant::now();
    let go = t0 + a.connect;
    let stats = Rc::new(RefCell::new(StreamStats::default()));
    let rss_base = a.pid.and_then(rss_kib).unwrap_or(0);
    let rss_peak = Rc::new(Cell::new(rss_base));
    let done = Rc::new(Cell::new(0usize));
    if let Some(pid) = a.pid {
        // Samples the server's RSS while the streams run (a /proc read takes microseconds).
        let (rss_peak, done) = (rss_peak.clone(), done.clone());
        monoio::spawn(async move {
            while done.get() < n {
                if let Some(r) = rss_kib(pid) {
                    rss_peak.set(rss_peak.get().max(r));
                }
                monoio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (a, stats, done) = (a.clone(), stats.clone(), done.clone());
        let connect_at = t0 + a.connect.mul_f64(0.8 * i as f64 / n as f64);
        let send_at = go + a.ramp.mul_f64(i as f64 / n as f64);
        tasks.push(monoio::spawn(async move {
            monoio::time::sleep_until(connect_at).await;
            let mut conn = Conn {
                stream: None,
                buf: Vec::with_capacity(4096),
            };
            let outcome = async {
                conn.ensure(a.addr).await?;
                monoio::time::sleep_until(send_at).await;
                let sent = Instant::now();
                let head = conn.start(a.addr, &a.request).await?;
                if !(200..300).contains(&head.status) {
                    stats.borrow_mut().non2xx += 1;
                    return Ok(());
                }
                {
                    let mut st = stats.borrow_mut();
                    st.live += 1;
                    st.live_peak = st.live_peak.max(st.live);
                }
                let mut pending: Vec<u8> = Vec::new();
                let mut last: Option<Instant> = None;
                let mut seen_done = false;
                let mut stalled = false;
                let mut gaps = Vec::with_capacity(80);
                let mut ttft = None;
                let mut events = 0u64;
                let r = conn
                    .body(&head, |now, bytes| {
                        pending.extend_from_slice(bytes);
                        let Some(end) = sse::complete_end(&pending, 0) else {
                            return;
                        };
                        let whole = &pending[..end];
                        let count = count_events(whole);
                        if sse::has_done(whole) {
                            seen_done = true;
                        }
                        for _ in 0..count {
                            match last {
                                None => ttft = Some(us(now - sent)),
                                Some(prev) => {
                                    let g = now - prev;
                                    stalled |= g > a.stall;
                                    gaps.push(us(g));
                                }
                            }
                            last = Some(now);
                        }
                        events += count;
                        pending.drain(..end);
                    })
                    .await;
                let mut st = stats.borrow_mut();
                st.live -= 1;
                st.events += events;
                st.ttft.extend(ttft);
                st.gaps.extend_from_slice(&gaps);
                if seen_done && r.is_ok() {
                    st.complete += 1;
                }
                if stalled || !seen_done {
                    st.stalls += 1;
                }
                r
            };
            let r = monoio::time::timeout(a.timeout + a.connect + a.ramp, outcome).await;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(f)) => stats.borrow_mut().errors[f as usize] += 1,
                Err(_) => stats.borrow_mut().errors[Failure::Timeout as usize] += 1,
            }
            done.set(done.get() + 1);
        }));
    }
    for t in tasks {
        t.await;
    }
    let mut st = stats.borrow_mut();
    write_raw(&a.raw, "gap_us", &st.gaps); // stream by stream, in arrival order
    let ttft = &mut st.ttft;
    let (t50, t99, tmax) = (
        pct(ttft, 0.5),
        pct(ttft, 0.99),
        ttft.last().copied().unwrap_or(0),
    );
    let gaps = &mut st.gaps;
    let (g50, g99, g999, gmax) = (
        pct(gaps, 0.5),
        pct(gaps, 0.99),
        pct(gaps, 0.999),
        gaps.last().copied().unwrap_or(0),
    );
    let rss_peak = rss_peak.get();
    format!(
        "mode=streams streams={n} complete={} stalls={} non2xx={} err_connect={} err_io={} \
         err_closed={} err_malformed={} err_timeout={} live_peak={} events={} \
         ttft_p50_us={t50} ttft_p99_us={t99} ttft_max_us={tmax} gap_p50_us={g50} gap_p99_us={g99} \
         gap_p999_us={g999} gap_max_us={gmax} rss_base_kib={rss_base} rss_peak_kib={rss_peak} \
         wall_ms={}",
        st.complete,
        st.stalls,
        st.non2xx,
        st.errors[0],
        st.errors[1],
        st.errors[2],
        st.errors[3],
        st.errors[4],
        st.live_peak,
        st.events,
        t0.elapsed().as_millis()
    )
}

/// SSE events in `whole` (complete events only): blank-line terminators, `[DONE]` included.
fn count_events(whole: &[u8]) -> u64 {
    let (mut n, mut at) = (0, 0);
    while let Some(e) = first_terminator(&whole[at..]) {
        n += 1;
        at += e;
    }
    n
}

/// End of the first blank line in `b`, if any.
fn first_terminator(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(j) = memchr::memchr(b'\n', &b[i..]) {
        let nl = i + j;
        match b.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if b.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

fn main() {
    let a = match parse_args() {
        Ok(a) => Rc::new(a),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let chosen =
        match smart_ai_router::worker::runtime::choose(smart_ai_router::config::DriverChoice::Auto)
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("loadgen: no runtime: {e}");
                std::process::exit(1);
            }
        };
    let fds = (a.connections.max(a.streams) as u64 + 64).max(1024);
    let _ = rlimit::increase_nofile_limit(fds);
    let line = smart_ai_router::worker::runtime::block_on_with(&chosen, 4096, async {
        if a.mode == "rate" {
            rate(a.clone()).await
        } else {
            streams(a.clone()).await
        }
    });
    match line {
        Ok(l) => println!("LOADGEN {l}"),
        Err(e) => {
            eprintln!("loadgen: runtime: {e}");
            std::process::exit(1);
        }
    }
}
