//! Per-worker listening sockets: one `SO_REUSEPORT` socket per worker, all bound to the same
//! address, opened once at start and never reopened (closing a reuseport socket drops the
//! connections queued on it).
//!
//! `SO_REUSEPORT` lets a second gateway on the same port bind silently and steal half the
//! connections. Before binding, a probe socket *without* `SO_REUSEPORT` binds the address: it
//! fails with `EADDRINUSE` when any process listens there, and the start fails with a message
//! that says so.

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Listen backlog per socket.
pub(crate) const BACKLOG: i32 = 4096;

/// Binds `n` reuseport listeners on `addr` (port 0: one ephemeral port shared by all).
pub(crate) fn bind(addr: SocketAddr, n: usize) -> Result<Vec<TcpListener>, String> {
    if addr.port() != 0 {
        probe_free(addr)?;
    }
    let mut out = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n.max(1) {
        let l = open(addr, true).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        if addr.port() == 0 {
            addr = l.local_addr().map_err(|e| e.to_string())?;
        }
        out.push(l);
    }
    Ok(out)
}

/// Binds (without listening, so it can never capture a client's SYN) a socket without
/// `SO_REUSEPORT`: that fails with `EADDRINUSE` while any process listens on `addr`.
fn probe_free(addr: SocketAddr) -> Result<(), String> {
    let probe = || -> std::io::Result<()> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.bind(&addr.into())
    };
    match probe() {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
            "{addr} is already in use: another process (perhaps another smart-ai-router) listens \
             there; stop it or choose another address with --listen"
        )),
        Err(e) => Err(format!("cannot listen on {addr}: {e}")),
    }
}

fn open(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.set_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_one_ephemeral_port() {
        let ls = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = ls[0].local_addr().unwrap().port();
        assert!(ls.iter().all(|l| l.local_addr().unwrap().port() == port));
    }

    #[test]
    fn refuses_an_address_another_process_listens_on() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind(other.local_addr().unwrap(), 1).unwrap_err();
        assert!(err.contains("already in use"), "{err}");
        // and a second gateway (reuseport listener) is detected the same way
        let ours = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let err = bind(ours[0].local_addr().unwrap(), 1).unwrap_err();
        assert!(err.contains("already in use"), "{err}");
    }
}
