//! The SSH server: accepting connections, password logins through the [`SshAuthorizer`], and
//! the channels a session may open (`session` with shell/exec/sftp, `direct-tcpip`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ingot_logs::{Envelope, LogKind, LogSink};
use prometheus_client::registry::Registry;
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure, MethodKind, MethodSet, Sig};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::access::{ExecRequest, InstanceAccess, ProcessControl, PtyRequest, RemoteProcess};
use crate::hostkey::HostKey;
use crate::metrics::Metrics;
use crate::{SshAuthorizer, SshError, SshTarget};

/// Where the SFTP server lives inside containers (Debian's `openssh-sftp-server`; the default
/// stack shares the host's `/usr`).
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
/// Client input held for a process that is not started yet; more closes the connection.
const MAX_PENDING_INPUT: usize = 1 << 20;
/// Environment variables a client may set per channel (`env` requests).
const MAX_ENV: usize = 64;
/// Longest environment name or value a client may set.
const MAX_ENV_LEN: usize = 16 * 1024;
/// How long output may keep flowing after the process exited (a background child may hold
/// its stdout open forever).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct SshProxyConfig {
    /// The host key file (created on first start).
    pub host_key: PathBuf,
    /// A connection that has not logged in by then is closed.
    pub auth_timeout: Duration,
    /// Password attempts per connection.
    pub max_auth_attempts: usize,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
}

impl SshProxyConfig {
    /// Defaults: 30 s to log in, 3 attempts, 30 minutes idle.
    pub fn new(host_key: impl Into<PathBuf>) -> SshProxyConfig {
        SshProxyConfig {
            host_key: host_key.into(),
            auth_timeout: Duration::from_secs(30),
            max_auth_attempts: 3,
            idle_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// What every connection shares.
struct Shared {
    authorizer: Arc<dyn SshAuthorizer>,
    access: Arc<dyn InstanceAccess>,
    logs: Arc<dyn LogSink>,
    metrics: Metrics,
    max_auth_attempts: usize,
}

/// The SSH proxy.
pub struct SshProxy {
    host_key: HostKey,
    config: SshProxyConfig,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SshProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshProxy")
            .field("host_key", &self.host_key)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SshProxy {
    /// Loads (or creates) the host key; serves nothing until [`SshProxy::serve`].
    pub fn new(
        config: SshProxyConfig,
        authorizer: Arc<dyn SshAuthorizer>,
        access: Arc<dyn InstanceAccess>,
        logs: Arc<dyn LogSink>,
    ) -> Result<SshProxy, SshError> {
        let host_key = HostKey::load_or_generate(&config.host_key)?;
        Ok(SshProxy {
            host_key,
            shared: Arc::new(Shared {
                authorizer,
                access,
                logs,
                metrics: Metrics::default(),
                max_auth_attempts: config.max_auth_attempts.max(1),
            }),
            config,
        })
    }

    /// The host key's fingerprint for `links.app_ssh.meta.host_key_fingerprint`.
    pub fn fingerprint(&self) -> String {
        self.host_key.fingerprint()
    }

    /// The host key.
    pub fn host_key(&self) -> &HostKey {
        &self.host_key
    }

    /// Registers `ssh_sessions_opened`, `ssh_sessions_refused` and `ssh_sessions_active`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.shared.metrics.register(registry);
    }

    fn russh_config(&self) -> russh::server::Config {
        russh::server::Config {
            server_id: russh::SshId::Standard("SSH-2.0-ingot-ssh-proxy".into()),
            methods: MethodSet::from(&[MethodKind::Password][..]),
            auth_rejection_time: Duration::from_millis(500),
            // OpenSSH first probes with "none": no need to make it wait.
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![self.host_key.private_key().clone()],
            max_auth_attempts: self.config.max_auth_attempts.max(1),
            inactivity_timeout: Some(self.config.idle_timeout),
            // No keepalives: russh counts their replies as activity, and the idle limit is
            // what ends connections to clients that went away.
            keepalive_interval: None,
            nodelay: true,
            ..Default::default()
        }
    }

    /// Accepts connections on `listener` until `shutdown` resolves, then disconnects every
    /// connection and waits for them to end (their processes are hung up).
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), SshError> {
        let config = Arc::new(self.russh_config());
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (socket, remote) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            // Out of fds and the like: keep serving the others.
                            tracing::warn!(error = %e, "ssh accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    connections.spawn(connection(
                        config.clone(),
                        self.shared.clone(),
                        socket,
                        remote,
                        self.config.auth_timeout,
                        stop_rx.clone(),
                    ));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        let _ = stop_tx.send(true);
        // Connections disconnect at once; bound the wait anyway.
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
        Ok(())
    }
}

/// One client connection, from the version exchange to its end.
async fn connection(
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    socket: tokio::net::TcpStream,
    remote: SocketAddr,
    auth_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let (authed_tx, mut authed_rx) = watch::channel(false);
    let handler = ConnectionHandler {
        shared,
        remote,
        target: None,
        attempts: 0,
        authed: authed_tx,
        channels: HashMap::new(),
        tasks: JoinSet::new(),
    };
    // The version exchange happens here: a silent client must not hold the slot forever.
    let running = match tokio::time::timeout(
        auth_timeout,
        russh::server::run_stream(config, socket, handler),
    )
    .await
    {
        Ok(Ok(running)) => running,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "ssh handshake failed");
            return;
        }
        Err(_) => return,
    };
    let handle = running.handle();
    tokio::pin!(running);
    let deadline = tokio::time::sleep(auth_timeout);
    tokio::pin!(deadline);
    let mut authed = false;
    // Until the handler has said whether the login succeeded (or has gone away).
    let mut watching = true;
    loop {
        tokio::select! {
            result = &mut running => {
                if let Err(e) = result {
                    tracing::debug!(%remote, error = %e, "ssh connection ended with an error");
                }
                return;
            }
            () = &mut deadline, if !authed => {
                let _ = handle
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        "authentication timed out".into(),
                        String::new(),
                    )
                    .await;
                break;
            }
            changed = authed_rx.changed(), if watching => {
                authed = changed.is_ok() && *authed_rx.borrow();
                watching = changed.is_ok() && !authed;
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    let _ = handle
                        .disconnect(
                            russh::Disconnect::ByApplication,
                            "the proxy is shutting down".into(),
                            String::new(),
                        )
                        .await;
                    break;
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), running).await;
}

