//! One request through the proxy, in order: find the route, pick an
//! endpoint (retrying only connections that could not be made), rewrite
//! headers, stream the request and response, write the access line.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use ingot_logs::{Envelope, LogKind, LogSink, Tags};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::access_log::AccessRecord;
use crate::body::{BoxError, CountingBody, LoggedBody, OnDone, ProxyBody};
use crate::metrics::Metrics;
use crate::pool::{Pool, Sender};
use crate::table::{ConnSlot, Endpoint, Lookup, Pick, RouteTable};
use crate::RouterConfig;

/// State every request handler shares.
pub(crate) struct Shared {
    pub table: RouteTable,
    pub logs: Arc<dyn LogSink>,
    pub config: RouterConfig,
    pub metrics: Metrics,
    /// Idle keep-alive connections to backends.
    pub pool: Pool,
    /// Changes once the router has stopped and drained: upgraded
    /// connections (which outlive their request) close then.
    pub closed: watch::Receiver<()>,
}

const X_CF_ROUTER_ERROR: &str = "x-cf-routererror";
const X_VCAP_REQUEST_ID: &str = "x-vcap-request-id";
const X_CF_APP_INSTANCE: &str = "x-cf-app-instance";

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus
/// `Expect`, which the router has already answered for the client.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

fn full_body(text: String) -> ProxyBody {
    Full::new(Bytes::from(text))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// Writes the access line and counts the request once the response is done.
struct AccessDone {
    shared: Arc<Shared>,
    record: AccessRecord,
    bytes_in: Arc<AtomicU64>,
    started: Instant,
    /// Time spent in the router before and after the backend; `None` when
    /// no backend answered (all of it was the router's).
    gorouter_time: Option<Duration>,
    /// The route the request matched, for the per-route counter.
    route: Option<String>,
    /// The backend connection's claim, held until the response is done.
    _slot: Option<ConnSlot>,
    /// The backend connection, back to the pool once the response body
    /// has been read to its end.
    reuse: Option<(SocketAddr, std::sync::Mutex<Sender>)>,
}

impl OnDone for AccessDone {
    fn done(self: Box<Self>, bytes_out: u64, complete: bool) {
        let AccessDone {
            shared,
            mut record,
            bytes_in,
            started,
            gorouter_time,
            route,
            _slot,
            reuse,
        } = *self;
        drop(_slot);
        if let (true, Some((addr, sender))) = (complete, reuse) {
            let sender = sender
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            shared.pool.put(addr, sender);
        }
        if let Some(route) = &route {
            shared.metrics.route_request(route);
        }
        let elapsed = started.elapsed();
        record.bytes_in = bytes_in.load(Ordering::Relaxed);
        record.bytes_out = bytes_out;
        record.response_time = elapsed.as_secs_f64();
        record.gorouter_time = gorouter_time.unwrap_or(elapsed).as_secs_f64();
        shared
            .metrics
            .request_served(record.status, record.response_time);
        let line = record.line();
        tracing::debug!(target: "ingot_router::access", "{line}");
        // Requests that reached no app have nobody to show the line to.
        if let Some(app_id) = &record.app_id {
            let index = record.app_index.map(|i| i.to_string()).unwrap_or_default();
            let timer = http_timer(&record, app_id, &index);
            shared
                .logs
                .emit(Envelope::log(app_id, &index, "RTR", line, LogKind::Out));
            shared.logs.emit(timer);
        }
    }
}

/// The `http` timer gorouter emits for a request that reached an app: from
/// its arrival to now, with the tags loggregator turns into a v1
/// `HttpStartStop`. The `uri` is scheme, host and path without the query
/// (as dropsonde writes it: queries may carry secrets).
fn http_timer(record: &AccessRecord, app_id: &str, index: &str) -> Envelope {
    let start = record.started_at.timestamp_nanos_opt().unwrap_or(0);
    let stop = ingot_logs::now_nanos();
    let scheme = record.x_forwarded_proto.as_deref().unwrap_or("http");
    let path = record.path.split('?').next().unwrap_or_default();
    // One line per address: loggregator splits `forwarded` on newlines.
    let forwarded = record
        .x_forwarded_for
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let mut tags = Tags::with_capacity(13);
    let mut tag = |k: &str, v: String| {
        tags.insert(k.to_owned(), v);
    };
    tag("origin", "gorouter".to_owned());
    tag("peer_type", "Server".to_owned());
    tag("method", record.method.clone());
    tag("uri", format!("{scheme}://{}{path}", record.host));
    tag("remote_address", record.client_addr.to_string());
    tag("user_agent", record.user_agent.clone().unwrap_or_default());
    tag("status_code", record.status.to_string());
    tag("content_length", record.bytes_out.to_string());
    tag("request_id", record.vcap_request_id.clone());
    tag(
        "instance_id",
        record.instance_id.clone().unwrap_or_default(),
    );
    tag("instance_index", index.to_owned());
    tag("forwarded", forwarded);
    Envelope::timer(app_id, index, "http", start, stop, tags)
}

/// The request in flight and what its access line will say.
struct Ctx {
    shared: Arc<Shared>,
    record: AccessRecord,
    bytes_in: Arc<AtomicU64>,
    started: Instant,
    route: Option<String>,
    slot: Option<ConnSlot>,
    reuse: Option<(SocketAddr, Sender)>,
    /// The client speaks HTTP/1.x.
    http1: bool,
}

impl Ctx {
    fn set_endpoint(&mut self, endpoint: &Endpoint) {
        self.record.backend_addr = Some(endpoint.addr);
        self.record.app_id = Some(endpoint.app_guid.clone());
        self.record.app_index = Some(endpoint.index);
        self.record.instance_id = Some(endpoint.instance_guid.clone());
    }

    fn respond(
        self,
        mut response: Response<ProxyBody>,
        gorouter_time: Option<Duration>,
    ) -> Response<ProxyBody> {
        set_header(
            response.headers_mut(),
            X_VCAP_REQUEST_ID,
            &self.record.vcap_request_id,
        );
        let mut record = self.record;
        record.status = response.status().as_u16();
        let done = Box::new(AccessDone {
            shared: self.shared,
            record,
            bytes_in: self.bytes_in,
            started: self.started,
            gorouter_time,
            route: self.route,
            _slot: self.slot,
            reuse: self
                .reuse
                .map(|(addr, sender)| (addr, std::sync::Mutex::new(sender))),
        });
        response.map(|body| LoggedBody::new(body, done).boxed())
    }

    /// A response made by the router itself, with gorouter's error header.
    fn error(
        mut self,
        status: StatusCode,
        router_error: &'static str,
        text: String,
    ) -> Response<ProxyBody> {
        self.record.router_error = Some(router_error);
        let mut response = Response::new(full_body(format!("{text}\n")));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        set_header(headers, X_CF_ROUTER_ERROR, router_error);
        if status == StatusCode::BAD_REQUEST && self.http1 {
            // After a malformed request the connection's framing cannot be
            // trusted: close it. (HTTP/2 frames each request; it has no
            // `Connection` header.)
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        self.respond(response, None)
    }
}

/// A random (version 4) UUID for `X-Vcap-Request-Id`. Request ids need to
/// be unique, not secret: they come from SipHash with the process's random
/// keys over a per-thread counter, which spares every request the
/// `getrandom` system call `Uuid::new_v4` makes.
fn request_uuid() -> uuid::Uuid {
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static STATE: (std::collections::hash_map::RandomState, Cell<u64>) =
            (std::collections::hash_map::RandomState::new(), Cell::new(0));
    }
    STATE.with(|(keys, counter)| {
        let mut bytes = [0u8; 16];
        for half in bytes.chunks_mut(8) {
            let n = counter.get().wrapping_add(1);
            counter.set(n);
            let mut hasher = keys.build_hasher();
            hasher.write_u64(n);
            half.copy_from_slice(&hasher.finish().to_le_bytes());
        }
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    })
}

/// Parses `X-CF-App-Instance: <app guid>:<index>`.
fn parse_app_instance(value: &str) -> Option<(String, u32)> {
    let (guid, index) = value.trim().split_once(':')?;
    if guid.is_empty() {
        return None;
    }
    Some((guid.to_owned(), index.parse().ok()?))
}

async fn dial(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            // Small request/response exchanges should not wait on Nagle.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(err)) => Err(err),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("dial {addr} timed out after {timeout:?}"),
        )),
    }
}

