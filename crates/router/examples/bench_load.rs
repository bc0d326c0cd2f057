//! A fixed-rate HTTP/1.1 load generator for `scripts/bench_router.py`
//! (wrk does not do fixed rates). Requests are scheduled at even intervals
//! over keep-alive connections; each latency is measured from the moment
//! the request was due, not when it was sent, so a stall counts against
//! every request it delayed (no coordinated omission).
//!
//! Usage: `bench_load ADDR HOST RATE SECONDS [CONNECTIONS]`; prints one line
//! `sent N errors E p50_us X p90_us Y p99_us Z p999_us W`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_load ADDR HOST RATE SECONDS [CONNECTIONS]";
    let addr: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let host = args.next().ok_or(usage)?;
    let rate: f64 = args.next().ok_or(usage)?.parse()?;
    let seconds: f64 = args.next().ok_or(usage)?.parse()?;
    let connections: usize = args.next().map_or(Ok(32), |c| c.parse())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let start = Instant::now() + Duration::from_millis(100);
        let total = (rate * seconds) as u64;
        let interval = Duration::from_secs_f64(connections as f64 / rate);
        let mut tasks = Vec::new();
        for c in 0..connections {
            let host = host.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let stream = tokio::net::TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                // Connection c sends requests c, c + connections, …
                let offset = Duration::from_secs_f64(c as f64 / rate);
                let mut i = 0u64;
                loop {
                    let n = c as u64 + i * connections as u64;
                    if n >= total {
                        break;
                    }
                    let due = start + offset + interval.mul_f64(i as f64);
                    tokio::time::sleep_until(due.into()).await;
                    let request = Request::get("/")
                        .header("host", &host)
                        .body(Empty::<Bytes>::new())?;
                    let ok = match sender.send_request(request).await {
                        Ok(response) => {
                            let status = response.status();
                            response.into_body().collect().await.is_ok() && status.is_success()
                        }
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(due.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                    i += 1;
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((latencies, errors))
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for task in tasks {
            let (latencies, e) = task.await?.map_err(|e| e.to_string())?;
            all.extend(latencies);
            errors += e;
        }
        all.sort_unstable();
        let pct = |p: f64| -> u64 {
            if all.is_empty() {
                return 0;
            }
            let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
            all[i]
        };
        println!(
            "sent {} errors {} p50_us {} p90_us {} p99_us {} p999_us {}",
            all.len() as u64 + errors,
            errors,
            pct(0.50),
            pct(0.90),
            pct(0.99),
            pct(0.999)
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
