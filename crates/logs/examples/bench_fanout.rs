//! Benchmark of Ingot's log path, run with
//! `cargo run --release -p ingot-logs --example bench_fanout`.
//!
//! In one run it measures, next to a plain baseline carrying the same
//! bytes in the same process (a tokio mpsc channel and a unix socket pair
//! per reader):
//! - envelopes per second from ingest (`LogStore::emit`) to 1 and to 10
//!   firehose readers, with the producer as fast as it can;
//! - delivery latency (p50/p99/max) at a steady 20 000 envelopes/s;
//! - memory per 100 000 envelopes buffered in the `LogStore`;
//! - a producer's throughput with and without a deliberately slow firehose
//!   subscriber attached, and whether that subscriber's drop notices count
//!   exactly the envelopes it missed.
//!
//! Heap bytes are counted by a wrapper around the system allocator; RSS is
//! read from `/proc/self/status`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ingot_logs::{
    Envelope, EnvelopeType, Firehose, FirehoseConfig, LogKind, LogSink, LogStore, Message,
    Selector, DEFAULT_SUBSCRIBER_BUFFER, DROPPED_COUNTER_NAME, LOG_CACHE_MAX_PER_SOURCE,
};

/// Counts live heap bytes.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged, so its guarantees are the system allocator's; the
// counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` above with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes of a typical app log line.
const PAYLOAD_BYTES: usize = 100;
/// Envelopes per throughput run.
const N_THROUGHPUT: usize = 500_000;
/// Envelopes per latency run, and their rate.
const N_LATENCY: usize = 20_000;
const LATENCY_PER_MS: usize = 20;

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn payload(i: usize) -> Vec<u8> {
    let mut p =
        format!("{i:010} 10.0.0.1 - [25/Nov/2026:14:00:00 +0000] \"GET /v3/apps HTTP/1.1\" 200 ")
            .into_bytes();
    p.resize(PAYLOAD_BYTES, b'x');
    p
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Waits until `target`, sleeping most of the way and spinning the rest.
fn wait_until(target: Instant) {
    loop {
        let now = Instant::now();
        if now >= target {
            return;
        }
        let left = target - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// How the producer paces itself.
#[derive(Clone, Copy)]
enum Pace {
    /// As fast as it can.
    Flat,
    /// `LATENCY_PER_MS` envelopes each millisecond.
    Steady,
}

/// What one run measured.
struct Run {
    sent: usize,
    producer: Duration,
    total: Duration,
    delivered: Vec<usize>,
    dropped: u64,
    latencies: Vec<u64>,
}

impl Run {
    fn per_reader_rate(&self) -> f64 {
        let avg = self.delivered.iter().sum::<usize>() as f64 / self.delivered.len() as f64;
        avg / self.total.as_secs_f64()
    }

    fn producer_rate(&self) -> f64 {
        self.sent as f64 / self.producer.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies.sort_unstable();
        let at = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[at] as f64 / 1000.0
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs the producer loop, calling `send(i, payload)`.
fn produce(n: usize, pace: Pace, mut send: impl FnMut(usize, Vec<u8>)) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        if let Pace::Steady = pace {
            if i % LATENCY_PER_MS == 0 {
                wait_until(start + Duration::from_millis((i / LATENCY_PER_MS) as u64));
            }
        }
        send(i, payload(i));
    }
    start.elapsed()
}

fn firehose_run(readers: usize, n: usize, pace: Pace) -> Run {
    let rt = runtime();
    let store = LogStore::new(LOG_CACHE_MAX_PER_SOURCE);
    let hose = store.firehose();
    let finished = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let mut subs = Vec::new();
    for _ in 0..readers {
        let sub = Arc::new(hose.subscribe("", Selector::default()));
        subs.push(sub.clone());
        let finished = finished.clone();
        tasks.push(rt.spawn(async move {
            let mut count = 0usize;
            let mut latencies = Vec::with_capacity(n);
            'outer: while let Ok(batch) = sub.next_batch(1024).await {
                let now = now_nanos();
                for e in batch.iter() {
                    if e.source_id == "end" {
                        break 'outer;
                    }
                    if e.source_id == "app" {
                        if let Message::Log { .. } = e.message {
                            count += 1;
                            latencies.push(now.saturating_sub(e.timestamp as u64));
                        }
                    }
                }
            }
            finished.fetch_add(1, Ordering::SeqCst);
            (count, latencies)
        }));
    }
    let start = Instant::now();
    let producer = produce(n, pace, |_, p| {
        store.emit(Envelope::log("app", "0", "APP/PROC/WEB", p, LogKind::Out));
    });
    // The end marker may itself be dropped by a full buffer: repeat it.
    while finished.load(Ordering::SeqCst) < readers {
        store.emit(Envelope::log(
            "end",
            "0",
            "APP/PROC/WEB",
            "end",
            LogKind::Out,
        ));
        std::thread::sleep(Duration::from_micros(200));
    }
    let total = start.elapsed();
    let mut delivered = Vec::new();
    let mut latencies = Vec::new();
    for t in tasks {
        let (count, lat) = rt.block_on(t).expect("reader task");
        delivered.push(count);
        latencies.extend(lat);
    }
    let dropped = subs.iter().map(|s| s.dropped()).sum();
    Run {
        sent: n,
        producer,
        total,
        delivered,
        dropped,
        latencies,
    }
}

fn frame(p: Vec<u8>) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + p.len());
    b.extend_from_slice(&now_nanos().to_le_bytes());
    b.extend_from_slice(&p);
    b
}

