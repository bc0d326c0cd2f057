//! `ingot up`: every role in one process, on the embedded defaults.
//!
//! SQLite and blobs under `--home`, one local cell, the API (with the token
//! server under `/uaa` and the log-cache under `/log-cache`) on one port, the
//! router on another. On SIGINT/SIGTERM every app container is stopped
//! (SIGTERM, then SIGKILL after the grace period) and removed; the desired
//! state stays in the database, and the next `ingot up` on the same home
//! starts every started app again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::response::IntoResponse;
use prometheus_client::registry::Registry;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::runtime::{forward_crashes, LogAccess, RouterEmitter, SchedulerRuntime, Tokens, Users};
use crate::ssh_gate::SshGate;

/// Flags of `ingot up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Where the database, blobs, keys and containers live.
    #[arg(long, env = "INGOT_HOME", default_value = "/var/lib/ingot")]
    pub home: PathBuf,
    /// Listen address of the API (with auth under /uaa and log-cache under /log-cache).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub api_listen: SocketAddr,
    /// The API's URL as clients reach it (default: http://<api-listen>).
    #[arg(long)]
    pub api_url: Option<String>,
    /// Listen address of the HTTP router.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub router_listen: SocketAddr,
    /// Listen address of the HTTPS router (TLS with SNI; HTTP/2 by ALPN).
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub router_tls_listen: SocketAddr,
    /// Listen address of the SSH proxy (`ingot ssh`, `cf ssh`).
    #[arg(long, default_value = "0.0.0.0:2222")]
    pub ssh_listen: SocketAddr,
    /// Serve the platform itself through the router by host name, as CF's
    /// system domain: the API at `api.D`, the token server at `login.D` and
    /// `uaa.D`, log-cache at `log-cache.D`, the log stream at
    /// `log-stream.D`, the websocket log endpoints at `doppler.D`, SSH
    /// advertised at `ssh.D`; `/` links to those names (for wildcard DNS).
    #[arg(long)]
    pub system_domain: Option<String>,
    /// The shared domain apps get routes on.
    #[arg(long, default_value = "apps.localhost")]
    pub app_domain: String,
    /// The router ports TCP routes may reserve, `A-B` (the `default-tcp`
    /// router group of the shared TCP domain `tcp.<app-domain>`); each
    /// mapped TCP route listens on the router's address at its port.
    #[arg(long, default_value = "1024-1033", value_parser = parse_port_range)]
    pub tcp_ports: ingot_api::PortRange,
    /// Address pool of app containers.
    #[arg(long, default_value = "10.254.0.0/22")]
    pub container_subnet: String,
    /// Prefix of the host objects containers need (bridge, network
    /// namespaces, veths, cgroups, nft table); two platforms on one host need
    /// different prefixes.
    #[arg(long, default_value = "ingot")]
    pub host_prefix: String,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, default_value_t = 1200)]
    pub token_lifetime_secs: u64,
    /// Seconds a stopping app gets between SIGTERM and SIGKILL.
    #[arg(long, default_value_t = 10)]
    pub stop_grace_secs: u64,
    /// Accept any certificate from `syslog-tls://` and `https://` log drains
    /// (CF's skip-cert-verify); by default they must chain to a public root.
    #[arg(long)]
    pub skip_drain_cert_verify: bool,
    /// Do not log the local CLI in.
    #[arg(long)]
    pub no_login: bool,
    #[command(flatten)]
    pub postgres_broker: crate::builtin_brokers::PostgresBrokerArgs,
}