/// The protocol an HTTP/1.1 request asks to switch to (`Connection:
/// upgrade` with `Upgrade: <protocol>`), e.g. `websocket`.
fn requested_upgrade<B>(request: &Request<B>) -> Option<HeaderValue> {
    if request.version() != Version::HTTP_11 {
        return None;
    }
    let asks = request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !asks {
        return None;
    }
    request.headers().get(header::UPGRADE).cloned()
}

/// Joins the client's and the app's upgraded connections and copies bytes
/// both ways until either side closes or the router has stopped.
fn tunnel(
    client: OnUpgrade,
    backend: OnUpgrade,
    backend_addr: SocketAddr,
    mut closed: watch::Receiver<()>,
    slot: Option<ConnSlot>,
) {
    tokio::spawn(async move {
        // The backend connection counts against its limit while it is open.
        let _slot = slot;
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(both) => both,
            Err(err) => {
                tracing::debug!(%backend_addr, %err, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        let copied = tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => copied,
            _ = closed.changed() => {
                tracing::debug!(%backend_addr, "upgraded connection closed by router shutdown");
                return;
            }
        };
        match copied {
            Ok((to_app, to_client)) => {
                tracing::debug!(%backend_addr, to_app, to_client, "upgraded connection closed");
            }
            Err(err) => tracing::debug!(%backend_addr, %err, "upgraded connection failed"),
        }
    });
}

/// Serves one request; `tls` says whether it came over the TLS listener.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    client_addr: SocketAddr,
    tls: bool,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let upgrade = requested_upgrade(&request);
    // Taken before the request is split: the handle to the client's side
    // of the connection once the app has agreed to switch.
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let host = header_str(&parts.headers, header::HOST)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    let request_id = header_str(&parts.headers, X_VCAP_REQUEST_ID)
        .filter(|id| !id.trim().is_empty())
        .unwrap_or_else(|| request_uuid().to_string());

    // Forwarding headers, as gorouter adds them.
    let client_ip = client_addr.ip().to_string();
    let forwarded_for = match header_str(&parts.headers, "x-forwarded-for") {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {client_ip}"),
        _ => client_ip,
    };
    // Over TLS the router knows the scheme; on the plain listener a proxy
    // in front (a load balancer that terminated TLS) may have said it.
    let forwarded_proto = if tls {
        "https".to_owned()
    } else {
        header_str(&parts.headers, "x-forwarded-proto").unwrap_or_else(|| "http".to_owned())
    };

    let mut ctx = Ctx {
        record: AccessRecord {
            host: host.clone(),
            started_at: Utc::now(),
            method: parts.method.to_string(),
            path: path_and_query.clone(),
            proto: format!("{:?}", parts.version),
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            referer: header_str(&parts.headers, header::REFERER),
            user_agent: header_str(&parts.headers, header::USER_AGENT),
            client_addr,
            backend_addr: None,
            x_forwarded_for: Some(forwarded_for.clone()),
            x_forwarded_proto: Some(forwarded_proto.clone()),
            vcap_request_id: request_id.clone(),
            response_time: 0.0,
            gorouter_time: 0.0,
            app_id: None,
            app_index: None,
            instance_id: None,
            router_error: None,
        },
        shared: shared.clone(),
        bytes_in: Arc::new(AtomicU64::new(0)),
        started,
        route: None,
        slot: None,
        reuse: None,
        http1: parts.version < Version::HTTP_2,
    };

    if host.trim().is_empty() {
        return Ok(ctx.error(
            StatusCode::BAD_REQUEST,
            "empty_host",
            "400 Bad Request: Request had empty Host header".to_owned(),
        ));
    }
    let route_host = crate::table::normalise_host(&host);
    let key = match shared.table.lookup(&host, parts.uri.path()) {
        Lookup::Unknown => {
            return Ok(ctx.error(
                StatusCode::NOT_FOUND,
                "unknown_route",
                format!("404 Not Found: Requested route ('{route_host}') does not exist."),
            ))
        }
        Lookup::Route {
            has_endpoints: false,
            ..
        } => {
            return Ok(ctx.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_endpoints",
                format!(
                    "503 Service Unavailable: Requested route ('{route_host}') has no available endpoints."
                ),
            ))
        }
        Lookup::Route { key, .. } => key,
    };
    ctx.route = Some(key.clone());

    let app_instance = match header_str(&parts.headers, X_CF_APP_INSTANCE) {
        None => None,
        Some(value) => {
            let found = parse_app_instance(&value)
                .and_then(|(guid, index)| shared.table.find_instance(&key, &guid, index));
            match found {
                Some(endpoint) => Some(endpoint),
                None => {
                    return Ok(ctx.error(
                        StatusCode::BAD_REQUEST,
                        "invalid_cf_app_instance_header",
                        "400 Bad Request: Invalid X-CF-App-Instance Header".to_owned(),
                    ))
                }
            }
        }
    };

    let sticky = match app_instance {
        Some(_) => None,
        None => crate::sticky::requested_instance(&parts.headers),
    };

    let (connected, outcome) = connect(
        &shared,
        &key,
        app_instance.as_ref(),
        sticky.as_deref(),
        &mut ctx,
    )
    .await;
    let Some((endpoint, conn, slot)) = connected else {
        if outcome == ConnectOutcome::Overloaded {
            shared.metrics.backend_error("connection_limit");
            return Ok(ctx.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Connection Limit Reached",
                format!(
                    "503 Service Unavailable: Requested route ('{route_host}') has reached the connection limit."
                ),
            ));
        }
        if outcome == ConnectOutcome::NothingTried {
            // Every endpoint went away between the lookup and now.
            return Ok(ctx.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_endpoints",
                format!(
                    "503 Service Unavailable: Requested route ('{route_host}') has no available endpoints."
                ),
            ));
        }
        return Ok(ctx.error(
            StatusCode::BAD_GATEWAY,
            "endpoint_failure",
            "502 Bad Gateway: Registered endpoint failed to handle the request.".to_owned(),
        ));
    };

    // The request as the backend sees it.
    let forwarded = Forwarded {
        host: &host,
        forwarded_for: &forwarded_for,
        forwarded_proto: &forwarded_proto,
        request_id: &request_id,
    };
    rewrite_request_headers(&mut parts.headers, &forwarded, &endpoint);
    if let Some(protocol) = &upgrade {
        // Hop-by-hop, but the app must see them to agree to the switch.
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol.clone());
    }
    // Apps speak HTTP/1.1 whatever the client spoke.
    parts.version = Version::HTTP_11;
    // Backends get origin-form targets even if the client sent absolute-form.
    parts.uri = path_and_query
        .parse::<Uri>()
        .unwrap_or_else(|_| Uri::from_static("/"));
    let body = CountingBody::new(body, ctx.bytes_in.clone());
    let client_body_failed = body.failed_flag();
    let backend_request = Request::from_parts(parts, body);

    let mut slot = Some(slot);
    let backend_start = Instant::now();
    let result = send(conn, backend_request, endpoint.addr, &shared.config).await;
    let headers_at = Instant::now();
    match result {
        Ok((mut response, sender)) => {
            let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
            let upgraded = match client_upgrade {
                Some(client) if switching => {
                    tunnel(
                        client,
                        hyper::upgrade::on(&mut response),
                        endpoint.addr,
                        shared.closed.clone(),
                        slot.take(),
                    );
                    response.headers().get(header::UPGRADE).cloned()
                }
                _ => None,
            };
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            if let Some(protocol) = upgraded {
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                parts.headers.insert(header::UPGRADE, protocol);
            }
            if app_instance.is_none() {
                if let Some(cookie) = crate::sticky::response_cookie(
                    &parts.headers,
                    sticky.as_deref(),
                    &endpoint.instance_guid,
                ) {
                    parts.headers.append(header::SET_COOKIE, cookie);
                }
            }
            ctx.slot = slot.take();
            if !switching && upgrade.is_none() {
                ctx.reuse = Some((endpoint.addr, sender));
            }
            let body: ProxyBody = body.map_err(BoxError::from).boxed();
            let router_time = backend_start.duration_since(started) + headers_at.elapsed();
            Ok(ctx.respond(Response::from_parts(parts, body), Some(router_time)))
        }
        Err(_) if client_body_failed.load(Ordering::Relaxed) => {
            // The client's body was malformed (a bad chunk size): the client's
            // fault, not the backend's.
            drop(slot);
            Ok(ctx.error(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                "400 Bad Request: Malformed request body".to_owned(),
            ))
        }
        Err(SendError::Timeout(timeout)) => {
            // gorouter answers a backend that does not respond within its
            // endpoint timeout with 502 `endpoint_failure`.
            tracing::info!(addr = %endpoint.addr, instance = %endpoint.instance_guid, ?timeout, "backend did not answer in time");
            drop(slot);
            shared.metrics.backend_error("timeout");
            Ok(ctx.error(
                StatusCode::BAD_GATEWAY,
                "endpoint_failure",
                "502 Bad Gateway: Registered endpoint failed to handle the request.".to_owned(),
            ))
        }
        Err(SendError::Failed(err)) => {
            // Part of the request may have reached the backend: never retried.
            tracing::info!(addr = %endpoint.addr, instance = %endpoint.instance_guid, %err, "backend failed mid-request");
            drop(slot);
            shared.metrics.backend_error("endpoint_failure");
            Ok(ctx.error(
                StatusCode::BAD_GATEWAY,
                "endpoint_failure",
                "502 Bad Gateway: Registered endpoint failed to handle the request.".to_owned(),
            ))
        }
    }
}

