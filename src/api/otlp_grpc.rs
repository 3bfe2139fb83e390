//! OTLP/gRPC (`--otlp-grpc-addr`, 127.0.0.1:4317 by default): the same intake as
//! `api/otlp.rs` for exporters set to `grpc`, as the first example of Claude Code's
//! monitoring docs is, and a front door held to the same rules as the HTTP one.
//!
//! tonic's generated servers decode a message before the service sees it, so an unauthenticated
//! 16 MiB export was decoded (2.6 GB) before it was refused. Here tonic does only the gRPC
//! framing (its `Grpc::unary` with a codec that hands over the message's bytes); everything
//! else is hookwatch's, in this order:
//! 1. the ingest token is checked on the request's headers, before a byte of the message is
//!    read (`UNAUTHENTICATED`);
//! 2. the message is charged to the HTTP side's body budget as soon as its 5-byte prefix
//!    declares its length; when the budget cannot cover it the export is `UNAVAILABLE` (the
//!    exporter retries) before it is read. A gzip message (Gemini CLI's gRPC always is) is
//!    inflated here, not by tonic, a step at a time, each step charged before it is made
//!    (`wire::gunzip_within`): charging it up front at what it may inflate to (the batch
//!    limit) let four exports at once take the whole budget, and Gemini's fifth was refused;
//! 3. the message must arrive within `request_timeout` (`DEADLINE_EXCEEDED`), and be at most
//!    `--max-batch-bytes`, compressed or not (`RESOURCE_EXHAUSTED`);
//! 4. its bytes go to [`super::otlp::take`], exactly as an HTTP body's do: counted before
//!    they are decoded (`RESOURCE_EXHAUSTED` past a bound), committed, and only then answered.
//!
//! The connections are hookwatch's too (hyper's HTTP/2 server, not tonic's): at most
//! `max_connections` (more are closed as they are accepted, so an idle-connection flood on
//! this port cannot take the file descriptors the HTTP API needs), at most
//! `max_streams_per_connection` exports at once on each, keepalive pings that drop dead peers,
//! and a connection with no export for `idle_timeout` is closed (GOAWAY).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prost::bytes::{Buf, BufMut};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use super::AppState;
use super::error::ApiError;
use super::otlp::{Refusal, Signal};
use crate::otlp::wire::{self, Encoding};

/// The connection and time limits of the gRPC door.
#[derive(Debug, Clone)]
pub struct GrpcLimits {
    /// Open connections at most; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Exports in flight at once on one connection (HTTP/2 `MAX_CONCURRENT_STREAMS`).
    pub max_streams_per_connection: u32,
    /// The longest an export's message may take to arrive.
    pub request_timeout: Duration,
    /// A connection with no export in flight for this long is closed.
    pub idle_timeout: Duration,
    /// How often an idle connection is pinged; a peer that does not answer within
    /// `keepalive_timeout` is dropped.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_streams_per_connection: 16,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// The three collector services, sharing the HTTP side's state.
#[derive(Clone)]
pub(crate) struct OtlpGrpc {
    state: AppState,
    limits: GrpcLimits,
}

/// The gRPC door's own counters, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct GrpcStats {
    /// Connections closed at once because `max_connections` were open.
    pub connections_refused: AtomicU64,
    /// Connections closed after `idle_timeout` with no export.
    pub connections_idle_closed: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicUsize,
}