/// Runs the platform until SIGINT or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    init_tracing();
    let started = std::time::Instant::now();
    let home = absolute(&args.home)?;
    create_private_dir(&home)?;
    let system = args
        .system_domain
        .as_deref()
        .map(|domain| SystemUrls::new(domain, args.router_listen.port(), args.ssh_listen.port()));
    let api_url = args
        .api_url
        .clone()
        .or_else(|| system.as_ref().map(|s| s.url("api")))
        .unwrap_or_else(|| format!("http://{}", args.api_listen))
        .trim_end_matches('/')
        .to_string();
    let self_exe = std::env::current_exe().context("cannot find the ingot binary itself")?;

    let pool = open_database(&home.join("ingot.db")).await?;
    let blobs: Arc<dyn ingot_blobstore::Blobstore> = Arc::new(
        ingot_blobstore::LocalBlobstore::open(home.join("blobs"))
            .context("opening the blobstore")?,
    );

    let auth = ingot_auth::AuthServer::open(
        pool.clone(),
        &home.join("keys"),
        ingot_auth::AuthConfig {
            issuer: format!("{api_url}/uaa/oauth/token"),
            access_token_ttl: Duration::from_secs(args.token_lifetime_secs),
            ..ingot_auth::AuthConfig::default()
        },
    )
    .await
    .context("starting the token server")?;
    let admin = auth
        .ensure_admin(&home.join("admin-credentials.json"))
        .await
        .context("creating the admin user")?;
    let admin_guid = {
        let token = auth
            .mint_access_token(&admin.username, 60)
            .await
            .context("signing a token for admin")?;
        auth.verifier()
            .verify(Some(&format!("bearer {token}")))
            .context("verifying our own token")?
            .user_id
    };
    let tokens = Arc::new(Tokens { auth: auth.clone() });

    let log_store = ingot_logs::LogStore::new(100_000);
    // Everything emitted reaches the store (log-cache, firehose) and the
    // apps' syslog drains; a drain's own loss notices go to the store only.
    let drains = ingot_logs::DrainManager::new(
        ingot_logs::DrainConfig {
            tls: ingot_logs::DrainTls {
                skip_cert_verify: args.skip_drain_cert_verify,
                ..Default::default()
            },
            ..Default::default()
        },
        log_store.clone(),
    )
    .context("starting the syslog drain forwarder")?;
    let logs: Arc<dyn ingot_logs::LogSink> = Arc::new(ingot_logs::TeeSink::new(vec![
        log_store.clone(),
        drains.clone(),
    ]));

    // Bind first: a port in use should fail before any host object exists.
    let api_listener = tokio::net::TcpListener::bind(args.api_listen)
        .await
        .with_context(|| format!("cannot listen on {} for the API", args.api_listen))?;
    let router_listener = tokio::net::TcpListener::bind(args.router_listen)
        .await
        .with_context(|| format!("cannot listen on {} for the router", args.router_listen))?;
    let ssh_listener = tokio::net::TcpListener::bind(args.ssh_listen)
        .await
        .with_context(|| format!("cannot listen on {} for the SSH proxy", args.ssh_listen))?;
    let ssh_key = home.join("ssh").join("host_key_ed25519");
    let ssh_fingerprint = ingot_ssh::HostKey::load_or_generate(&ssh_key)
        .context("preparing the SSH host key")?
        .fingerprint();
    let ssh_endpoint = advertised(&api_url, args.ssh_listen);
    let router_tls_listener = tokio::net::TcpListener::bind(args.router_tls_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the HTTPS router",
                args.router_tls_listen
            )
        })?;

    let stack = ingot_containers::prepare_default_stack(&home.join("stacks").join("default"))
        .context("preparing the default stack")?;
    let containers = ingot_containers::ContainerManager::start(ingot_containers::ManagerConfig {
        state_dir: home.join("containers"),
        prefix: args.host_prefix.clone(),
        bridge: format!("{}0", args.host_prefix),
        subnet: args.container_subnet.clone(),
        self_exe: self_exe.clone(),
        runc: find_runc()?,
    })
    .await
    .context("starting the container manager")?;

    // From here on the bridge, nft table and containers exist: whatever
    // happens, they are removed before returning.
    let outcome: anyhow::Result<()> = async {
        let table = ingot_router::RouteTable::new();
        // TCP routes listen on the HTTP router's address, at their ports.
        let tcp_router = ingot_router::TcpRouter::new(ingot_router::TcpRouterConfig {
            listen_ip: args.router_listen.ip(),
            ..ingot_router::TcpRouterConfig::default()
        });
        if let Some(system) = &system {
            system.register(&table, local_addr(args.api_listen));
        }
        let scheduler = ingot_scheduler::Scheduler::start(
            ingot_scheduler::SchedulerConfig {
                work_dir: home.join("cell"),
                lifecycle_binary: self_exe.clone(),
                cf_api: api_url.clone(),
                converge_interval: Duration::from_secs(2),
                stop_grace: Duration::from_secs(args.stop_grace_secs),
                route_drain: Duration::from_millis(750),
                capacity: ingot_scheduler::CellCapacity::of_host(&home.join("cell")),
            },
            Arc::clone(&containers),
            stack,
            Arc::clone(&blobs),
            Arc::clone(&logs),
            Arc::new(RouterEmitter::new(table.clone(), tcp_router.clone())),
        )
        .context("starting the scheduler")?;

        let api = ingot_api::Api::open(
            pool.clone(),
            Arc::clone(&blobs),
            Arc::clone(&logs),
            tokens.clone(),
            Arc::new(SchedulerRuntime {
                scheduler: scheduler.clone(),
            }),
            ingot_api::ApiConfig {
                external_url: api_url.clone(),
                uaa_url: match &system {
                    Some(s) => s.url("uaa"),
                    None => format!("{api_url}/uaa"),
                },
                log_cache_url: match &system {
                    Some(s) => s.url("log-cache"),
                    None => format!("{api_url}/log-cache"),
                },
                log_stream_url: Some(match &system {
                    Some(s) => s.url("log-stream"),
                    None => format!("{api_url}/log-stream"),
                }),
                logging_url: Some(match &system {
                    Some(s) => s.url("doppler").replacen("http", "ws", 1),
                    None => format!("{}/doppler", api_url.replacen("http", "ws", 1)),
                }),
                app_domain: args.app_domain.clone(),
                router_url: local_url(args.router_listen),
                ssh_endpoint: Some(
                    system
                        .as_ref()
                        .map_or_else(|| ssh_endpoint.clone(), |s| s.ssh.clone()),
                ),
                ssh_host_key_fingerprint: Some(ssh_fingerprint),
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
        )
        .await
        .context("opening the API")?;
        api.set_user_directory(Arc::new(Users { auth: auth.clone() }));
        api.set_tcp_ports(args.tcp_ports);
        api.bootstrap(&admin_guid, &admin.username)
            .await
            .context("creating the first org and space")?;
        let crash_forwarder = forward_crashes(&scheduler, api.clone());
        let drain_sync = sync_drains(api.clone(), drains.clone());
        let ssh_proxy = ingot_ssh::SshProxy::new(
            ingot_ssh::SshProxyConfig::new(ssh_key.clone()),
            Arc::new(SshGate {
                api: api.clone(),
                auth: auth.clone(),
                tokens: tokens.clone(),
                scheduler: scheduler.clone(),
            }),
            Arc::new(ingot_ssh::ContainerAccess::new(Arc::clone(&containers))),
            Arc::clone(&logs),
        )
        .context("starting the SSH proxy")?;

        let certificates = Arc::new(
            ingot_router::CertStore::self_signed(&[args.app_domain.as_str()])
                .context("generating the router's default certificate")?,
        );
        let certificate_file = home.join("router-certificate.pem");
        std::fs::write(
            &certificate_file,
            certificates.default_certificate().chain_pem(),
        )
        .with_context(|| format!("cannot write {}", certificate_file.display()))?;
        let tls_router = ingot_router::Router::new(table.clone(), Arc::clone(&logs));
        let router = ingot_router::Router::new(table, Arc::clone(&logs));
        let mut registry = Registry::with_prefix("ingot");
        api.register_metrics(&mut registry);
        auth.register_metrics(&mut registry);
        log_store.register_metrics(&mut registry);
        drains.register_metrics(&mut registry);
        router.register_metrics(&mut registry);
        tcp_router.register_metrics(&mut registry);
        scheduler.register_metrics(&mut registry);
        ssh_proxy.register_metrics(&mut registry);
        let registry = Arc::new(registry);
        let counters = emit_counters(Arc::clone(&registry), Arc::clone(&logs));

        let postgres_broker = crate::builtin_brokers::postgres_broker(
            &args.postgres_broker,
            &home,
            &args.container_subnet,
        )
        .await?;
        let log_access = Arc::new(LogAccess {
            tokens: tokens.clone(),
            api: api.clone(),
        });
        let http = api
            .router()
            .nest("/uaa", auth.router())
            .nest(
                "/log-cache",
                ingot_logs::log_cache_router(log_store.clone(), log_access.clone()),
            )
            .nest(
                "/log-stream",
                ingot_logs::rlp_gateway_router(log_store.firehose(), log_access.clone()),
            )
            .nest(
                "/doppler",
                ingot_logs::doppler_router(
                    log_store.firehose(),
                    log_store.clone(),
                    log_access.clone(),
                ),
            )
            .route(
                "/metrics",
                axum::routing::get(move || metrics(Arc::clone(&registry))),
            );
        let http = match &postgres_broker {
            Some(broker) => http.nest(crate::builtin_brokers::POSTGRES_PATH, broker.router.clone()),
            None => http,
        };

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let api_stop = stopped(stop_rx.clone());
        let http = match &system {
            Some(s) => s.dispatch(http),
            None => http,
        };
        let api_server = tokio::spawn(async move {
            axum::serve(
                api_listener,
                http.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(api_stop)
            .await
        });
        let router_server = tokio::spawn(router.serve(router_listener, stopped(stop_rx.clone())));
        let tls_router_server = tokio::spawn(tls_router.serve_tls(
            router_tls_listener,
            certificates,
            stopped(stop_rx.clone()),
        ));

        let ssh_stop = stopped(stop_rx.clone());
        let ssh_server = tokio::spawn(async move { ssh_proxy.serve(ssh_listener, ssh_stop).await });

        api.resume()
            .await
            .context("starting the apps that were running")?;
        if let Some(broker) = &postgres_broker {
            let token = auth
                .mint_access_token(&admin.username, 300)
                .await
                .context("signing a token to register the PostgreSQL broker")?;
            broker
                .register(args.api_listen, &token)
                .await
                .context("registering the built-in PostgreSQL broker")?;
        }

        println!("Ingot is up ({:.1}s).", started.elapsed().as_secs_f64());
        println!("  API:        {api_url}");
        println!("  app domain: {}", args.app_domain);
        println!("  router:     {}", local_url(args.router_listen));
        println!(
            "  HTTPS:      {} (self-signed certificate in {})",
            local_url(args.router_tls_listen).replace("http://", "https://"),
            certificate_file.display()
        );
        println!(
            "  TCP routes: tcp.{} on {}, ports {}-{}",
            args.app_domain,
            args.router_listen.ip(),
            args.tcp_ports.start,
            args.tcp_ports.end
        );
        println!("  SSH:        {ssh_endpoint}");
        println!("  admin:      {} / {}", admin.username, admin.password);
        println!(
            "  (credentials kept in {})",
            home.join("admin-credentials.json").display()
        );
        if !args.no_login {
            match crate::cli::login_local(&api_url, &admin.username, &admin.password).await {
                Ok(()) => {
                    if let Err(err) = crate::cli::remember_router(&local_url(args.router_listen)) {
                        tracing::warn!(error = %err, "cannot save the router address for the CLI");
                    }
                    println!(
                        "The ingot CLI is logged in as {} and targets org main, space dev.",
                        admin.username
                    )
                }
                Err(err) => {
                    println!("Could not log the CLI in ({err:#}); run `ingot login -a {api_url}`.")
                }
            }
        }
        println!("Push an app: ingot push NAME -p DIR");

        wait_for_signal().await?;
        println!("Stopping: apps get {}s to exit.", args.stop_grace_secs);
        // Streams of the RLP gateway never end by themselves: end them so the
        // API server's graceful shutdown can finish.
        log_store.firehose().shutdown();
        let _ = stop_tx.send(true);
        tokio::spawn(async {
            if wait_for_signal().await.is_ok() {
                eprintln!("Second signal: exiting without waiting for the apps.");
                std::process::exit(130);
            }
        });
        scheduler.shutdown().await;
        tcp_router.shutdown();
        crash_forwarder.abort();
        drain_sync.abort();
        counters.abort();
        drains.shutdown();
        let _ = api_server.await;
        let _ = router_server.await;
        let _ = tls_router_server.await;
        let _ = ssh_server.await;
        Ok(())
    }
    .await;
    if let Err(err) = containers.shutdown().await {
        tracing::warn!(error = %err, "container cleanup was incomplete");
    }
    pool.close().await;
    if outcome.is_ok() {
        println!("Ingot stopped.");
    }
    outcome
}

async fn metrics(registry: Arc<Registry>) -> axum::response::Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(err) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            err.to_string(),
        )
            .into_response(),
    }
}

