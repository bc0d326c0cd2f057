//! Health checks of running instances, as Diego's healthcheck runs them.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{HealthCheck, HealthCheckKind};

/// Runs one check; `Err` carries the reason CF shows when an instance never
/// becomes healthy.
pub async fn check_once(check: &HealthCheck, addr: SocketAddr) -> Result<(), String> {
    match check.kind {
        HealthCheckKind::Process => Ok(()),
        HealthCheckKind::Port => {
            match tokio::time::timeout(
                check.invocation_timeout,
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(format!(
                    "Failed to make TCP connection to port {}: {}",
                    addr.port(),
                    describe_io(&err)
                )),
                Err(_) => Err(format!(
                    "Failed to make TCP connection to port {}: timed out after {}",
                    addr.port(),
                    format_duration(check.invocation_timeout)
                )),
            }
        }
        HealthCheckKind::Http => {
            match tokio::time::timeout(check.invocation_timeout, http_status(addr, &check.endpoint))
                .await
            {
                Ok(Ok(200)) => Ok(()),
                Ok(Ok(status)) => Err(format!(
                    "Failed to make HTTP request to '{}' on port {}: received status code {status}",
                    check.endpoint,
                    addr.port()
                )),
                Ok(Err(err)) => Err(format!(
                    "Failed to make HTTP request to '{}' on port {}: {}",
                    check.endpoint,
                    addr.port(),
                    describe_io(&err)
                )),
                Err(_) => Err(format!(
                    "Failed to make HTTP request to '{}' on port {}: timed out after {}",
                    check.endpoint,
                    addr.port(),
                    format_duration(check.invocation_timeout)
                )),
            }
        }
    }
}

/// A minimal HTTP/1.0 GET returning the status code: enough for a health
/// check, and it needs no client stack.
async fn http_status(addr: SocketAddr, endpoint: &str) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let path = if endpoint.starts_with('/') {
        endpoint.to_string()
    } else {
        format!("/{endpoint}")
    };
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: ingot-healthcheck\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut head[read..]).await?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let line = String::from_utf8_lossy(&head[..read]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response")
        })
}

fn describe_io(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        _ => err.to_string(),
    }
}

/// Go's duration format (`1m0s`, `30s`), which CF's messages use.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else if d.subsec_millis() > 0 && secs == 0 {
        format!("{}ms", d.subsec_millis())
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go() {
        assert_eq!(format_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
    }

    #[tokio::test]
    async fn port_check_fails_until_something_listens() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let check = HealthCheck::default();
        assert!(check_once(&check, addr).await.is_ok());
        drop(listener);
        let err = check_once(&check, addr).await.expect_err("nothing listens");
        assert!(err.contains("connection refused"), "{err}");
    }

    #[tokio::test]
    async fn http_check_wants_200() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut conn, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                let _ = conn.write_all(reply.as_bytes()).await;
            }
        });
        let check = HealthCheck {
            kind: HealthCheckKind::Http,
            endpoint: "/health".into(),
            ..HealthCheck::default()
        };
        assert!(check_once(&check, addr).await.is_ok());
        let err = check_once(&check, addr).await.expect_err("503");
        assert!(err.contains("status code 503"), "{err}");
    }
}
