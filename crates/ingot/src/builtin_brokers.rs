//! The service brokers `ingot up` can run itself. Today one: the PostgreSQL
//! broker (`--postgres-broker-admin-url`), served on the API's port under
//! `/brokers/postgres` and registered with the platform as the global broker
//! `postgres`, its plans visible to everyone — the operator asked for it by
//! giving the flag. Its basic-auth password is generated on first boot and
//! kept in the home (mode 0600), like the admin's.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Where the broker is mounted on the API listener.
pub const POSTGRES_PATH: &str = "/brokers/postgres";
/// The name the broker is registered under.
const POSTGRES_NAME: &str = "postgres";

/// Flags of the built-in PostgreSQL broker.
#[derive(clap::Args, Debug, Clone)]
pub struct PostgresBrokerArgs {
    /// Run the built-in PostgreSQL broker against this server, as a
    /// superuser connection string (`postgres://user:password@host:port/db`
    /// or `host=… port=… user=… dbname=…`): a database and an owner per
    /// service instance, a login per binding.
    #[arg(long)]
    pub postgres_broker_admin_url: Option<String>,
    /// The address apps connect to (default: the host's address on the
    /// container network, for a server on this machine; it must listen
    /// there, and a security group must allow it).
    #[arg(long)]
    pub postgres_broker_host: Option<String>,
    /// The port apps connect to.
    #[arg(long, default_value_t = 5432)]
    pub postgres_broker_port: u16,
}

#[derive(Serialize, Deserialize)]
struct BrokerCredentials {
    username: String,
    password: String,
}

/// The broker's basic-auth credentials, generated on first boot.
fn credentials(home: &Path) -> anyhow::Result<BrokerCredentials> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = home.join("postgres-broker-credentials.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()));
    }
    let creds = BrokerCredentials {
        username: "ingot-postgres-broker".into(),
        password: {
            use rand::RngCore;
            let mut bytes = [0u8; 24];
            rand::thread_rng().fill_bytes(&mut bytes);
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        },
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(serde_json::to_string(&creds)?.as_bytes())?;
    Ok(creds)
}

/// The host's address on the container network: the subnet's first host.
pub fn container_gateway(subnet: &str) -> Option<Ipv4Addr> {
    let (addr, _) = subnet.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    Some(Ipv4Addr::from(u32::from(addr) + 1))
}

/// A started PostgreSQL broker: its HTTP surface and how to register it.
pub struct PostgresBroker {
    /// The OSB API, to nest at [`POSTGRES_PATH`].
    pub router: axum::Router,
    username: String,
    password: String,
}

/// Connects the broker to its server; `None` without the flag.
pub async fn postgres_broker(
    args: &PostgresBrokerArgs,
    home: &Path,
    container_subnet: &str,
) -> anyhow::Result<Option<PostgresBroker>> {
    let Some(admin_url) = &args.postgres_broker_admin_url else {
        return Ok(None);
    };
    let creds = credentials(home)?;
    let host = match &args.postgres_broker_host {
        Some(h) => h.clone(),
        None => container_gateway(container_subnet)
            .context("the container subnet has no gateway address; give --postgres-broker-host")?
            .to_string(),
    };
    let config = ingot_brokers::postgres::PostgresBrokerConfig::new(
        admin_url.clone(),
        host,
        args.postgres_broker_port,
        creds.username.clone(),
        creds.password.clone(),
    );
    let broker = ingot_brokers::postgres::PostgresBroker::connect(config)
        .await
        .context("starting the PostgreSQL broker (--postgres-broker-admin-url)")?;
    Ok(Some(PostgresBroker {
        router: broker.router(),
        username: creds.username,
        password: creds.password,
    }))
}

impl PostgresBroker {
    /// Registers (or updates) the broker as `postgres` through the API at
    /// `api` with an admin `token`, waits for the catalog, and makes every
    /// plan public. Runs once the API serves.
    pub async fn register(&self, api: SocketAddr, token: &str) -> anyhow::Result<()> {
        let base = format!("http://{}", crate::up::local_addr(api));
        let broker_url = format!("{base}{POSTGRES_PATH}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let call = |method: reqwest::Method, path: String, body: Option<Value>| {
            let mut request = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(token);
            if let Some(b) = body {
                request = request.json(&b);
            }
            request.send()
        };
        let auth = json!({"type": "basic", "credentials": {"username": self.username, "password": self.password}});
        let existing: Value = call(
            reqwest::Method::GET,
            format!("/v3/service_brokers?names={POSTGRES_NAME}"),
            None,
        )
        .await?
        .error_for_status()?
        .json()
        .await?;
        let response =
            match existing["resources"][0]["guid"].as_str() {
                Some(guid) => {
                    call(
                        reqwest::Method::PATCH,
                        format!("/v3/service_brokers/{guid}"),
                        Some(json!({"url": broker_url, "authentication": auth})),
                    )
                    .await?
                }
                None => call(
                    reqwest::Method::POST,
                    "/v3/service_brokers".into(),
                    Some(json!({"name": POSTGRES_NAME, "url": broker_url, "authentication": auth})),
                )
                .await?,
            };
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("registering the PostgreSQL broker: {status}: {body}");
        }
        if let Some(job) = location {
            let path = job
                .find("/v3/jobs/")
                .map(|at| job[at..].to_string())
                .unwrap_or(job);
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                let job: Value = call(reqwest::Method::GET, path.clone(), None)
                    .await?
                    .json()
                    .await?;
                match job["state"].as_str() {
                    Some("COMPLETE") => break,
                    Some("FAILED") => anyhow::bail!(
                        "registering the PostgreSQL broker failed: {}",
                        job["errors"]
                    ),
                    _ if std::time::Instant::now() > deadline => {
                        anyhow::bail!("registering the PostgreSQL broker did not finish in 60 s")
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        let plans: Value = call(
            reqwest::Method::GET,
            format!("/v3/service_plans?service_broker_names={POSTGRES_NAME}&per_page=5000"),
            None,
        )
        .await?
        .error_for_status()?
        .json()
        .await?;
        for plan in plans["resources"].as_array().into_iter().flatten() {
            let Some(guid) = plan["guid"].as_str() else {
                continue;
            };
            call(
                reqwest::Method::PATCH,
                format!("/v3/service_plans/{guid}/visibility"),
                Some(json!({"type": "public"})),
            )
            .await?
            .error_for_status()
            .context("making the PostgreSQL plans public")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_the_subnets_first_host() {
        assert_eq!(
            container_gateway("10.254.0.0/22"),
            Some(Ipv4Addr::new(10, 254, 0, 1))
        );
        assert_eq!(container_gateway("nonsense"), None);
    }
}
