//! Writing one response: whole (`Content-Length`) or streamed (chunked, or close-delimited for
//! HTTP/1.0 clients), with the headers every response carries (`Date`, `x-request-id`, CORS,
//! `Connection`), and watching the client for disconnects while a stream is relayed.
//!
//! Invariants: header values the gateway writes are either its own constants or checked to
//! hold no CR/LF (no header injection); a response is written at most once (`status` records
//! it); every write has a deadline, so a client that stops reading cannot pin the task.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use monoio::io::{AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};

use super::stream::{ClientReader, ClientWriter};

use crate::config::Cors;
use crate::error::Error;
use crate::h1::{self, RequestId, chunked};
use crate::worker::Worker;

/// The request id for `x-request-id`: the client's if it is 1–128 characters of
/// `[A-Za-z0-9._:-]`, else a new one from the worker.
pub(crate) fn choose_request_id(client: Option<&[u8]>, worker: &Worker) -> RequestId {
    client
        .and_then(RequestId::parse)
        .unwrap_or_else(|| RequestId::generated(&worker.request_id()))
}

/// The `Access-Control-Allow-Origin` value for this request, if CORS allows its origin.
pub(crate) fn cors_origin(cors: &Cors, origin: Option<&[u8]>) -> Option<Vec<u8>> {
    match (cors, origin) {
        (Cors::Off, _) | (_, None) => None,
        (Cors::Any, Some(_)) => Some(b"*".to_vec()),
        (Cors::List(list), Some(o)) => list
            .iter()
            .find(|allowed| allowed.as_bytes() == o)
            .map(|a| a.as_bytes().to_vec()),
    }
}

/// The write side of one exchange.
pub(crate) struct Responder<'c> {
    writer: &'c mut ClientWriter,
    buf: &'c mut Vec<u8>,
    /// Client's HTTP minor version.
    pub minor_version: u8,
    /// Whether the connection stays open after this response.
    pub keep_alive: bool,
    head_only: bool,
    /// The request id.
    pub request_id: RequestId,
    cors: Option<Vec<u8>>,
    date: [u8; 29],
    write_timeout: Duration,
    /// Status sent (0 = nothing sent yet).
    pub status: u16,
    /// True once a write failed or timed out: the connection is done.
    pub failed: bool,
    chunked: bool,
    /// The wire family errors are rendered in (the endpoint's: Anthropic on `/v1/messages`).
    pub errors_as: crate::providers::Family,
}

