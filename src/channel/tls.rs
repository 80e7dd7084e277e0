//! TLS client settings for upstreams, as plain data: rustls client configs (ring backend, web
//! PKI roots plus optional extra PEM roots per provider, ALPN `http/1.1`, verification always
//! on) and the per-host target (SNI and verification name). Built on the control thread (it
//! reads `ca_file`); `upstream::tls` runs handshakes with them.
//!
//! Invariants: every config has an identity that keys connection pools, so two providers with
//! different trust roots never share a connection. No I/O here.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

/// One provider's TLS client settings, with an identity that keys connection pools (two
/// providers with different trust roots never share a connection).
#[derive(Clone)]
pub struct ClientTls {
    pub(crate) config: Arc<rustls::ClientConfig>,
    pub(crate) id: u64,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls").field("id", &self.id).finish()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl ClientTls {
    /// Web PKI roots plus the certificates in `extra_pem` (a PEM bundle), if any.
    pub fn new(extra_pem: Option<&[u8]>) -> Result<ClientTls, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = extra_pem {
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("bad PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("unusable CA certificate: {e}"))?;
                added += 1;
            }
            if added == 0 {
                return Err("no certificate found in the PEM file".into());
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ClientTls {
            config: Arc::new(config),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The target for one host name (SNI and verification name).
    pub fn for_host(&self, host: &str) -> TlsTarget {
        let server_name = ServerName::try_from(host.to_string()).unwrap_or_else(|_| {
            ServerName::try_from("invalid.invalid".to_string()).expect("valid")
        });
        TlsTarget {
            tls: self.clone(),
            server_name,
        }
    }
}

/// TLS settings for one upstream host.
#[derive(Clone)]
pub struct TlsTarget {
    pub(crate) tls: ClientTls,
    pub(crate) server_name: ServerName<'static>,
}

impl fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTarget")
            .field("server_name", &self.server_name)
            .field("id", &self.tls.id)
            .finish()
    }
}

impl TlsTarget {
    /// Pool identity of the trust settings.
    pub fn identity(&self) -> u64 {
        self.tls.id
    }
}