/// `A-B` (or one port `A`) as an inclusive port range.
fn parse_port_range(text: &str) -> Result<ingot_api::PortRange, String> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let port = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| format!("'{text}' is not a port range such as 1024-1033"))
    };
    let (start, end) = (port(a)?, port(b)?);
    if start == 0 || start > end {
        return Err(format!(
            "'{text}' is not a port range such as 1024-1033 (first port 1 or more, not above the last)"
        ));
    }
    Ok(ingot_api::PortRange { start, end })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// One SQLite file in WAL mode with full fsync: every acknowledged write
/// survives a `kill -9` and a power loss.
async fn open_database(path: &Path) -> anyhow::Result<sqlx::SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open the database {}", path.display()))
}

/// How a client on this machine reaches a listener: a wildcard listen
/// address is reached on loopback.
fn local_url(listen: SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", listen.port())
    } else {
        format!("http://{listen}")
    }
}

fn find_runc() -> anyhow::Result<PathBuf> {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
        "/sbin",
        "/bin",
    ] {
        let candidate = Path::new(dir).join("runc");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!("runc is not installed; install it with `apt-get install runc`")
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("cannot read the current directory")?
            .join(path))
    }
}

fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create the home directory {}", path.display()))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("INGOT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,hyper=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `host:port` where clients reach a listener: its own address, or the API
/// URL's host when it listens on every address.
fn advertised(api_url: &str, listen: SocketAddr) -> String {
    if !listen.ip().is_unspecified() {
        return listen.to_string();
    }
    let host = reqwest::Url::parse(api_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "127.0.0.1".to_string());
    format!("{host}:{}", listen.port())
}