fn latency_of(frame: &[u8], now: u64) -> u64 {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&frame[..8]);
    now.saturating_sub(u64::from_le_bytes(ts))
}

fn mpsc_run(readers: usize, n: usize, pace: Pace) -> Run {
    let rt = runtime();
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..readers {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(DEFAULT_SUBSCRIBER_BUFFER);
        senders.push(tx);
        tasks.push(rt.spawn(async move {
            let mut count = 0usize;
            let mut latencies = Vec::with_capacity(n);
            while let Some(b) = rx.recv().await {
                count += 1;
                latencies.push(latency_of(&b, now_nanos()));
            }
            (count, latencies)
        }));
    }
    let start = Instant::now();
    let producer = produce(n, pace, |_, p| {
        let b = frame(p);
        for tx in &senders {
            // Blocks when full: a plain channel applies back-pressure.
            let _ = tx.blocking_send(b.clone());
        }
    });
    drop(senders);
    let mut delivered = Vec::new();
    let mut latencies = Vec::new();
    for t in tasks {
        let (count, lat) = rt.block_on(t).expect("reader task");
        delivered.push(count);
        latencies.extend(lat);
    }
    Run {
        sent: n,
        producer,
        total: start.elapsed(),
        delivered,
        dropped: 0,
        latencies,
    }
}

fn pipe_run(readers: usize, n: usize, pace: Pace) -> Run {
    let mut writers = Vec::new();
    let mut threads = Vec::new();
    for _ in 0..readers {
        let (w, r) = UnixStream::pair().expect("socket pair");
        writers.push(BufWriter::with_capacity(64 * 1024, w));
        threads.push(std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(64 * 1024, r);
            let mut count = 0usize;
            let mut latencies = Vec::with_capacity(n);
            let mut len = [0u8; 4];
            let mut buf = Vec::new();
            while r.read_exact(&mut len).is_ok() {
                buf.resize(u32::from_le_bytes(len) as usize, 0);
                if r.read_exact(&mut buf).is_err() {
                    break;
                }
                count += 1;
                latencies.push(latency_of(&buf, now_nanos()));
            }
            (count, latencies)
        }));
    }
    let start = Instant::now();
    let producer = produce(n, pace, |i, p| {
        let b = frame(p);
        for w in &mut writers {
            let _ = w.write_all(&(b.len() as u32).to_le_bytes());
            let _ = w.write_all(&b);
            // Paced: each millisecond's batch goes out at once.
            if matches!(pace, Pace::Steady) && i % LATENCY_PER_MS == LATENCY_PER_MS - 1 {
                let _ = w.flush();
            }
        }
    });
    for mut w in writers {
        let _ = w.flush();
    }
    let mut delivered = Vec::new();
    let mut latencies = Vec::new();
    for t in threads {
        let (count, lat) = t.join().expect("reader thread");
        delivered.push(count);
        latencies.extend(lat);
    }
    Run {
        sent: n,
        producer,
        total: start.elapsed(),
        delivered,
        dropped: 0,
        latencies,
    }
}

