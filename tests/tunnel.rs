//! Upstream connections through a provider's outbound proxy, over real sockets on both drivers:
//! a tiny HTTP CONNECT proxy and a tiny SOCKS5 proxy run in the test (std threads relaying
//! bytes both ways, counting tunnels and checking credentials) in front of the mock upstream.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // test proxies block and lock

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use smart_ai_router::mock::MockConfig;

both_drivers!(
    chat_flows_through_an_http_connect_proxy_on_one_tunnel,
    chat_flows_through_a_socks5_proxy_by_name_on_one_tunnel,
    https_upstreams_run_tls_inside_the_tunnel,
    wrong_proxy_credentials_are_a_502_naming_the_proxy,
    an_unreachable_proxy_is_a_502_naming_it,
    a_silent_proxy_is_bounded_by_the_connect_timeout,
);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    HttpConnect,
    Socks5,
}

/// A tiny forward proxy: one thread per client, the handshake checked against `auth`, then
/// bytes relayed both ways until either side closes.
struct TestProxy {
    addr: SocketAddr,
    /// Tunnels opened (handshake accepted and upstream connected).
    tunnels: Arc<AtomicUsize>,
    /// What each client asked for: `host:port` of a CONNECT, or the SOCKS5 host (domain name
    /// or address) and port.
    targets: Arc<Mutex<Vec<String>>>,
    /// Handshakes refused for bad or missing credentials.
    auth_failures: Arc<AtomicUsize>,
}

impl TestProxy {
    fn start(protocol: Protocol, auth: Option<(&str, &str)>) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let tunnels = Arc::new(AtomicUsize::new(0));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let auth_failures = Arc::new(AtomicUsize::new(0));
        let auth = auth.map(|(u, p)| (u.to_string(), p.to_string()));
        let (t, g, f) = (tunnels.clone(), targets.clone(), auth_failures.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (t, g, f, auth) = (t.clone(), g.clone(), f.clone(), auth.clone());
                std::thread::spawn(move || {
                    // Counted before the refusal is sent, so a test that saw the gateway's 502
                    // also sees the count.
                    let failed = || {
                        f.fetch_add(1, Ordering::SeqCst);
                    };
                    let handshake = match protocol {
                        Protocol::HttpConnect => http_handshake(&client, auth.as_ref(), &failed),
                        Protocol::Socks5 => socks5_handshake(&client, auth.as_ref(), &failed),
                    };
                    if let Ok((target, upstream)) = handshake {
                        g.lock().unwrap().push(target);
                        t.fetch_add(1, Ordering::SeqCst);
                        relay(client, upstream);
                    }
                });
            }
        });
        TestProxy {
            addr,
            tunnels,
            targets,
            auth_failures,
        }
    }

    fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }

    fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }

    fn auth_failures(&self) -> usize {
        self.auth_failures.load(Ordering::SeqCst)
    }
}

/// The handshake ended without a tunnel.
struct Refusal;

fn read_exact(mut s: &TcpStream, n: usize) -> Result<Vec<u8>, Refusal> {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).map_err(|_| Refusal)?;
    Ok(b)
}

fn http_handshake(
    mut client: &TcpStream,
    auth: Option<&(String, String)>,
    auth_failed: &dyn Fn(),
) -> Result<(String, TcpStream), Refusal> {
    let mut head = Vec::new();
    while find(&head, b"\r\n\r\n").is_none() {
        head.extend(read_exact(client, 1)?);
    }
    let head = String::from_utf8(head).map_err(|_| Refusal)?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some("CONNECT"), Some(target), Some("HTTP/1.1")) =
        (parts.next(), parts.next(), parts.next())
    else {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return Err(Refusal);
    };
    if let Some((user, pass)) = auth {
        let expected = format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()));
        let given = lines.find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("proxy-authorization")
                .then(|| v.trim().to_string())
        });
        if given.as_deref() != Some(expected.as_str()) {
            auth_failed();
            let _ = client.write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
            );
            return Err(Refusal);
        }
    }
    let Ok(upstream) = TcpStream::connect(target) else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return Err(Refusal);
    };
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .map_err(|_| Refusal)?;
    Ok((target.to_string(), upstream))
}

