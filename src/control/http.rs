//! The control plane's small HTTP client: one GET with a prebuilt head over the control
//! thread's own upstream pool (discovery and health probes), bounded in time and size.
//!
//! Invariants: never retries on a connection that already answered; a pooled connection that
//! fails before any response byte (the upstream closed it meanwhile) is replaced once by a
//! fresh one, since that failure says nothing about the channel.

use std::time::{Duration, Instant};

use crate::channel::Channel;
use crate::h1::head::ResponseHead;
use crate::upstream::body::read_body;
use crate::upstream::{Conn, Pool};

/// Largest model list accepted (OpenRouter's is a few MiB).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Why a GET failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GetError {
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
pub(crate) async fn get_models(
    pool: &Pool,
    ch: &Channel,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), GetError> {
    match monoio::time::timeout(timeout, exchange(pool, ch, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(GetError::Timeout),
    }
}

/// Where an exchange failed.
enum Failure {
    /// Before any response byte (what a stale pooled connection looks like).
    BeforeAnswer(GetError),
    /// After the upstream started answering.
    After(GetError),
}

impl Failure {
    fn into_error(self) -> GetError {
        match self {
            Failure::BeforeAnswer(e) | Failure::After(e) => e,
        }
    }
}

async fn exchange(
    pool: &Pool,
    ch: &Channel,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), GetError> {
    if let Some(conn) = pool.take_idle(&ch.endpoint, Instant::now()) {
        match exchange_on(pool, ch, conn, timeout).await {
            Err(Failure::BeforeAnswer(_)) => {}
            other => return other.map_err(Failure::into_error),
        }
    }
    let conn = pool
        .connect(&ch.endpoint, ch.timeouts.connect.min(timeout))
        .await
        .map_err(|e| GetError::Failed(e.to_string()))?;
    exchange_on(pool, ch, conn, timeout)
        .await
        .map_err(Failure::into_error)
}

async fn exchange_on(
    pool: &Pool,
    ch: &Channel,
    mut conn: Conn,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), Failure> {
    let before = |m: String| Failure::BeforeAnswer(GetError::Failed(m));
    let after = |m: String| Failure::After(GetError::Failed(m));
    let (w, _) = conn.write_all(ch.models_head.to_vec()).await;
    w.map_err(|e| before(format!("write failed: {e}")))?;
    let head = loop {
        match ResponseHead::parse(&conn.buf, MAX_HEAD, false) {
            Ok(Some(h)) if (100..200).contains(&h.status) => {
                conn.buf.drain(..h.len);
            }
            Ok(Some(h)) => break h,
            Ok(None) => {
                let empty = conn.buf.is_empty();
                match conn.read_more().await {
                    Ok(0) if empty => {
                        return Err(before("connection closed before a response".into()));
                    }
                    Ok(0) => {
                        return Err(after("connection closed inside the response head".into()));
                    }
                    Ok(_) => {}
                    Err(e) if empty => return Err(before(format!("read failed: {e}"))),
                    Err(e) => return Err(after(format!("read failed: {e}"))),
                }
            }
            Err(e) => return Err(after(format!("bad response head: {e:?}"))),
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
    .map_err(|e| after(format!("response body: {e:?}")))?;
    if exact && head.keep_alive {
        pool.put(&ch.endpoint, conn, Instant::now());
    }
    Ok((head.status, body))
}