fn throughput_and_latency() {
    println!("== ingest -> readers ({PAYLOAD_BYTES}-byte log lines) ==");
    println!(
        "{:<30} {:>8} {:>14} {:>14} {:>10} {:>10} {:>10} {:>10}",
        "path", "readers", "ingest/s", "per reader/s", "dropped", "p50 us", "p99 us", "max us"
    );
    for readers in [1usize, 10] {
        let n = N_THROUGHPUT;
        type RunFn = fn(usize, usize, Pace) -> Run;
        let paths: [(&str, RunFn); 3] = [
            ("firehose (LogStore::emit)", firehose_run),
            ("baseline: tokio mpsc", mpsc_run),
            ("baseline: unix socket pair", pipe_run),
        ];
        for (name, run) in paths {
            let mut flat = run(readers, n, Pace::Flat);
            let mut steady = run(readers, N_LATENCY, Pace::Steady);
            println!(
                "{:<30} {:>8} {:>14.0} {:>14.0} {:>10} {:>10.1} {:>10.1} {:>10.1}",
                name,
                readers,
                flat.producer_rate(),
                flat.per_reader_rate(),
                flat.dropped,
                steady.percentile(0.5),
                steady.percentile(0.99),
                steady.percentile(1.0),
            );
            let _ = flat.percentile(0.99);
        }
    }
    println!(
        "(ingest/s and per reader/s: {N_THROUGHPUT} envelopes as fast as the producer can; \
         latency: {N_LATENCY} envelopes at {} envelopes/s; firehose buffer {} per reader, \
         baselines block the producer when full instead of dropping)",
        LATENCY_PER_MS * 1000,
        DEFAULT_SUBSCRIBER_BUFFER
    );
}