fn socks5_handshake(
    mut client: &TcpStream,
    auth: Option<&(String, String)>,
    auth_failed: &dyn Fn(),
) -> Result<(String, TcpStream), Refusal> {
    let greeting = read_exact(client, 2)?;
    if greeting[0] != 5 {
        return Err(Refusal);
    }
    let methods = read_exact(client, usize::from(greeting[1]))?;
    let wanted = if auth.is_some() { 2 } else { 0 };
    if !methods.contains(&wanted) {
        auth_failed();
        let _ = client.write_all(&[5, 0xff]);
        return Err(Refusal);
    }
    client.write_all(&[5, wanted]).map_err(|_| Refusal)?;
    if let Some((user, pass)) = auth {
        let v = read_exact(client, 2)?;
        let u = read_exact(client, usize::from(v[1]))?;
        let plen = read_exact(client, 1)?;
        let p = read_exact(client, usize::from(plen[0]))?;
        if v[0] != 1 || u != user.as_bytes() || p != pass.as_bytes() {
            auth_failed();
            let _ = client.write_all(&[1, 1]);
            return Err(Refusal);
        }
        client.write_all(&[1, 0]).map_err(|_| Refusal)?;
    }
    let req = read_exact(client, 4)?;
    if req[..3] != [5, 1, 0] {
        return Err(Refusal);
    }
    let host = match req[3] {
        1 => {
            let a = read_exact(client, 4)?;
            std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()
        }
        3 => {
            let len = read_exact(client, 1)?;
            String::from_utf8(read_exact(client, usize::from(len[0]))?).map_err(|_| Refusal)?
        }
        _ => {
            let _ = client.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0]);
            return Err(Refusal);
        }
    };
    let port = read_exact(client, 2)?;
    let port = u16::from_be_bytes([port[0], port[1]]);
    let Ok(upstream) = TcpStream::connect((host.as_str(), port)) else {
        let _ = client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
        return Err(Refusal);
    };
    // Success, with a bound address the client must read past.
    client
        .write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90])
        .map_err(|_| Refusal)?;
    Ok((format!("{host}:{port}"), upstream))
}

/// Copies both ways until either side closes, then closes both.
fn relay(client: TcpStream, upstream: TcpStream) {
    let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let (mut c, mut u) = (client, upstream);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c, &mut u);
        let _ = u.shutdown(std::net::Shutdown::Both);
        let _ = c.shutdown(std::net::Shutdown::Both);
    });
    let _ = std::io::copy(&mut u2, &mut c2);
    let _ = c2.shutdown(std::net::Shutdown::Both);
    let _ = u2.shutdown(std::net::Shutdown::Both);
    let _ = up.join();
}

