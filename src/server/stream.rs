//! A client connection, plain TCP or TLS (inbound TLS with rustls), split into the read and
//! write halves the server uses, and the TLS side of the listener: certificate and key files
//! into a `rustls::ServerConfig` (TLS 1.2 and 1.3, ALPN `http/1.1`).
//!
//! Invariants: a TLS handshake runs under the header timeout (a client that opens a connection
//! and never says hello costs a slot only that long); the halves delegate to the stream they
//! wrap and add nothing. A TLS read half cannot be read cancel-safely (rustls keeps decrypted
//! bytes a dropped read would lose), so [`ClientReader::watchable`] offers only plain halves:
//! a TLS client that leaves mid-stream is noticed at the next write instead.
//! Not here: reading the files on a worker (the control thread builds the config and
//! publishes it in the snapshot).

use std::io;
use std::sync::Arc;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

/// TLS over a client's TCP connection.
pub(crate) type TlsStream = monoio_rustls::ServerTlsStream<TcpStream>;

/// A client connection as accepted.
#[derive(Debug)]
pub(crate) enum ClientStream {
    /// Plain HTTP.
    Plain(TcpStream),
    /// An HTTPS connection (`[server.tls]`), boxed: its state is large.
    Tls(Box<TlsStream>),
}

impl ClientStream {
    /// The read and write halves.
    pub(crate) fn split(self) -> (ClientReader, ClientWriter) {
        match self {
            ClientStream::Plain(s) => {
                let (r, w) = s.into_split();
                (ClientReader::Plain(r), ClientWriter::Plain(w))
            }
            ClientStream::Tls(s) => {
                let (r, w) = (*s).into_split();
                (ClientReader::Tls(r), ClientWriter::Tls(w))
            }
        }
    }
}

/// The read half of a client connection.
#[derive(Debug)]
pub(crate) enum ClientReader {
    /// Plain TCP.
    Plain(OwnedReadHalf<TcpStream>),
    /// The read half of an HTTPS connection.
    Tls(OwnedReadHalf<TlsStream>),
}

impl ClientReader {
    /// The half a cancel-safe watch can read from (plain connections only).
    pub(crate) fn watchable(&mut self) -> Option<&mut OwnedReadHalf<TcpStream>> {
        match self {
            ClientReader::Plain(r) => Some(r),
            ClientReader::Tls(_) => None,
        }
    }
}

impl AsyncReadRent for ClientReader {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        match self {
            ClientReader::Plain(s) => s.read(buf).await,
            ClientReader::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        match self {
            ClientReader::Plain(s) => s.readv(buf).await,
            ClientReader::Tls(s) => s.readv(buf).await,
        }
    }
}

/// The write half of a client connection.
#[derive(Debug)]
pub(crate) enum ClientWriter {
    /// Plain TCP.
    Plain(OwnedWriteHalf<TcpStream>),
    /// The write half of an HTTPS connection.
    Tls(OwnedWriteHalf<TlsStream>),
}

impl AsyncWriteRent for ClientWriter {
    async fn write<T: IoBuf>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        match self {
            ClientWriter::Plain(s) => s.write(buf).await,
            ClientWriter::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        match self {
            ClientWriter::Plain(s) => s.writev(buf).await,
            ClientWriter::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            ClientWriter::Plain(s) => s.flush().await,
            ClientWriter::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            ClientWriter::Plain(s) => s.shutdown().await,
            ClientWriter::Tls(s) => s.shutdown().await,
        }
    }
}

/// The listener's TLS settings, built from PEM files: the certificate chain (leaf first) and
/// its private key (PKCS#8, PKCS#1 or SEC1). TLS 1.2 and 1.3, ALPN `http/1.1`. Blocking file
/// reads: the control thread calls this at start and on every reload.
#[allow(clippy::disallowed_methods)] // control-side: certificate files are read off the data plane
pub(crate) fn server_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key do not form a usable pair: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