/// A `session` channel before and after its process starts.
#[derive(Default)]
struct SessionChannel {
    env: Vec<(String, String)>,
    pty: Option<PtyRequest>,
    /// Taken when the process starts.
    write: Option<russh::ChannelWriteHalf<Msg>>,
    /// Hands the process's stdin to the channel's input pump.
    stdin: Option<oneshot::Sender<Pin<Box<dyn AsyncWrite + Send>>>>,
    control: Option<Arc<dyn ProcessControl>>,
}

/// The russh handler of one connection. Dropping it (the connection ended) aborts every task
/// it started, which drops their processes (hung up) and forwarded sockets.
struct ConnectionHandler {
    shared: Arc<Shared>,
    remote: SocketAddr,
    target: Option<Arc<SshTarget>>,
    attempts: usize,
    authed: watch::Sender<bool>,
    channels: HashMap<ChannelId, SessionChannel>,
    tasks: JoinSet<()>,
}

impl ConnectionHandler {
    /// Runs `task` for as long as the connection lives.
    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        // Forget the tasks that have finished, or a long connection would pile them up.
        while self.tasks.try_join_next().is_some() {}
        self.tasks.spawn(task);
    }

    fn log(&self, target: &SshTarget, line: String) {
        self.shared.logs.emit(Envelope::log(
            &target.app_guid,
            &target.instance_index.to_string(),
            "SSH",
            line,
            LogKind::Out,
        ));
    }

    /// Starts `argv` for session channel `channel`; `false` if it could not be started.
    async fn start(&mut self, channel: ChannelId, argv: Vec<String>, session: &mut Session) {
        let started = self.try_start(channel, argv).await;
        let reply = if started {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        };
        if let Err(e) = reply {
            tracing::debug!(error = %e, "ssh channel reply failed");
        }
    }

    async fn try_start(&mut self, channel: ChannelId, argv: Vec<String>) -> bool {
        let Some(target) = self.target.clone() else {
            return false;
        };
        let Some(state) = self.channels.get_mut(&channel) else {
            return false;
        };
        let (Some(write), Some(stdin_slot)) = (state.write.take(), state.stdin.take()) else {
            // A second shell/exec on one channel.
            return false;
        };
        let mut env = target.env.clone();
        for (name, value) in [("HOME", "/home/vcap/app"), ("USER", "vcap")] {
            if !env.iter().any(|(k, _)| k == name) {
                env.push((name.into(), value.into()));
            }
        }
        for (name, value) in &state.env {
            env.retain(|(k, _)| k != name);
            env.push((name.clone(), value.clone()));
        }
        if let Some(pty) = &state.pty {
            env.retain(|(k, _)| k != "TERM");
            env.push(("TERM".into(), pty.term.clone()));
        }
        let request = ExecRequest {
            argv,
            env,
            pty: state.pty.clone(),
        };
        let process = match self.shared.access.exec(&target, request).await {
            Ok(process) => process,
            Err(e) => {
                tracing::warn!(remote = %self.remote, error = %e, "ssh exec failed");
                return false;
            }
        };
        let RemoteProcess {
            stdin,
            stdout,
            stderr,
            control,
            exit,
        } = process;
        state.control = Some(control);
        let _ = stdin_slot.send(stdin);
        self.spawn(pump_output(write, stdout, stderr, exit));
        true
    }
}