/// Why [`connect`] found no connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectOutcome {
    /// Connected (or not asked).
    Connected,
    /// No endpoint was there to try.
    NothingTried,
    /// Every endpoint tried failed to accept a connection.
    Failed,
    /// The endpoints left were all at their connection limit.
    Overloaded,
}

/// Picks endpoints and connects, moving to another endpoint only while no
/// connection could be made (nothing of the request has left the router):
/// at most `max_attempts`, the pinned instance (`X-CF-App-Instance`) only,
/// or the sticky instance first. Instances at their connection limit are
/// passed over.
async fn connect(
    shared: &Shared,
    key: &str,
    pinned: Option<&Endpoint>,
    sticky: Option<&str>,
    ctx: &mut Ctx,
) -> (Option<(Endpoint, BackendConn, ConnSlot)>, ConnectOutcome) {
    let max_attempts = shared.config.max_attempts.max(1);
    let ttl = shared.config.failed_endpoint_ttl;
    let max_conns = shared.config.max_conns_per_backend;
    let mut tried: Vec<String> = Vec::new();
    let mut outcome = ConnectOutcome::NothingTried;
    while tried.len() < max_attempts {
        let picked = match (pinned, sticky) {
            (Some(pinned), _) if tried.is_empty() => {
                match shared.table.claim(&pinned.instance_guid, max_conns) {
                    Some(slot) => Pick::Endpoint(pinned.clone(), slot),
                    None => Pick::Overloaded,
                }
            }
            (Some(_), _) => Pick::Exhausted,
            (None, Some(guid)) if tried.is_empty() => {
                let sticky = shared.table.sticky_endpoint(key, guid, ttl).and_then(|e| {
                    let slot = shared.table.claim(&e.instance_guid, max_conns)?;
                    Some((e, slot))
                });
                match sticky {
                    Some((endpoint, slot)) => Pick::Endpoint(endpoint, slot),
                    None => shared.table.pick(key, &tried, ttl, max_conns),
                }
            }
            (None, _) => shared.table.pick(key, &tried, ttl, max_conns),
        };
        let (endpoint, slot) = match picked {
            Pick::Endpoint(endpoint, slot) => (endpoint, slot),
            Pick::Overloaded => {
                if tried.is_empty() {
                    outcome = ConnectOutcome::Overloaded;
                }
                break;
            }
            Pick::Exhausted => break,
        };
        if !tried.is_empty() {
            shared.metrics.retried();
        }
        tried.push(endpoint.instance_guid.clone());
        ctx.set_endpoint(&endpoint);
        if let Some(sender) = shared.pool.take(endpoint.addr) {
            let conn = BackendConn::Pooled(sender);
            return (Some((endpoint, conn, slot)), ConnectOutcome::Connected);
        }
        outcome = ConnectOutcome::Failed;
        match dial(endpoint.addr, shared.config.dial_timeout).await {
            Ok(stream) => {
                let conn = BackendConn::Fresh(stream);
                return (Some((endpoint, conn, slot)), ConnectOutcome::Connected);
            }
            Err(err) => {
                tracing::info!(addr = %endpoint.addr, instance = %endpoint.instance_guid, %err, "backend connection failed");
                shared.metrics.backend_error("dial");
                shared.table.mark_failed(&endpoint.instance_guid);
            }
        }
    }
    (None, outcome)
}