/// How often the syslog drains are brought in line with the bindings.
const DRAIN_SYNC_INTERVAL: Duration = Duration::from_secs(2);

/// Keeps the drain forwarder in step with the apps' bindings to
/// user-provided services that have a `syslog_drain_url`: a binding made or
/// removed reaches the forwarder within [`DRAIN_SYNC_INTERVAL`].
fn sync_drains(
    api: ingot_api::Api,
    drains: Arc<ingot_logs::DrainManager>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(DRAIN_SYNC_INTERVAL);
        let mut reported = std::collections::BTreeSet::new();
        loop {
            tick.tick().await;
            let all = match api.syslog_drains().await {
                Ok(all) => all,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the syslog drains");
                    continue;
                }
            };
            let wanted = all
                .into_iter()
                .map(|d| {
                    let meta = ingot_logs::AppMeta {
                        app_name: d.app_name,
                        space_name: d.space_name,
                        organization_name: d.org_name,
                        space_guid: d.space_guid,
                        organization_guid: d.org_guid,
                    };
                    (d.app_guid, (meta, d.urls))
                })
                .collect();
            for err in drains.sync(wanted) {
                // Each bad URL is reported once, not every two seconds.
                if reported.insert(err.to_string()) {
                    tracing::warn!(error = %err, "a syslog drain was refused");
                }
            }
        }
    })
}