impl Drop for ConnectionHandler {
    fn drop(&mut self) {
        if let Some(target) = self.target.take() {
            self.shared.metrics.active.dec();
            self.log(&target, format!("Remote access ended for {}", self.remote));
            let authorizer = self.shared.authorizer.clone();
            let remote = self.remote;
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { authorizer.ended(&target, remote).await });
            }
        }
        // JoinSet aborts its tasks on drop.
    }
}

/// Copies the process's output to the channel, then reports its exit status and closes.
async fn pump_output(
    write: russh::ChannelWriteHalf<Msg>,
    mut stdout: Pin<Box<dyn tokio::io::AsyncRead + Send>>,
    stderr: Option<Pin<Box<dyn tokio::io::AsyncRead + Send>>>,
    exit: Pin<Box<dyn std::future::Future<Output = std::io::Result<i32>> + Send>>,
) {
    let mut out = write.make_writer();
    let mut err = write.make_writer_ext(Some(1));
    let copy = async {
        let out_copy = tokio::io::copy(&mut stdout, &mut out);
        let err_copy = async {
            if let Some(mut stderr) = stderr {
                let _ = tokio::io::copy(&mut stderr, &mut err).await;
            }
        };
        let (copied, ()) = tokio::join!(out_copy, err_copy);
        if let Err(e) = copied {
            tracing::debug!(error = %e, "ssh output copy ended");
        }
    };
    tokio::pin!(copy);
    tokio::pin!(exit);
    let code = tokio::select! {
        () = &mut copy => exit.await,
        code = &mut exit => {
            let _ = tokio::time::timeout(OUTPUT_GRACE, &mut copy).await;
            code
        }
    };
    let code = match code {
        Ok(code) if code >= 0 => code as u32,
        _ => 255,
    };
    let _ = write.eof().await;
    let _ = write.exit_status(code).await;
    let _ = write.close().await;
}

/// Feeds client data into the process's stdin once it exists; client EOF closes stdin.
async fn pump_input(
    mut read: russh::ChannelReadHalf,
    stdin_rx: oneshot::Receiver<Pin<Box<dyn AsyncWrite + Send>>>,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut eof = false;
    let mut stdin_rx = Some(stdin_rx);
    let mut sink: Option<Pin<Box<dyn AsyncWrite + Send>>> = None;
    loop {
        tokio::select! {
            received = async { match stdin_rx.as_mut() { Some(rx) => rx.await, None => std::future::pending().await } }, if stdin_rx.is_some() => {
                stdin_rx = None;
                let Ok(mut stdin) = received else { return };
                if !pending.is_empty() && stdin.write_all(&pending).await.is_err() {
                    return;
                }
                pending = Vec::new();
                if eof {
                    let _ = stdin.shutdown().await;
                    return;
                }
                sink = Some(stdin);
            }
            message = read.wait(), if !eof => match message {
                Some(ChannelMsg::Data { data }) => {
                    if let Some(stdin) = sink.as_mut() {
                        if stdin.write_all(&data).await.is_err() || stdin.flush().await.is_err() {
                            // The process stopped reading; keep draining the channel.
                            sink = None;
                        }
                    } else if stdin_rx.is_some() {
                        pending.extend_from_slice(&data);
                        if pending.len() > MAX_PENDING_INPUT {
                            return;
                        }
                    }
                }
                Some(ChannelMsg::Eof) | None => {
                    eof = true;
                    if let Some(mut stdin) = sink.take() {
                        let _ = stdin.shutdown().await;
                    }
                    if stdin_rx.is_none() {
                        return;
                    }
                }
                Some(_) => {}
            },
        }
    }
}

fn signal_number(signal: &Sig) -> Option<i32> {
    Some(match signal {
        Sig::ABRT => libc::SIGABRT,
        Sig::ALRM => libc::SIGALRM,
        Sig::FPE => libc::SIGFPE,
        Sig::HUP => libc::SIGHUP,
        Sig::ILL => libc::SIGILL,
        Sig::INT => libc::SIGINT,
        Sig::KILL => libc::SIGKILL,
        Sig::PIPE => libc::SIGPIPE,
        Sig::QUIT => libc::SIGQUIT,
        Sig::SEGV => libc::SIGSEGV,
        Sig::TERM => libc::SIGTERM,
        Sig::USR1 => libc::SIGUSR1,
        Sig::Custom(name) => match name.as_str() {
            "USR2" => libc::SIGUSR2,
            _ => return None,
        },
    })
}

fn clamp_u16(value: u32) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}

/// Is `host` the instance's own loopback (the only place `-L` may reach)?
fn is_loopback(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]")
}