const LOGS_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const METRICS_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
const TRACES_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl OtlpGrpc {
    pub(crate) fn new(state: AppState, limits: GrpcLimits) -> Self {
        Self { state, limits }
    }

    /// Serves the three services on `listener` until `shutdown` resolves, then lets exports
    /// in flight finish (at most the request timeout).
    pub(crate) async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.limits.max_streams_per_connection)
            .keep_alive_interval(Some(self.limits.keepalive_interval))
            .keep_alive_timeout(self.limits.keepalive_timeout)
            .max_header_list_size(64 * 1024);
        tokio::pin!(shutdown);
        let refused = &self.state.grpc_stats.connections_refused;
        while let Some((stream, peer, slot)) =
            crate::http_server::next_connection(&listener, &slots, refused, shutdown.as_mut()).await
        {
            let _ = stream.set_nodelay(true);
            let activity = Arc::new(Activity::new());
            let door = self.clone();
            let in_service = Arc::clone(&activity);
            let service = hyper::service::service_fn(move |request| {
                let door = door.clone();
                let activity = Arc::clone(&in_service);
                async move {
                    let _busy = activity.begin();
                    Ok::<_, Infallible>(door.handle(request).await)
                }
            });
            let connection = http2.serve_connection(TokioIo::new(stream), service);
            let mut stop = stop_rx.clone();
            let limits = self.limits.clone();
            let stats = Arc::clone(&self.state.grpc_stats);
            stats.connections_open.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                tokio::pin!(connection);
                let mut check = tokio::time::interval((limits.idle_timeout / 4).max(MIN_CHECK));
                // How long a goodbye (GOAWAY) may wait for the peer: exports in flight get the
                // request timeout at shutdown; an idle connection has none, and a peer that
                // never even sent its preface would otherwise hold its slot that long too.
                let goodbye = loop {
                    tokio::select! {
                        outcome = connection.as_mut() => {
                            if let Err(e) = outcome {
                                tracing::debug!(%peer, error = %e, "OTLP/gRPC connection ended");
                            }
                            break None;
                        }
                        _ = stop.changed() => break Some(limits.request_timeout),
                        _ = check.tick() => if activity.idle_for() >= limits.idle_timeout {
                            stats.connections_idle_closed.fetch_add(1, Relaxed);
                            break Some(IDLE_GOODBYE);
                        },
                    }
                };
                if let Some(grace) = goodbye {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(grace, connection).await;
                }
                stats.connections_open.fetch_sub(1, Relaxed);
                drop(slot);
            });
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let all = u32::try_from(self.limits.max_connections).unwrap_or(u32::MAX);
        let drain = self.limits.request_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(drain, slots.acquire_many(all)).await;
    }

    /// One export: the token, then the budget and the clock while its message arrives, then
    /// [`super::otlp::take`].
    async fn handle(
        &self,
        request: axum::http::Request<Incoming>,
    ) -> axum::http::Response<tonic::body::Body> {
        let signal = match request.uri().path() {
            LOGS_PATH => Signal::Logs,
            METRICS_PATH => Signal::Metrics,
            TRACES_PATH => Signal::Traces,
            other => {
                return Status::unimplemented(format!(
                    "{other} is not served here: hookwatch takes the OTLP logs, metrics and \
                     trace services"
                ))
                .into_http();
            }
        };
        let authorization = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(why) = super::auth::may_ingest(&self.state.tokens, authorization) {
            self.refused(signal, Refusal::Unauthenticated);
            return Status::unauthenticated(why).into_http();
        }
        let max_message = self.state.limits.max_batch_bytes;
        let watch = Arc::new(BodyWatch::default());
        let (mut parts, body) = request.into_parts();
        // Compression is hookwatch's to undo (`inflate`), so tonic never sees the header.
        match parts.headers.remove("grpc-encoding") {
            Some(encoding) if !matches!(encoding.as_bytes(), b"gzip" | b"identity") => {
                self.refused(signal, Refusal::Malformed);
                return Status::unimplemented(format!(
                    "grpc-encoding {:?} is not taken: hookwatch takes gzip or none",
                    String::from_utf8_lossy(encoding.as_bytes())
                ))
                .into_http();
            }
            _ => {}
        }
        let body = GuardedBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(self.limits.request_timeout)),
            timeout: self.limits.request_timeout,
            prefix: Vec::with_capacity(PREFIX_LEN),
            charged: false,
            budget: Arc::clone(&self.state.body_budget),
            max_message,
            watch: Arc::clone(&watch),
        };
        // No `accept_compressed`: a gzip message reaches `Export` as it arrived, to be inflated
        // within the budget.
        let mut grpc = tonic::server::Grpc::new(RawCodec).max_decoding_message_size(max_message);
        let export = Export {
            state: self.state.clone(),
            signal,
            watch: Arc::clone(&watch),
        };
        let response = grpc
            .unary(export, axum::http::Request::from_parts(parts, body))
            .await;
        // Refusals before the export reached `take` (which counts its own).
        if !watch.reached.load(Relaxed) {
            let refusal = watch.refusal.lock().ok().and_then(|r| *r);
            let refusal = refusal.or_else(|| match grpc_code(&response) {
                Some(Code::Ok) | None => None,
                Some(Code::ResourceExhausted) => Some(Refusal::TooLarge),
                Some(_) => Some(Refusal::Malformed),
            });
            if let Some(refusal) = refusal {
                self.refused(signal, refusal);
            }
        }
        response
    }

    fn refused(&self, signal: Signal, why: Refusal) {
        self.state.otlp_stats.refused_request(signal, why);
    }
}