impl std::fmt::Debug for Responder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("request_id", &self.request_id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl<'c> Responder<'c> {
    /// A responder writing through `writer`, building heads in `buf`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        writer: &'c mut ClientWriter,
        buf: &'c mut Vec<u8>,
        minor_version: u8,
        keep_alive: bool,
        head_only: bool,
        request_id: RequestId,
        cors: Option<Vec<u8>>,
        date: [u8; 29],
        write_timeout: Duration,
    ) -> Self {
        buf.clear();
        Responder {
            writer,
            buf,
            minor_version,
            keep_alive,
            head_only,
            request_id,
            cors,
            date,
            write_timeout,
            status: 0,
            failed: false,
            chunked: false,
            errors_as: crate::providers::Family::OpenAi,
        }
    }

    /// Starts a response head: status line and the headers every response carries. Append
    /// more with [`Responder::header`], then finish with [`Responder::body`] or
    /// [`Responder::start_stream`].
    pub(crate) fn begin(&mut self, status: u16) {
        self.buf.clear();
        self.status = status;
        h1::write_status_line(self.buf, status);
        h1::write_header(self.buf, b"date", &self.date);
        h1::write_header(self.buf, b"x-request-id", self.request_id.as_bytes());
        if self.errors_as == crate::providers::Family::Anthropic {
            // Anthropic's SDKs read the id from `request-id` (their `_request_id`).
            h1::write_header(self.buf, b"request-id", self.request_id.as_bytes());
        }
        if let Some(origin) = &self.cors {
            h1::write_header(self.buf, b"access-control-allow-origin", origin);
            if origin.as_slice() != b"*" {
                h1::write_header(self.buf, b"vary", b"origin");
            }
            h1::write_header(
                self.buf,
                b"access-control-expose-headers",
                b"x-request-id, x-router-channel, x-router-provider, x-router-model, x-router-requested-model, x-router-attempts, x-router-overhead-ms, x-router-panic, retry-after",
            );
        }
    }

    /// Appends a header. Values with CR or LF are dropped (they could inject headers).
    pub(crate) fn header(&mut self, name: &[u8], value: &[u8]) {
        if value.iter().any(|&b| b == b'\r' || b == b'\n') {
            return;
        }
        h1::write_header(self.buf, name, value);
    }

    fn connection_header(&mut self) {
        if !self.keep_alive {
            h1::write_header(self.buf, b"connection", b"close");
        } else if self.minor_version == 0 {
            h1::write_header(self.buf, b"connection", b"keep-alive");
        }
    }

    /// Finishes the head with `Content-Length` and writes it with `body`.
    pub(crate) async fn body(&mut self, content_type: &[u8], body: &[u8]) {
        if !content_type.is_empty() {
            h1::write_header(self.buf, b"content-type", content_type);
        }
        // RFC 9110 §8.6: no Content-Length on 1xx and 204 (and 304 has no body to measure).
        let bodiless = matches!(self.status, 100..=199 | 204 | 304);
        if !bodiless {
            h1::write_header(
                self.buf,
                b"content-length",
                itoa::Buffer::new().format(body.len()).as_bytes(),
            );
        }
        self.connection_header();
        self.buf.extend_from_slice(b"\r\n");
        if !self.head_only && !bodiless {
            self.buf.extend_from_slice(body);
        }
        self.flush().await;
    }

    /// Like [`Responder::body`] for a body already in an owned buffer (`buf[range]`): a large
    /// one goes out straight from that buffer after the head, never copied behind it, so a
    /// 64 MiB answer is held once, not twice. Returns the buffer.
    pub(crate) async fn body_owned(
        &mut self,
        content_type: &[u8],
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
    ) -> Vec<u8> {
        /// Below this, one write of head and body together is cheaper than two.
        const COPY_BELOW: usize = 64 * 1024;
        let bodiless = matches!(self.status, 100..=199 | 204 | 304);
        if range.len() < COPY_BELOW || bodiless || self.head_only {
            self.body(content_type, &buf[range]).await;
            return buf;
        }
        if !content_type.is_empty() {
            h1::write_header(self.buf, b"content-type", content_type);
        }
        h1::write_header(
            self.buf,
            b"content-length",
            itoa::Buffer::new().format(range.len()).as_bytes(),
        );
        self.connection_header();
        self.buf.extend_from_slice(b"\r\n");
        self.flush().await;
        if self.failed {
            return buf;
        }
        use monoio::buf::IoBuf;
        let write = self.writer.write_all(buf.slice(range));
        match monoio::time::timeout(self.write_timeout, write).await {
            Ok((r, slice)) => {
                self.failed |= r.is_err();
                slice.into_inner()
            }
            Err(_) => {
                // The buffer went with the cancelled write.
                self.failed = true;
                Vec::new()
            }
        }
    }

    /// Finishes the head for a stream of unknown length and writes it. HTTP/1.1 clients get
    /// chunked encoding; HTTP/1.0 clients get a close-delimited body.
    pub(crate) async fn start_stream(&mut self, content_type: &[u8]) {
        h1::write_header(self.buf, b"content-type", content_type);
        h1::write_header(self.buf, b"cache-control", b"no-cache");
        if self.minor_version == 0 {
            self.keep_alive = false;
            self.chunked = false;
        } else {
            h1::write_header(self.buf, b"transfer-encoding", b"chunked");
            self.chunked = true;
        }
        self.connection_header();
        self.buf.extend_from_slice(b"\r\n");
        self.flush().await;
    }

    /// Writes one piece of a started stream (whole SSE events).
    pub(crate) async fn stream_data(&mut self, data: &[u8]) {
        if data.is_empty() || self.failed {
            return;
        }
        self.buf.clear();
        if self.chunked {
            chunked::write_chunk(self.buf, data);
        } else {
            self.buf.extend_from_slice(data);
        }
        self.flush().await;
    }

    /// Ends a started stream (the last chunk; HTTP/1.0: nothing, the close ends it).
    pub(crate) async fn end_stream(&mut self) {
        if self.chunked && !self.failed {
            self.buf.clear();
            self.buf.extend_from_slice(chunked::LAST_CHUNK);
            self.flush().await;
        }
    }

    /// Sends an OpenAI-shaped error (if nothing was sent yet).
    pub(crate) async fn send_error(&mut self, e: &Error) {
        self.send_error_with(e, &[]).await
    }

    /// Sends an error (in the endpoint's family) with extra headers, if nothing was sent yet.
    pub(crate) async fn send_error_with(&mut self, e: &Error, headers: &[(&[u8], &[u8])]) {
        if self.status != 0 {
            return;
        }
        let body = match self.errors_as {
            crate::providers::Family::OpenAi => e.body(),
            crate::providers::Family::Anthropic => crate::providers::anthropic::error_body(e),
            crate::providers::Family::Gemini => crate::providers::gemini::error_body(e),
        };
        self.begin(e.status);
        for (n, v) in headers {
            self.header(n, v);
        }
        self.body(b"application/json", &body).await;
    }

    /// Sends a JSON document with status 200.
    pub(crate) async fn send_json(&mut self, status: u16, body: &[u8]) {
        self.begin(status);
        self.body(b"application/json", body).await;
    }

    async fn flush(&mut self) {
        if self.failed {
            self.buf.clear();
            return;
        }
        let data = std::mem::take(self.buf);
        match monoio::time::timeout(self.write_timeout, self.writer.write_all(data)).await {
            Ok((Ok(_), mut data)) => {
                data.clear();
                *self.buf = data;
            }
            Ok((Err(_), mut data)) => {
                data.clear();
                *self.buf = data;
                self.failed = true;
            }
            Err(_) => self.failed = true,
        }
    }
}