/// The platform's own names under a system domain (`--system-domain`).
struct SystemUrls {
    domain: String,
    /// `:PORT` of the router, empty on port 80.
    port_suffix: String,
    /// `ssh.D:PORT`.
    ssh: String,
}

/// The system host names and the API path each one serves.
const SYSTEM_HOSTS: &[(&str, &str)] = &[
    ("api", ""),
    ("login", "/uaa"),
    ("uaa", "/uaa"),
    ("log-cache", "/log-cache"),
    ("log-stream", "/log-stream"),
    ("doppler", "/doppler"),
];

impl SystemUrls {
    fn new(domain: &str, router_port: u16, ssh_port: u16) -> Self {
        let domain = domain.trim_matches('.').to_ascii_lowercase();
        SystemUrls {
            port_suffix: if router_port == 80 {
                String::new()
            } else {
                format!(":{router_port}")
            },
            ssh: format!("ssh.{domain}:{ssh_port}"),
            domain,
        }
    }

    /// `http://NAME.D[:PORT]`.
    fn url(&self, name: &str) -> String {
        format!("http://{name}.{}{}", self.domain, self.port_suffix)
    }

    /// Routes every system host name to the API's listener.
    fn register(&self, table: &ingot_router::RouteTable, api: SocketAddr) {
        for (name, _) in SYSTEM_HOSTS {
            let host = format!("{name}.{}", self.domain);
            table.register(
                &host,
                ingot_router::Endpoint {
                    addr: api,
                    app_guid: "platform".into(),
                    process_guid: format!("platform-{name}"),
                    instance_guid: format!("platform-{name}"),
                    index: 0,
                },
            );
        }
    }

