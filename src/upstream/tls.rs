//! TLS handshakes to upstreams with rustls (through monoio-rustls), using the settings a
//! channel carries ([`crate::channel::tls::TlsTarget`]).
//!
//! Invariants: handshakes are cancel-safe (no `unsafe_io`), so they can sit under a timeout;
//! the crate's TLS surface is [`handshake`], so monoio-rustls can be replaced without touching
//! the proxy. Not here: building client configs or reading CA files (`channel::tls`, on the
//! control thread).

use monoio::net::TcpStream;

use crate::channel::tls::TlsTarget;

/// A TLS client stream over TCP.
pub(crate) type TlsStream = monoio_rustls::ClientTlsStream<TcpStream>;

/// Runs the TLS handshake for `target` over a connected socket. Cancel-safe: dropping the
/// future drops the socket.
pub(crate) async fn handshake(target: &TlsTarget, tcp: TcpStream) -> std::io::Result<TlsStream> {
    let connector = monoio_rustls::TlsConnector::from(target.tls.config.clone());
    connector
        .connect(target.server_name.clone(), tcp)
        .await
        .map_err(|e| match e {
            monoio_rustls::TlsError::Io(io) => io,
            monoio_rustls::TlsError::Rustls(e) => {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("TLS: {e}"))
            }
        })
}