impl russh::server::Handler for ConnectionHandler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::Password][..])),
            partial_success: false,
        })
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.target.is_some() || self.attempts >= self.shared.max_auth_attempts {
            return Ok(Auth::reject());
        }
        self.attempts += 1;
        // The authorizer calls out (token server, API): never let it hold the session forever.
        let decision = tokio::time::timeout(
            Duration::from_secs(20),
            self.shared
                .authorizer
                .authorize(user, password, self.remote),
        )
        .await;
        match decision {
            Ok(Ok(target)) => {
                self.shared.metrics.opened.inc();
                self.shared.metrics.active.inc();
                self.log(
                    &target,
                    format!("Successful remote access by {}", self.remote),
                );
                self.target = Some(Arc::new(target));
                let _ = self.authed.send(true);
                Ok(Auth::Accept)
            }
            Ok(Err(refusal)) => {
                self.shared.metrics.refused.inc();
                tracing::info!(remote = %self.remote, user, reason = %refusal.reason, "ssh login refused");
                Ok(Auth::reject())
            }
            Err(_) => {
                self.shared.metrics.refused.inc();
                tracing::warn!(remote = %self.remote, user, "ssh authorizer timed out");
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.target.is_none() {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        let id = channel.id();
        let (read, write) = channel.split();
        let (stdin_tx, stdin_rx) = oneshot::channel();
        self.spawn(pump_input(read, stdin_rx));
        self.channels.insert(
            id,
            SessionChannel {
                write: Some(write),
                stdin: Some(stdin_tx),
                ..Default::default()
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(target), Ok(port)) = (self.target.clone(), u16::try_from(port_to_connect)) else {
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        };
        if !is_loopback(host_to_connect) || port == 0 {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        let access = self.shared.access.clone();
        // Connecting may take a while: not on the session's loop.
        self.spawn(async move {
            match access.connect(&target, port).await {
                Ok(mut socket) => {
                    reply.accept().await;
                    let mut stream = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut socket).await;
                }
                Err(e) => {
                    tracing::debug!(port, error = %e, "ssh -L connect failed");
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                }
            }
        });
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A process whose channel the client closed is hung up.
        if let Some(control) = self.channels.remove(&channel).and_then(|s| s.control) {
            let _ = control.signal(libc::SIGHUP);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let accepted = match self.channels.get_mut(&channel) {
            Some(state) if state.write.is_some() && term.len() <= 256 => {
                state.pty = Some(PtyRequest {
                    term: if term.is_empty() { "xterm" } else { term }.to_string(),
                    cols: clamp_u16(col_width).max(1),
                    rows: clamp_u16(row_height).max(1),
                });
                true
            }
            _ => false,
        };
        if accepted {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let valid_name = !variable_name.is_empty()
            && variable_name.len() <= MAX_ENV_LEN
            && !variable_name.contains(['=', '\0'])
            && variable_value.len() <= MAX_ENV_LEN
            && !variable_value.contains('\0');
        let accepted = match self.channels.get_mut(&channel) {
            Some(state) if valid_name && state.env.len() < MAX_ENV => {
                state.env.retain(|(k, _)| k != variable_name);
                state
                    .env
                    .push((variable_name.to_string(), variable_value.to_string()));
                true
            }
            _ => false,
        };
        if accepted {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // bash as a login shell where the stack has it, sh otherwise.
        let argv = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            "if [ -x /bin/bash ]; then exec /bin/bash -l; else exec /bin/sh -l; fi".to_string(),
        ];
        self.start(channel, argv, session).await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).replace('\0', "");
        let argv = vec!["/bin/bash".to_string(), "-c".to_string(), command];
        self.start(channel, argv, session).await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp" {
            self.start(channel, vec![SFTP_SERVER.to_string()], session)
                .await;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (cols, rows) = (clamp_u16(col_width).max(1), clamp_u16(row_height).max(1));
        if let Some(state) = self.channels.get_mut(&channel) {
            match &state.control {
                Some(control) => {
                    let _ = control.resize(cols, rows);
                }
                None => {
                    if let Some(pty) = state.pty.as_mut() {
                        pty.cols = cols;
                        pty.rows = rows;
                    }
                }
            }
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let (Some(control), Some(number)) = (
            self.channels.get(&channel).and_then(|s| s.control.clone()),
            signal_number(&signal),
        ) {
            let _ = control.signal(number);
        }
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        // Remote forwarding (`ssh -R`) is not offered.
        Ok(false)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_forwarded() {
        assert!(is_loopback("localhost"));
        assert!(is_loopback("127.0.0.1"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("example.com"));
    }

    #[test]
    fn signals_map_to_numbers() {
        assert_eq!(signal_number(&Sig::INT), Some(libc::SIGINT));
        assert_eq!(signal_number(&Sig::Custom("WINCH?".into())), None);
    }
}