    /// Serves each system host name from its part of the API: a request for
    /// `uaa.D/oauth/token` is answered by `/uaa/oauth/token`.
    fn dispatch(&self, http: axum::Router) -> axum::Router {
        let domain = self.domain.clone();
        axum::Router::new()
            .fallback_service(http)
            .layer(axum::middleware::map_request(
                move |mut req: axum::extract::Request| {
                    let domain = domain.clone();
                    async move {
                        let host = req
                            .headers()
                            .get(axum::http::header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase());
                        let prefix = host.and_then(|host| {
                            SYSTEM_HOSTS.iter().find_map(|(name, prefix)| {
                                (host == format!("{name}.{domain}")).then_some(*prefix)
                            })
                        });
                        if let Some(prefix) = prefix.filter(|p| !p.is_empty()) {
                            let path_and_query = req
                                .uri()
                                .path_and_query()
                                .map_or("/", |pq| pq.as_str())
                                .to_string();
                            if let Ok(uri) = format!("{prefix}{path_and_query}").parse() {
                                *req.uri_mut() = uri;
                            }
                        }
                        req
                    }
                },
            ))
    }
}

/// Where this machine reaches a listener: loopback for an unspecified address.
pub(crate) fn local_addr(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port())
    } else {
        listen
    }
}

/// How often the platform's counters go onto the firehose.
const COUNTER_INTERVAL: Duration = Duration::from_secs(15);

/// Puts every Prometheus counter of the platform onto the firehose as a
/// counter envelope (source `ingot`, labels as tags), as Loggregator carries
/// each component's counters.
fn emit_counters(
    registry: Arc<Registry>,
    logs: Arc<dyn ingot_logs::LogSink>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut previous = std::collections::HashMap::new();
        let mut tick = tokio::time::interval(COUNTER_INTERVAL);
        loop {
            tick.tick().await;
            let mut text = String::new();
            if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
                continue;
            }
            ingot_logs::emit_counters(
                &*logs,
                "ingot",
                ingot_logs::counters_from_openmetrics(&text),
                &mut previous,
            );
        }
    })
}

#[cfg(test)]
mod tcp_ports_tests {
    use super::parse_port_range;

    #[test]
    fn tcp_port_ranges_parse_as_cf_writes_them() {
        let r = parse_port_range("1024-1033").expect("range");
        assert_eq!((r.start, r.end), (1024, 1033));
        let one = parse_port_range("5000").expect("one port");
        assert_eq!((one.start, one.end), (5000, 5000));
        assert!(parse_port_range("1033-1024").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("a-b").is_err());
        assert!(parse_port_range("1024-70000").is_err());
    }
}
