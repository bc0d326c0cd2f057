//! The Ingot router for `scripts/bench_router.py`: serves `bench.local` →
//! one backend, plus `--routes N` other routes to make the table large.
//!
//! Usage: `bench_router LISTEN BACKEND [ROUTES] [THREADS]`; prints
//! `listening ADDR` once ready. Each of THREADS threads runs its own
//! single-threaded runtime and `Router` over the one shared route table.

use std::net::SocketAddr;
use std::sync::Arc;

use ingot_logs::{Envelope, LogSink};
use ingot_router::{Endpoint, RouteTable, Router};

/// Access lines are dropped: the benchmark measures the proxy.
struct Discard;

impl LogSink for Discard {
    fn emit(&self, _: Envelope) {}
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_router LISTEN BACKEND [ROUTES] [THREADS]";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let backend: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let routes: usize = args.next().map_or(Ok(0), |n| n.parse())?;
    let threads: usize = args.next().map_or(Ok(1), |t| t.parse())?;
    let table = RouteTable::new();
    let endpoint = |i: usize| Endpoint {
        addr: backend,
        app_guid: format!("app-{i}"),
        process_guid: format!("proc-{i}"),
        instance_guid: format!("instance-{i}"),
        index: 0,
    };
    for i in 0..routes {
        table.register(&format!("app-{i}.apps.bench"), endpoint(i + 1));
    }
    table.register("bench.local", endpoint(0));
    // One single-threaded runtime per thread, each with its own
    // SO_REUSEPORT listener on the same address (the kernel spreads
    // connections evenly, like nginx's `reuseport`): a request never hops
    // threads.
    let mut workers = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    for _ in 0..threads.max(1) {
        let table = table.clone();
        let ready_tx = ready_tx.clone();
        workers.push(std::thread::spawn(move || -> std::io::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let bound = (|| {
                    let socket = match listen {
                        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
                    };
                    socket.set_reuseport(true)?;
                    socket.set_reuseaddr(true)?;
                    socket.bind(listen)?;
                    socket.listen(1024)
                })();
                let _ = ready_tx.send(bound.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                Router::new(table, Arc::new(Discard))
                    .serve(bound?, std::future::pending())
                    .await
            })
        }));
    }
    drop(ready_tx);
    for _ in 0..threads.max(1) {
        ready_rx.recv()??;
    }
    println!("listening {listen} routes {}", routes + 1);
    for worker in workers {
        worker.join().map_err(|_| "router thread panicked")??;
    }
    Ok(())
}
