//! The static file server the `staticfile_buildpack` starts
//! (`ingot lifecycle static-server`): serves a directory on `$PORT`.
//!
//! The root is `--root`, else the `root:` of the app's `Staticfile` (resolved
//! at launch, relative to the app directory), else the app directory.
//! `index.html` answers for directories (a directory asked for without its
//! trailing slash is redirected, so relative links work), `Content-Type`
//! follows the extension, missing files are 404, `..` never leaves the root,
//! and `HEAD` answers like `GET` without the body.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;

use crate::LifecycleError;

#[derive(Debug, clap::Parser)]
#[command(about = "Serve static files on $PORT")]
struct ServerArgs {
    /// The directory to serve; default: the Staticfile's root, or the app directory.
    #[arg(long)]
    root: Option<PathBuf>,
    /// The app directory whose Staticfile is read.
    #[arg(long, default_value = "/home/vcap/app")]
    app_dir: PathBuf,
    /// The port; default: $PORT, else 8080.
    #[arg(long)]
    port: Option<u16>,
}

/// Runs `ingot lifecycle static-server …` until the process is killed.
pub(crate) fn run_cli(args: &[String]) -> Result<i32, LifecycleError> {
    let args: ServerArgs = match crate::parse_args("static-server", args) {
        Ok(args) => args,
        Err(code) => return Ok(code),
    };
    let root = args.root.unwrap_or_else(|| resolve_root(&args.app_dir));
    let port = match args.port {
        Some(port) => port,
        None => match std::env::var("PORT") {
            Ok(port) => port.parse().map_err(|_| {
                LifecycleError::Usage(format!("PORT={port:?} is not a port number"))
            })?,
            Err(_) => 8080,
        },
    };
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LifecycleError::io("cannot start the runtime for", &root))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(LifecycleError::io("cannot listen on", addr.to_string()))?;
        println!("Serving {} on {addr}", root.display());
        serve_until(listener, root.clone(), termination())
            .await
            .map_err(LifecycleError::io("serving failed for", &root))
    })?;
    Ok(0)
}

/// Resolves on SIGTERM or SIGINT. The server may be PID 1 of its container,
/// where signals without a handler are ignored, so it must handle them itself
/// to stop promptly.
async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without handlers the default dispositions still apply outside PID 1.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The directory to serve for the app in `app_dir`: its `Staticfile`'s
/// `root:` (relative to the app, `..` ignored) or the app directory itself.
pub fn resolve_root(app_dir: &Path) -> PathBuf {
    let Ok(staticfile) = std::fs::read_to_string(app_dir.join("Staticfile")) else {
        return app_dir.to_path_buf();
    };
    for line in staticfile.lines() {
        let Some(value) = line.trim().strip_prefix("root:") else {
            continue;
        };
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        let mut root = app_dir.to_path_buf();
        for part in value.split('/') {
            match part {
                "" | "." | ".." => {}
                part => root.push(part),
            }
        }
        return root;
    }
    app_dir.to_path_buf()
}

/// Serves `root` on `listener` until the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, root: PathBuf) -> std::io::Result<()> {
    axum::serve(listener, router(root)).await
}

/// Serves `root` on `listener` until `shutdown` resolves, then finishes the
/// requests in flight.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    root: PathBuf,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(root))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The server's HTTP handler as an axum router.
pub fn router(root: PathBuf) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(root)
}

async fn handle(State(root): State<PathBuf>, request: Request) -> Response {
    let method = request.method().clone();
    if method != Method::GET && method != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let uri = request.uri();
    let Some(decoded) = percent_decode(uri.path()) else {
        return plain(StatusCode::BAD_REQUEST, "400 Bad Request\n");
    };
    let mut path = root.clone();
    for part in decoded.split('/') {
        match part {
            "" | "." => {}
            // Never climb out of the root, whatever the encoding was.
            ".." => return not_found(),
            part if part.contains('\0') || part.contains('\\') => return not_found(),
            part => path.push(part),
        }
    }
    let meta = match tokio::fs::metadata(&path).await {
        Ok(meta) => meta,
        Err(_) => return not_found(),
    };
    if meta.is_dir() {
        if !uri.path().ends_with('/') {
            let location = match uri.query() {
                Some(query) => format!("{}/?{query}", uri.path()),
                None => format!("{}/", uri.path()),
            };
            let mut response = plain(StatusCode::MOVED_PERMANENTLY, "");
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            return response;
        }
        path.push("index.html");
    }
    let body = match tokio::fs::read(&path).await {
        Ok(body) => body,
        Err(_) => return not_found(),
    };
    let length = body.len();
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "404 Not Found\n")
}

/// Decodes `%XX` escapes; `None` for a malformed escape or non-UTF-8 result.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `Content-Type` for a file, by extension.
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" | "text" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error
mod tests {
    use super::*;

    #[test]
    fn decodes_and_types() {
        assert_eq!(percent_decode("/a%20b/%2e%2e").as_deref(), Some("/a b/.."));
        assert_eq!(percent_decode("/bad%zz"), None);
        assert_eq!(percent_decode("/cut%2"), None);
        assert_eq!(
            content_type(Path::new("x/INDEX.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("x/app.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("x/blob")),
            "application/octet-stream"
        );
    }

    #[test]
    fn staticfile_root_is_resolved_inside_the_app() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(resolve_root(tmp.path()), tmp.path());
        std::fs::write(
            tmp.path().join("Staticfile"),
            "gzip: on\nroot: \"public/../site\"\n",
        )
        .unwrap();
        assert_eq!(resolve_root(tmp.path()), tmp.path().join("public/site"));
        std::fs::write(tmp.path().join("Staticfile"), "").unwrap();
        assert_eq!(resolve_root(tmp.path()), tmp.path());
    }
}