/// Standard base64 with padding: the test proxy's own, to check `Proxy-Authorization`.
fn base64(input: &[u8]) -> String {
    let abc = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(abc[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One provider on `base_url` through `proxy`, one worker (so every request of a client
/// connection shares one upstream pool).
fn proxied(base_url: &str, proxy: &str, extra: &str) -> String {
    format!(
        r#"[server]
workers = 1

[providers.up]
kind = "openai"
base_url = "{base_url}"
proxy = "{proxy}"
{extra}

[[channels]]
id = "up-1"
provider = "up"
api_key = "sk-channel"
models = ["m"]
"#
    )
}

/// Three sequential requests (JSON, SSE, JSON) on one client connection, all answered.
fn three_requests(gw: &smart_ai_router::bootstrap::Gateway) {
    let mut c = Client::connect(gw.local_addr());
    for (i, stream) in [false, true, false].into_iter().enumerate() {
        let r = c.post("/v1/chat/completions", &[], &chat_body("m", stream));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        if stream {
            assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
        }
    }
}

fn chat_flows_through_an_http_connect_proxy_on_one_tunnel(driver: &str) {
    let m = mock_models(&["m"]);
    let proxy = TestProxy::start(Protocol::HttpConnect, Some(("alice", "p@ss:word")));
    // The upstream is a name the gateway never resolves itself: the proxy does.
    let upstream = format!("localhost:{}", m.addr().port());
    let gw = gateway(
        driver,
        &proxied(
            &format!("http://{upstream}/v1"),
            &format!("http://alice:p%40ss%3Aword@{}", proxy.addr),
            "",
        ),
    );
    three_requests(&gw);
    assert_eq!(
        proxy.targets(),
        vec![upstream.clone()],
        "CONNECT localhost:port"
    );
    assert_eq!(proxy.tunnels(), 1, "pooled connections reuse one tunnel");
    assert_eq!(proxy.auth_failures(), 0);
    let ev = drain(&m);
    let reqs = requests(&ev);
    assert_eq!(reqs.len(), 3);
    assert_eq!(connections(&ev), 1);
    // HTTP runs inside the tunnel as it would directly: origin-form target, the upstream's Host,
    // the channel's key; the proxy's credentials stay with the proxy.
    assert_eq!(reqs[0].target, "/v1/chat/completions");
    assert_eq!(reqs[0].header("host"), Some(upstream.as_str()));
    assert_eq!(reqs[0].header("authorization"), Some("Bearer sk-channel"));
    assert!(reqs[0].header("proxy-authorization").is_none());
}

fn chat_flows_through_a_socks5_proxy_by_name_on_one_tunnel(driver: &str) {
    for (scheme, auth) in [("socks5h", Some(("bob", "hunter2"))), ("socks5", None)] {
        let m = mock_models(&["m"]);
        let proxy = TestProxy::start(Protocol::Socks5, auth);
        let creds = auth.map(|(u, p)| format!("{u}:{p}@")).unwrap_or_default();
        let gw = gateway(
            driver,
            &proxied(
                &format!("http://localhost:{}/v1", m.addr().port()),
                &format!("{scheme}://{creds}{}", proxy.addr),
                "",
            ),
        );
        three_requests(&gw);
        assert_eq!(
            proxy.targets(),
            vec![format!("localhost:{}", m.addr().port())],
            "{scheme}: the host goes to the proxy as a domain name"
        );
        assert_eq!(proxy.tunnels(), 1, "{scheme}: one tunnel for every request");
        assert_eq!(proxy.auth_failures(), 0, "{scheme}");
        let ev = drain(&m);
        assert_eq!((requests(&ev).len(), connections(&ev)), (3, 1), "{scheme}");
    }
}

fn https_upstreams_run_tls_inside_the_tunnel(driver: &str) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let m = mock(MockConfig {
        tls: Some(Arc::new(server)),
        ..Default::default()
    });
    let dir = temp_dir("tunnel-tls");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    for protocol in [Protocol::HttpConnect, Protocol::Socks5] {
        let proxy = TestProxy::start(protocol, None);
        let scheme = match protocol {
            Protocol::HttpConnect => "http",
            Protocol::Socks5 => "socks5h",
        };
        let gw = gateway(
            driver,
            &proxied(
                &format!("https://localhost:{}/v1", m.addr().port()),
                &format!("{scheme}://{}", proxy.addr),
                &format!("ca_file = \"{}\"", ca_path.display()),
            ),
        );
        three_requests(&gw);
        assert_eq!(
            proxy.targets(),
            vec![format!("localhost:{}", m.addr().port())],
            "{scheme}"
        );
        assert_eq!(proxy.tunnels(), 1, "{scheme}: TLS sessions are pooled too");
        let ev = drain(&m);
        assert_eq!(requests(&ev).len(), 3, "{scheme}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn wrong_proxy_credentials_are_a_502_naming_the_proxy(driver: &str) {
    let m = mock_models(&["m"]);
    let upstream = format!("localhost:{}", m.addr().port());
    let cases = [
        (Protocol::HttpConnect, "http", "answered 407 to CONNECT"),
        (
            Protocol::Socks5,
            "socks5",
            "rejected the SOCKS5 user name and password",
        ),
    ];
    for (protocol, scheme, says) in cases {
        let proxy = TestProxy::start(protocol, Some(("carol", "right-password")));
        let gw = gateway(
            driver,
            &proxied(
                &format!("http://{upstream}/v1"),
                &format!("{scheme}://carol:wrong-password@{}", proxy.addr),
                "",
            ),
        );
        let r = Client::connect(gw.local_addr()).post(
            "/v1/chat/completions",
            &[],
            &chat_body("m", false),
        );
        assert_eq!(r.status, 502, "{scheme}: {}", r.text());
        assert_eq!(r.error_code(), "upstream_error");
        let text = r.text();
        assert!(
            text.contains(&format!("proxy {}", proxy.addr)) && text.contains(says),
            "{scheme}: {text}"
        );
        if protocol == Protocol::HttpConnect {
            assert!(text.contains(&upstream), "names the CONNECT target: {text}");
        }
        assert!(
            !text.contains("wrong-password"),
            "{scheme}: no credentials: {text}"
        );
        assert_eq!(proxy.auth_failures(), 1, "{scheme}: one refusal, no retry");
        assert_eq!(proxy.tunnels(), 0);
        // a SOCKS proxy that wants credentials nobody configured says so
        if protocol == Protocol::Socks5 {
            let gw = gateway(
                driver,
                &proxied(
                    &format!("http://{upstream}/v1"),
                    &format!("socks5://{}", proxy.addr),
                    "",
                ),
            );
            let r = Client::connect(gw.local_addr()).post(
                "/v1/chat/completions",
                &[],
                &chat_body("m", false),
            );
            assert_eq!(r.status, 502, "{}", r.text());
            assert!(
                r.text().contains("requires SOCKS5 authentication"),
                "{}",
                r.text()
            );
        }
    }
    assert_eq!(m.requests(), 0, "nothing reached the upstream");
}

fn an_unreachable_proxy_is_a_502_naming_it(driver: &str) {
    let m = mock_models(&["m"]);
    let closed = format!("127.0.0.1:{}", free_port());
    let gw = gateway(
        driver,
        &proxied(
            &format!("http://localhost:{}/v1", m.addr().port()),
            &format!("http://{closed}"),
            "",
        ),
    );
    let r =
        Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.text()
            .contains(&format!("connect to proxy {closed} failed")),
        "{}",
        r.text()
    );
    assert_eq!(m.requests(), 0);
}

#[test]
fn discovery_goes_through_the_proxy_too() {
    use simd_json::prelude::*;
    let m = mock_models(&["found-by-discovery"]);
    let proxy = TestProxy::start(Protocol::Socks5, Some(("dave", "pw")));
    let toml = format!(
        r#"
[providers.up]
base_url = "http://localhost:{}/v1"
proxy = "socks5h://dave:pw@{}"

[[channels]]
id = "up-1"
provider = "up"
api_key = "sk-channel"

[discovery]
enabled = true
"#,
        m.addr().port(),
        proxy.addr
    );
    let gw = gateway("legacy", &toml);
    eventually(
        std::time::Duration::from_secs(10),
        "discovered model listed",
        || {
            let v = Client::connect(gw.local_addr()).get("/v1/models").json();
            let data = v.get("data")?.as_array()?;
            data.iter()
                .any(|e| e.get("id").and_then(|i| i.as_str()) == Some("found-by-discovery"))
                .then_some(())
        },
    );
    assert!(proxy.tunnels() >= 1);
    assert!(
        proxy
            .targets()
            .iter()
            .all(|t| *t == format!("localhost:{}", m.addr().port()))
    );
    let r = Client::connect(gw.local_addr()).post(
        "/v1/chat/completions",
        &[],
        &chat_body("found-by-discovery", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

fn a_silent_proxy_is_bounded_by_the_connect_timeout(driver: &str) {
    // The kernel accepts the TCP connection; nobody ever answers the handshake.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let m = mock_models(&["m"]);
    for scheme in ["http", "socks5"] {
        let gw = gateway(
            driver,
            &proxied(
                &format!("http://localhost:{}/v1", m.addr().port()),
                &format!("{scheme}://{}", silent.local_addr().unwrap()),
                "connect_timeout = \"300ms\"",
            ),
        );
        let started = std::time::Instant::now();
        let r = Client::connect(gw.local_addr()).post(
            "/v1/chat/completions",
            &[],
            &chat_body("m", false),
        );
        assert_eq!(r.status, 504, "{scheme}: {}", r.text());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{scheme}: bounded by connect_timeout"
        );
    }
    assert_eq!(m.requests(), 0);
}