/// Request facts that go to the backend as headers.
struct Forwarded<'a> {
    host: &'a str,
    forwarded_for: &'a str,
    forwarded_proto: &'a str,
    request_id: &'a str,
}

/// The headers gorouter sends to an app: hop-by-hop headers removed,
/// forwarding, timing and request id headers set, and who the instance is.
fn rewrite_request_headers(
    headers: &mut HeaderMap,
    forwarded: &Forwarded<'_>,
    endpoint: &Endpoint,
) {
    remove_hop_by_hop(headers);
    if !headers.contains_key(header::HOST) {
        set_header_value(headers, header::HOST, forwarded.host);
    }
    set_header(headers, "x-forwarded-for", forwarded.forwarded_for);
    set_header(headers, "x-forwarded-proto", forwarded.forwarded_proto);
    let request_start = Utc::now().timestamp_millis().to_string();
    set_header(headers, "x-request-start", &request_start);
    set_header(headers, X_VCAP_REQUEST_ID, forwarded.request_id);
    set_header(headers, "x-cf-instanceid", &endpoint.instance_guid);
    set_header(headers, "x-cf-instanceindex", &endpoint.index.to_string());
    set_header(headers, "x-cf-applicationid", &endpoint.app_guid);
}

fn set_header_value(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// A connection to a backend, ready for a request.
pub(crate) enum BackendConn {
    /// An idle keep-alive connection from the pool.
    Pooled(Sender),
    /// A connection just made.
    Fresh(TcpStream),
}

/// Sends one request to the backend and waits for the response head (the
/// body streams afterwards); also gives back the connection for reuse. A
/// pooled connection that closed before anything of the request was
/// written is replaced by a fresh one.
async fn send(
    conn: BackendConn,
    request: Request<CountingBody<Incoming>>,
    addr: SocketAddr,
    config: &RouterConfig,
) -> Result<(Response<Incoming>, Sender), SendError> {
    let timeout = config.response_timeout;
    let exchange = async {
        let request = match conn {
            BackendConn::Fresh(stream) => return send_fresh(stream, request).await,
            BackendConn::Pooled(mut sender) => {
                if sender.ready().await.is_ok() {
                    match sender.try_send_request(request).await {
                        Ok(response) => return Ok((response, sender)),
                        Err(mut err) => match err.take_message() {
                            Some(unsent) => unsent,
                            None => return Err(SendError::Failed(err.into_error().into())),
                        },
                    }
                } else {
                    // Closed while idle: nothing was sent.
                    request
                }
            }
        };
        let stream = dial(addr, config.dial_timeout)
            .await
            .map_err(|err| SendError::Failed(err.into()))?;
        send_fresh(stream, request).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(SendError::Timeout(timeout)),
    }
}

async fn send_fresh(
    stream: TcpStream,
    request: Request<CountingBody<Incoming>>,
) -> Result<(Response<Incoming>, Sender), SendError> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| SendError::Failed(err.into()))?;
    tokio::spawn(async move {
        // With upgrades, a `101` hands the connection to the tunnel.
        if let Err(err) = connection.with_upgrades().await {
            tracing::debug!(%err, "backend connection ended with an error");
        }
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| SendError::Failed(err.into()))?;
    Ok((response, sender))
}

/// How sending a request to a backend failed.
enum SendError {
    /// No response head within the response timeout.
    Timeout(Duration),
    /// The connection failed or the response was malformed.
    Failed(BoxError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| request_uuid()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.get_version_num() == 4));
    }

    #[test]
    fn app_instance_header_parses_guid_and_index() {
        assert_eq!(parse_app_instance("abc:2"), Some(("abc".into(), 2)));
        assert_eq!(parse_app_instance("abc"), None);
        assert_eq!(parse_app_instance(":1"), None);
        assert_eq!(parse_app_instance("abc:x"), None);
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        remove_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(names, ["x-kept"]);
    }
}
