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
use ingot_logs::{Envelope, LogKind, LogSink};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::access_log::AccessRecord;
use crate::body::{BoxError, CountingBody, LoggedBody, OnDone, ProxyBody};
use crate::metrics::Metrics;
use crate::table::{Endpoint, Lookup, RouteTable};
use crate::RouterConfig;

/// State every request handler shares.
pub(crate) struct Shared {
    pub table: RouteTable,
    pub logs: Arc<dyn LogSink>,
    pub config: RouterConfig,
    pub metrics: Metrics,
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
}

impl OnDone for AccessDone {
    fn done(self: Box<Self>, bytes_out: u64) {
        let AccessDone {
            shared,
            mut record,
            bytes_in,
            started,
            gorouter_time,
        } = *self;
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
            shared
                .logs
                .emit(Envelope::log(app_id, &index, "RTR", line, LogKind::Out));
        }
    }
}

/// The request in flight and what its access line will say.
struct Ctx {
    shared: Arc<Shared>,
    record: AccessRecord,
    bytes_in: Arc<AtomicU64>,
    started: Instant,
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
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        self.respond(response, None)
    }
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
) {
    tokio::spawn(async move {
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
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());

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

    let (connected, tried_any) = connect(
        &shared,
        &key,
        app_instance.as_ref(),
        sticky.as_deref(),
        &mut ctx,
    )
    .await;
    let Some((endpoint, stream)) = connected else {
        if !tried_any {
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
    let backend_request = Request::from_parts(parts, body);

    let backend_start = Instant::now();
    let result = send(stream, backend_request, shared.config.response_timeout).await;
    let headers_at = Instant::now();
    match result {
        Ok(mut response) => {
            let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
            let upgraded = match client_upgrade {
                Some(client) if switching => {
                    tunnel(
                        client,
                        hyper::upgrade::on(&mut response),
                        endpoint.addr,
                        shared.closed.clone(),
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
            let body: ProxyBody = body.map_err(BoxError::from).boxed();
            let router_time = backend_start.duration_since(started) + headers_at.elapsed();
            Ok(ctx.respond(Response::from_parts(parts, body), Some(router_time)))
        }
        Err(err) => {
            // Part of the request may have reached the backend: never retried.
            tracing::info!(addr = %endpoint.addr, instance = %endpoint.instance_guid, %err, "backend failed mid-request");
            shared.metrics.backend_error("endpoint_failure");
            Ok(ctx.error(
                StatusCode::BAD_GATEWAY,
                "endpoint_failure",
                "502 Bad Gateway: Registered endpoint failed to handle the request.".to_owned(),
            ))
        }
    }
}

/// Picks endpoints and connects, moving to another endpoint only while no
/// connection could be made (nothing of the request has left the router):
/// at most `max_attempts`, the pinned instance (`X-CF-App-Instance`) only,
/// or the sticky instance first. Also says whether any endpoint was tried.
async fn connect(
    shared: &Shared,
    key: &str,
    pinned: Option<&Endpoint>,
    sticky: Option<&str>,
    ctx: &mut Ctx,
) -> (Option<(Endpoint, TcpStream)>, bool) {
    let max_attempts = shared.config.max_attempts.max(1);
    let ttl = shared.config.failed_endpoint_ttl;
    let mut tried: Vec<String> = Vec::new();
    while tried.len() < max_attempts {
        let endpoint = match (pinned, sticky) {
            (Some(pinned), _) if tried.is_empty() => Some(pinned.clone()),
            (Some(_), _) => None,
            (None, Some(guid)) if tried.is_empty() => shared
                .table
                .sticky_endpoint(key, guid, ttl)
                .or_else(|| shared.table.next_endpoint(key, &tried, ttl)),
            (None, _) => shared.table.next_endpoint(key, &tried, ttl),
        };
        let Some(endpoint) = endpoint else { break };
        if !tried.is_empty() {
            shared.metrics.retried();
        }
        tried.push(endpoint.instance_guid.clone());
        ctx.set_endpoint(&endpoint);
        match dial(endpoint.addr, shared.config.dial_timeout).await {
            Ok(stream) => return (Some((endpoint, stream)), true),
            Err(err) => {
                tracing::info!(addr = %endpoint.addr, instance = %endpoint.instance_guid, %err, "backend connection failed");
                shared.metrics.backend_error("dial");
                shared.table.mark_failed(&endpoint.instance_guid);
            }
        }
    }
    (None, !tried.is_empty())
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

/// Sends one request on a fresh HTTP/1.1 connection and waits for the
/// response head; the body streams afterwards.
async fn send(
    stream: TcpStream,
    request: Request<CountingBody<Incoming>>,
    timeout: Duration,
) -> Result<Response<Incoming>, BoxError> {
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // With upgrades, a `101` hands the connection to the tunnel.
        if let Err(err) = connection.with_upgrades().await {
            tracing::debug!(%err, "backend connection ended with an error");
        }
    });
    match tokio::time::timeout(timeout, sender.send_request(request)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(format!("no response within {timeout:?}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