/// How long an idle connection's GOAWAY may wait for the peer before it is dropped.
const IDLE_GOODBYE: Duration = Duration::from_secs(1);

/// How often, at least, a connection is checked for idleness.
const MIN_CHECK: Duration = Duration::from_millis(50);

/// The `grpc-status` of a trailers-only answer (a refusal), if it is one.
fn grpc_code<B>(response: &axum::http::Response<B>) -> Option<Code> {
    let status = response.headers().get("grpc-status")?.to_str().ok()?;
    Some(Code::from(status.parse::<i32>().ok()?))
}

/// When a connection last had an export in flight.
struct Activity {
    started: tokio::time::Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` that the last export ended.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: tokio::time::Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Relaxed);
        Busy(Arc::clone(self))
    }

    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Relaxed) > 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.now_ms().saturating_sub(self.last_ms.load(Relaxed)))
    }
}

/// An export in flight on a connection.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.last_ms.store(self.0.now_ms(), Relaxed);
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// What the body saw, for the handler to count once tonic has answered.
#[derive(Default)]
struct BodyWatch {
    refusal: Mutex<Option<Refusal>>,
    /// The message reached `take`, which counts its own refusals.
    reached: AtomicBool,
    /// The budget charged for the message, held until the export is answered.
    held: Mutex<Option<OwnedSemaphorePermit>>,
    /// The message is gzip: handed to tonic as it arrived, flagged uncompressed, and inflated
    /// by [`Export`].
    gzip: AtomicBool,
}

impl BodyWatch {
    fn refuse(&self, why: Refusal, status: Status) -> Box<dyn std::error::Error + Send + Sync> {
        Box::new(self.refuse_status(why, status))
    }

    /// Notes why the export is refused, for the handler to count.
    fn refuse_status(&self, why: Refusal, status: Status) -> Status {
        if let Ok(mut refusal) = self.refusal.lock() {
            refusal.get_or_insert(why);
        }
        status
    }
}

/// gRPC's message prefix: a compression flag and a 4-byte length.
const PREFIX_LEN: usize = 5;

/// The request body as tonic reads it: charged to the body budget once the message's prefix
/// declares its length, and cut off at the request timeout.
struct GuardedBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    prefix: Vec<u8>,
    charged: bool,
    budget: Arc<super::body_budget::BodyBudget>,
    max_message: usize,
    watch: Arc<BodyWatch>,
}

impl GuardedBody {
    /// Reads the prefix from `data` and, once whole, charges the message.
    fn charge(&mut self, data: &[u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let wanted = PREFIX_LEN - self.prefix.len();
        self.prefix
            .extend_from_slice(&data[..wanted.min(data.len())]);
        if self.prefix.len() < PREFIX_LEN {
            return Ok(());
        }
        self.charged = true;
        let compressed = self.prefix[0] != 0;
        let declared = u32::from_be_bytes([
            self.prefix[1],
            self.prefix[2],
            self.prefix[3],
            self.prefix[4],
        ]) as usize;
        self.watch.gzip.store(compressed, Relaxed);
        // Past the limit tonic refuses it unread; a compressed one is charged for what it
        // inflates to as it inflates.
        match self.budget.try_charge(declared.min(self.max_message)) {
            Some(permit) => {
                if let Ok(mut held) = self.watch.held.lock() {
                    *held = Some(permit);
                }
                Ok(())
            }
            None => Err(self
                .watch
                .refuse(Refusal::Unavailable, budget_full(&self.budget))),
        }
    }
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.deadline.as_mut().poll(cx).is_ready() {
            let status = Status::deadline_exceeded(format!(
                "the export did not arrive within {:?} (--otlp-grpc-request-timeout)",
                this.timeout
            ));
            return Poll::Ready(Some(Err(this.watch.refuse(Refusal::Timeout, status))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let first = !this.charged && this.prefix.is_empty();
                if !this.charged
                    && let Some(data) = frame.data_ref()
                    && let Err(e) = this.charge(data)
                {
                    return Poll::Ready(Some(Err(e)));
                }
                // The message's first byte is its compression flag: cleared, so that tonic
                // hands over the gzip bytes for `Export` to inflate within the budget.
                let frame = match frame.into_data() {
                    Ok(data) if first && data.first().is_some_and(|&flag| flag != 0) => {
                        let mut cleared = prost::bytes::BytesMut::from(&data[..]);
                        cleared[0] = 0;
                        Frame::data(cleared.freeze())
                    }
                    Ok(data) => Frame::data(data),
                    Err(frame) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// The export once its message has arrived: [`super::otlp::take`], answered in protobuf.
struct Export {
    state: AppState,
    signal: Signal,
    watch: Arc<BodyWatch>,
}

impl tonic::server::UnaryService<Bytes> for Export {
    type Response = Vec<u8>;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Vec<u8>>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let state = self.state.clone();
        let signal = self.signal;
        let watch = Arc::clone(&self.watch);
        Box::pin(async move {
            let mut bytes = request.into_inner();
            if watch.gzip.load(Relaxed) {
                bytes = inflate(&state, &watch, &bytes)?;
            }
            watch.reached.store(true, Relaxed);
            let answer = super::otlp::take(&state, signal, Encoding::Protobuf, &bytes).await;
            drop(bytes);
            // The budget comes back once the export is answered.
            if let Ok(mut held) = watch.held.lock() {
                held.take();
            }
            answer.map(tonic::Response::new).map_err(status_of)
        })
    }
}

/// A gzip message inflated, each step charged to the body budget with the message's permit
/// (`--max-batch-bytes` at most once inflated): `UNAVAILABLE` when the budget has no room
/// left (the exporter retries), else `RESOURCE_EXHAUSTED` or `INVALID_ARGUMENT`.
fn inflate(state: &AppState, watch: &BodyWatch, gzip: &[u8]) -> Result<Bytes, Status> {
    let max = state.limits.max_batch_bytes;
    let inflated = wire::gunzip_within(gzip, max, |more| {
        let Some(permit) = state.body_budget.try_charge(more) else {
            return false;
        };
        match watch.held.lock() {
            Ok(mut held) => match held.as_mut() {
                Some(held) => held.merge(permit),
                None => *held = Some(permit),
            },
            Err(_) => return false,
        }
        true
    });
    match inflated {
        Ok(bytes) => Ok(Bytes::from(bytes)),
        Err(wire::Inflate::NoRoom) => {
            Err(watch.refuse_status(Refusal::Unavailable, budget_full(&state.body_budget)))
        }
        Err(wire::Inflate::Refused(e @ wire::WireError::TooLarge { .. })) => Err(watch
            .refuse_status(
                Refusal::TooLarge,
                Status::resource_exhausted(format!("{e} (--max-batch-bytes)")),
            )),
        Err(wire::Inflate::Refused(e)) => {
            Err(watch.refuse_status(Refusal::Malformed, Status::invalid_argument(e.to_string())))
        }
    }
}

/// The budget of bodies in flight has no room: the exporter retries later.
fn budget_full(budget: &super::body_budget::BodyBudget) -> Status {
    Status::unavailable(format!(
        "{} bytes of request bodies are being handled already (the limit is {}): retry later",
        budget.in_flight(),
        budget.total()
    ))
}

/// What the exporter should do about a refusal: retry (`UNAVAILABLE`) or not.
fn status_of(e: ApiError) -> Status {
    match e {
        ApiError::TooLarge { message, .. } => Status::resource_exhausted(message),
        ApiError::BadRequest { message, .. } => Status::invalid_argument(message),
        ApiError::UnsupportedMediaType(message) => Status::invalid_argument(message),
        ApiError::Unavailable { message, .. } => {
            Status::unavailable(format!("hookwatch cannot take this now: {message}"))
        }
        ApiError::Unauthorized(message) | ApiError::Forbidden(message) => {
            Status::unauthenticated(message)
        }
        ApiError::Timeout(message) => Status::deadline_exceeded(message),
        other => Status::internal(other.to_string()),
    }
}

/// tonic's framing only: a request message is handed over as its bytes (already inflated,
/// within the size limit), a response goes out as the bytes [`super::otlp::take`] encoded.
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