/// The read side of one exchange, for noticing a client that disconnects mid-response.
pub(crate) struct ClientInput<'c> {
    reader: &'c mut ClientReader,
    spill: &'c mut Vec<u8>,
    /// True once the client closed its side or the connection failed.
    pub closed: bool,
}

impl std::fmt::Debug for ClientInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInput")
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

type ReadFuture<'a> = Pin<Box<dyn Future<Output = monoio::BufResult<usize, Vec<u8>>> + 'a>>;

/// A pending read on the client connection: completes when the client sends more bytes
/// (pipelining), closes, or errs.
pub(crate) struct ClientWatch<'a> {
    canceller: Canceller,
    read: Option<ReadFuture<'a>>,
    spill: &'a mut Vec<u8>,
    closed: &'a mut bool,
}

impl std::fmt::Debug for ClientWatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientWatch")
            .field("active", &self.read.is_some())
            .finish_non_exhaustive()
    }
}

impl<'c> ClientInput<'c> {
    /// Wraps the read half; bytes read while watching land in `spill`.
    pub(crate) fn new(reader: &'c mut ClientReader, spill: &'c mut Vec<u8>) -> Self {
        ClientInput {
            reader,
            spill,
            closed: false,
        }
    }

    /// Starts watching the client (a cancel-safe read).
    pub(crate) fn watch(&mut self) -> ClientWatch<'_> {
        let canceller = Canceller::new();
        let handle = canceller.handle();
        // Small: it only has to notice a close or the start of a pipelined request (whatever
        // does not fit stays in the socket for the next read); every watched stream holds one.
        // A TLS connection is not watched (see `stream`): its watch never fires.
        let read = self.reader.watchable().map(|reader| {
            let buf = Vec::with_capacity(512);
            let read: ReadFuture<'_> =
                Box::pin(async move { reader.cancelable_read(buf, handle).await });
            read
        });
        ClientWatch {
            canceller,
            read,
            spill: self.spill,
            closed: &mut self.closed,
        }
    }
}

const ECANCELED: i32 = 125;

/// What a finished watch saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientEvent {
    /// The client closed or reset the connection.
    Gone,
    /// The client sent more bytes (kept for the next request).
    Data,
}

