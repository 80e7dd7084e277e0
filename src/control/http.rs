//! The control plane's small HTTP client: one GET with a prebuilt head over the control
//! thread's own upstream pool (discovery and health probes), bounded in time and size.

use std::time::{Duration, Instant};

use crate::h1::head::ResponseHead;
use crate::snapshot::Channel;
use crate::upstream::Pool;
use crate::upstream::body::read_body;

/// Largest model list accepted (OpenRouter's is a few MiB).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Why a GET failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetError {
    /// No answer within the timeout.
    Timeout,
    /// Connect, TLS, framing or read failure.
    Failed(String),
}

impl std::fmt::Display for GetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GetError::Timeout => f.write_str("timed out"),
            GetError::Failed(m) => f.write_str(m),
        }
    }
}

/// Sends the channel's `GET <models_path>` and returns the status and body.
pub async fn get_models(
    pool: &Pool,
    ch: &Channel,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), GetError> {
    match monoio::time::timeout(timeout, exchange(pool, ch, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(GetError::Timeout),
    }
}

async fn exchange(
    pool: &Pool,
    ch: &Channel,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), GetError> {
    let ep = &ch.endpoint;
    let mut conn = match pool.take_idle(ep, Instant::now()) {
        Some(c) => c,
        None => pool
            .connect(ep, ch.timeouts.connect.min(timeout))
            .await
            .map_err(|e| GetError::Failed(e.to_string()))?,
    };
    let (w, _) = conn.write_all(ch.models_head.to_vec()).await;
    w.map_err(|e| GetError::Failed(format!("write failed: {e}")))?;
    let head = loop {
        match ResponseHead::parse(&conn.buf, 64 * 1024, false) {
            Ok(Some(h)) if (100..200).contains(&h.status) => {
                conn.buf.drain(..h.len);
            }
            Ok(Some(h)) => break h,
            Ok(None) => match conn.read_more().await {
                Ok(0) => {
                    return Err(GetError::Failed(
                        "connection closed before a response".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(GetError::Failed(format!("read failed: {e}"))),
            },
            Err(e) => return Err(GetError::Failed(format!("bad response head: {e:?}"))),
        }
    };
    let mut body = Vec::new();
    let exact = read_body(
        &mut conn,
        &head,
        &mut body,
        MAX_BODY,
        Instant::now() + timeout,
    )
    .await
    .map_err(|e| GetError::Failed(format!("body: {e:?}")))?;
    if exact && head.keep_alive {
        pool.put(ep, conn, Instant::now());
    }
    Ok((head.status, body))
}