fn memory() {
    println!();
    println!("== memory per 100 000 buffered envelopes ==");
    let n = 100_000;
    let envelopes: Vec<Envelope> = (0..n)
        .map(|i| {
            Envelope::log(
                "app-guid-0000-0000-0000-000000000000",
                "0",
                "APP/PROC/WEB",
                payload(i),
                LogKind::Out,
            )
        })
        .collect();

    // Both stay alive until the end, so each is measured in fresh memory.
    let (heap2, rss2) = (LIVE_BYTES.load(Ordering::SeqCst), rss_kib());
    let plain: Vec<Vec<u8>> = envelopes
        .iter()
        .map(|e| match &e.message {
            Message::Log { payload, .. } => payload.clone(),
            _ => Vec::new(),
        })
        .collect();
    let (heap3, rss3) = (LIVE_BYTES.load(Ordering::SeqCst), rss_kib());

    let (heap0, rss0) = (LIVE_BYTES.load(Ordering::SeqCst), rss_kib());
    let store = LogStore::new(LOG_CACHE_MAX_PER_SOURCE);
    for e in envelopes.iter().cloned() {
        store.emit(e);
    }
    let (heap1, rss1) = (LIVE_BYTES.load(Ordering::SeqCst), rss_kib());
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    let store_heap = heap1.saturating_sub(heap0);
    let plain_heap = heap3.saturating_sub(heap2);
    println!(
        "LogStore (one source, 100 000 envelopes): heap {:.1} MiB ({} bytes/envelope), RSS +{:.1} MiB",
        mib(store_heap),
        store_heap / n,
        rss1.saturating_sub(rss0) as f64 / 1024.0
    );
    println!(
        "baseline: Vec<Vec<u8>> of the payloads:   heap {:.1} MiB ({} bytes/envelope), RSS +{:.1} MiB",
        mib(plain_heap),
        plain_heap / n,
        rss3.saturating_sub(rss2) as f64 / 1024.0
    );
    drop(plain);
    drop(store);
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What one slow-reader round measured.
struct SlowRound {
    /// Emits per second of wall-clock time.
    wall_rate: f64,
    /// Emits per second of the producer thread's own CPU time: immune to
    /// other processes taking the core, sensitive to contention.
    cpu_rate: f64,
    received: u64,
    announced: u64,
}

/// A store already holding a full buffer for the app, so that rounds
/// measure the steady state (each emit evicts one), not page faults.
struct Warm {
    rt: tokio::runtime::Runtime,
    hose: Arc<Firehose>,
    store: Arc<LogStore>,
}

impl Warm {
    fn new() -> Self {
        let hose = Firehose::new(FirehoseConfig::default());
        let store = LogStore::with_firehose(LOG_CACHE_MAX_PER_SOURCE, 10, hose.clone());
        produce(LOG_CACHE_MAX_PER_SOURCE * 2, Pace::Flat, |_, p| {
            store.emit(Envelope::log("app", "0", "APP/PROC/WEB", p, LogKind::Out));
        });
        Self {
            rt: runtime(),
            hose,
            store,
        }
    }
}

/// Producer throughput into a full store, optionally with a slow
/// subscriber attached for the round.
fn slow_reader_round(warm: &Warm, n: usize, slow: bool) -> SlowRound {
    let Warm { rt, hose, store } = warm;
    let done = Arc::new(AtomicBool::new(false));
    let reader = slow.then(|| {
        let sub = hose.subscribe(
            "",
            Selector {
                source_ids: vec!["app".into()],
                envelope_types: vec![EnvelopeType::Log, EnvelopeType::Counter],
            },
        );
        let done = done.clone();
        rt.spawn(async move {
            let (mut received, mut announced) = (0u64, 0u64);
            let mut tally = |batch: Vec<Arc<Envelope>>| {
                for e in batch {
                    match &e.message {
                        Message::Counter { name, delta, .. } if name == DROPPED_COUNTER_NAME => {
                            announced += delta
                        }
                        Message::Log { .. } if e.source_type() == Some("APP/PROC/WEB") => {
                            received += 1
                        }
                        _ => {}
                    }
                }
            };
            // Slow: 10 envelopes, then a millisecond's nap (< 10 000/s).
            while !done.load(Ordering::SeqCst) {
                match sub.try_next_batch(10) {
                    Ok(batch) => tally(batch),
                    Err(reason) => panic!("slow reader disconnected: {reason:?}"),
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // The app is done: drain what is left, notices included.
            loop {
                let batch = sub.try_next_batch(10_000).unwrap_or_default();
                if batch.is_empty() {
                    break;
                }
                tally(batch);
            }
            (received, announced)
        })
    });
    let cpu = thread_cpu_time();
    let elapsed = produce(n, Pace::Flat, |_, p| {
        store.emit(Envelope::log("app", "0", "APP/PROC/WEB", p, LogKind::Out));
    });
    let cpu = thread_cpu_time().saturating_sub(cpu);
    done.store(true, Ordering::SeqCst);
    let (received, announced) = reader
        .map(|t| rt.block_on(t).expect("slow reader"))
        .unwrap_or((0, 0));
    SlowRound {
        wall_rate: n as f64 / elapsed.as_secs_f64(),
        cpu_rate: n as f64 / cpu.as_secs_f64().max(1e-9),
        received,
        announced,
    }
}

fn slow_reader() {
    println!();
    println!("== producer with and without a slow firehose subscriber ==");
    let n = 100_000;
    let pairs = 31;
    let (mut without, mut with, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut exact = true;
    let mut last = (0, 0);
    let warm = Warm::new();
    // Short rounds in adjacent pairs: load from outside this process drifts
    // slowly, so it hits both halves of a pair alike and the pair's ratio
    // cancels it; the median over pairs drops the pairs it did not.
    for _ in 0..pairs {
        let a = slow_reader_round(&warm, n, false);
        let b = slow_reader_round(&warm, n, true);
        exact &= b.received + b.announced == n as u64;
        last = (b.received, b.announced);
        ratios.push((b.wall_rate / a.wall_rate, b.cpu_rate / a.cpu_rate));
        without.push(a);
        with.push(b);
    }
    let median = |mut x: Vec<f64>| {
        x.sort_by(|a, b| a.total_cmp(b));
        x[x.len() / 2]
    };
    let quartiles = |mut x: Vec<f64>| {
        x.sort_by(|a, b| a.total_cmp(b));
        (x[x.len() / 4], x[x.len() * 3 / 4])
    };
    let rate = |v: &[SlowRound], f: fn(&SlowRound) -> f64| median(v.iter().map(f).collect());
    println!(
        "producer emits/s, median (wall clock):     no subscriber {:>10.0}   slow subscriber {:>10.0}",
        rate(&without, |r| r.wall_rate),
        rate(&with, |r| r.wall_rate)
    );
    println!(
        "producer emits/s, median (its CPU time):   no subscriber {:>10.0}   slow subscriber {:>10.0}",
        rate(&without, |r| r.cpu_rate),
        rate(&with, |r| r.cpu_rate)
    );
    let wall: Vec<f64> = ratios.iter().map(|r| r.0).collect();
    let cpu: Vec<f64> = ratios.iter().map(|r| r.1).collect();
    let (wq1, wq3) = quartiles(wall.clone());
    let (cq1, cq3) = quartiles(cpu.clone());
    println!(
        "with/without, median of {pairs} pairs:        wall clock {:.3} ({:+.1} %, IQR {:.3}-{:.3}); CPU time {:.3} ({:+.1} %, IQR {:.3}-{:.3})",
        median(wall.clone()),
        (median(wall) - 1.0) * 100.0,
        wq1,
        wq3,
        median(cpu.clone()),
        (median(cpu) - 1.0) * 100.0,
        cq1,
        cq3
    );
    println!(
        "({pairs} pairs of rounds of {n} emits, as fast as the producer can, into a store \
         already holding {LOG_CACHE_MAX_PER_SOURCE} envelopes of the app; the slow subscriber \
         takes 10 envelopes per millisecond)"
    );
    println!(
        "slow subscriber, last round: received {} + announced dropped {} = {} of {n} sent; exact in every round: {exact}",
        last.0,
        last.1,
        last.0 + last.1
    );
}

fn main() {
    println!(
        "ingot-logs bench_fanout: {} CPUs, release={}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        !cfg!(debug_assertions)
    );
    // Optional argument: run one part only (`throughput`, `memory`, `slow`).
    let only = std::env::args().nth(1).unwrap_or_default();
    if let Some(readers) = only.strip_prefix("firehose").and_then(|n| n.parse().ok()) {
        // For profiling: one flat firehose run with that many readers.
        let run = firehose_run(readers, N_THROUGHPUT, Pace::Flat);
        println!(
            "firehose, {readers} readers: {:.0} ingest/s, {:.0} per reader/s, {} dropped",
            run.producer_rate(),
            run.per_reader_rate(),
            run.dropped
        );
        return;
    }
    if only.is_empty() || only == "throughput" {
        throughput_and_latency();
    }
    if only.is_empty() || only == "memory" {
        memory();
    }
    if only.is_empty() || only == "slow" {
        slow_reader();
    }
}