impl ClientWatch<'_> {
    /// Waits for the client to do something. Must not be called again after it returned.
    pub(crate) async fn event(&mut self) -> ClientEvent {
        let Some(read) = self.read.as_mut() else {
            return std::future::pending().await;
        };
        let (r, buf) = read.await;
        self.read = None;
        self.absorb(r, buf)
    }

    /// True while the read is pending.
    pub(crate) fn is_active(&self) -> bool {
        self.read.is_some()
    }

    fn absorb(&mut self, r: std::io::Result<usize>, buf: Vec<u8>) -> ClientEvent {
        match r {
            Ok(n) if n > 0 => {
                self.spill.extend_from_slice(&buf[..n]);
                ClientEvent::Data
            }
            _ => {
                *self.closed = true;
                ClientEvent::Gone
            }
        }
    }

    /// Stops watching: cancels the read and keeps any bytes it had already received.
    pub(crate) async fn finish(mut self) {
        if let Some(read) = self.read.take() {
            let canceller = std::mem::take(&mut self.canceller);
            let _ = canceller.cancel();
            let (r, buf) = read.await;
            match r {
                Ok(n) if n > 0 => self.spill.extend_from_slice(&buf[..n]),
                Ok(_) => *self.closed = true,
                // The cancellation itself (ECANCELED) is not a client error; anything else is.
                Err(e) if e.raw_os_error() == Some(ECANCELED) => {}
                Err(_) => *self.closed = true,
            }
        }
    }
}

/// How long an upstream exchange may run before the client is watched for disconnects. Quick
/// exchanges never pay for the extra read; slow generations (the ones worth abandoning) do.
pub(crate) const WATCH_AFTER: Duration = Duration::from_millis(20);

/// Runs upstream work while keeping an eye on the client: once work outlasts [`WATCH_AFTER`]
/// (or at once, for streams), a cancel-safe read on the client connection races it, and the
/// work is abandoned (dropped, which closes its upstream connection) when the client leaves.
pub(crate) struct ClientGuard<'a, 'c> {
    input: Option<&'a mut ClientInput<'c>>,
    watch: Option<ClientWatch<'a>>,
}

impl std::fmt::Debug for ClientGuard<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientGuard")
            .field(
                "watching",
                &self.watch.as_ref().is_some_and(ClientWatch::is_active),
            )
            .finish()
    }
}

impl<'a, 'c> ClientGuard<'a, 'c> {
    /// A guard over `input`, not watching yet.
    pub(crate) fn new(input: &'a mut ClientInput<'c>) -> Self {
        ClientGuard {
            input: Some(input),
            watch: None,
        }
    }

    /// Starts watching now.
    pub(crate) fn arm(&mut self) {
        if self.watch.is_none()
            && let Some(input) = self.input.take()
        {
            self.watch = Some(input.watch());
        }
    }

    /// Runs `work` to completion, or returns `None` as soon as the client goes away.
    ///
    /// Takes the work pinned by the caller (`guard.run(pin!(fut))`) rather than by value: an
    /// async fn keeps a by-value argument in its state *and* the pinned copy made from it, and
    /// this future lives inside every connection's task for the whole exchange (a streaming
    /// connection's memory is mostly these state machines).
    pub(crate) async fn run<F: Future>(
        &mut self,
        mut work: std::pin::Pin<&mut F>,
    ) -> Option<F::Output> {
        if self.watch.is_none() {
            // Most work is ready at once (a body already buffered) or soon: poll it before
            // arming a timer at all.
            let first = std::future::poll_fn(|cx| match work.as_mut().poll(cx) {
                std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
                std::task::Poll::Pending => std::task::Poll::Ready(None),
            })
            .await;
            if let Some(out) = first {
                return Some(out);
            }
            monoio::select! {
                out = &mut work => return Some(out),
                _ = monoio::time::sleep(WATCH_AFTER) => {}
            }
            self.arm();
        }
        loop {
            let Some(watch) = self.watch.as_mut().filter(|w| w.is_active()) else {
                return Some(work.await);
            };
            monoio::select! {
                out = &mut work => return Some(out),
                ev = watch.event() => {
                    if ev == ClientEvent::Gone {
                        return None;
                    }
                }
            }
        }
    }

    /// Stops watching, keeping any pipelined bytes the watch read.
    pub(crate) async fn finish(self) {
        if let Some(w) = self.watch {
            w.finish().await;
        }
    }
}

/// One request's response side and client-watch side.
#[derive(Debug)]
pub(crate) struct Exchange<'c> {
    /// Writing the response.
    pub out: Responder<'c>,
    /// Watching the client.
    pub input: ClientInput<'c>,
}
