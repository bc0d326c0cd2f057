//! The built-in PostgreSQL service broker: an Open Service Broker API 2.x
//! server that administers a PostgreSQL server it is given.
//!
//! - an **instance** is a database (`ingot_<id>_<digest>`) owned by a
//!   NOLOGIN role, with the plan's `CONNECTION LIMIT`; only the instance's
//!   bindings may connect to it;
//! - a **binding** is a LOGIN role with a random password and the same
//!   connection limit, a member of the owner; its sessions act as the owner,
//!   so the tables it creates belong to the instance and survive unbinding;
//! - **unbind** refuses new logins, ends the role's open sessions and drops
//!   it, so revoked credentials stop working at once;
//! - a **plan update** is `ALTER DATABASE … CONNECTION LIMIT` in place;
//! - **deprovision** ends every session and drops the database and roles.
//!
//! Everything is synchronous (`last_operation` always says `succeeded`). The
//! broker's state (instance → plan, binding → role) lives in the schema
//! `ingot_postgres_broker` of the admin database, so a restarted broker,
//! or a second one on the same server, knows every instance.
//!
//! The admin role must be a superuser: it creates and drops databases and
//! roles, ends other roles' sessions, and connects to databases whose
//! connection limit is reached.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use ingot_brokers::postgres::{PostgresBroker, PostgresBrokerConfig};
//! let config = PostgresBrokerConfig::new(
//!     "postgresql://postgres@127.0.0.1:5432/postgres",
//!     "10.0.0.5", // where apps reach the server
//!     5432,
//!     "broker",
//!     "broker-secret",
//! );
//! let broker = PostgresBroker::connect(config).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! broker.serve(listener).await?;
//! # Ok(()) }
//! ```

mod admin;
mod catalog;
mod http;
mod names;

pub use catalog::{offering_id, PostgresPlan, OFFERING_NAME};

use std::fmt;
use std::sync::Arc;

/// How the broker reaches PostgreSQL, what it tells apps, and who may call it.
#[derive(Clone)]
pub struct PostgresBrokerConfig {
    /// Admin connection string, in either of libpq's forms as tokio-postgres
    /// reads them: `postgresql://user:password@host:port/dbname` (add
    /// `?host=/run/postgresql` for a Unix socket) or
    /// `host=… port=… user=… password=… dbname=…`. The role must be a
    /// superuser; the broker's state tables are created in `dbname`. The
    /// connection does not use TLS.
    pub admin_url: String,
    /// Host name or address apps connect to (the `hostname` of the
    /// credentials); may differ from the admin address.
    pub advertised_host: String,
    /// Port apps connect to.
    pub advertised_port: u16,
    /// Basic-auth user the platform must send.
    pub username: String,
    /// Basic-auth password the platform must send.
    pub password: String,
    /// The plans offered, by default [`PostgresPlan::defaults`].
    pub plans: Vec<PostgresPlan>,
}

impl PostgresBrokerConfig {
    /// A configuration with the default plans.
    pub fn new(
        admin_url: impl Into<String>,
        advertised_host: impl Into<String>,
        advertised_port: u16,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> PostgresBrokerConfig {
        PostgresBrokerConfig {
            admin_url: admin_url.into(),
            advertised_host: advertised_host.into(),
            advertised_port,
            username: username.into(),
            password: password.into(),
            plans: PostgresPlan::defaults(),
        }
    }
}

/// Passwords (the broker's, and the one the admin URL may hold) are not shown.
impl fmt::Debug for PostgresBrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBrokerConfig")
            .field("admin_url", &"<redacted>")
            .field("advertised_host", &self.advertised_host)
            .field("advertised_port", &self.advertised_port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("plans", &self.plans)
            .finish()
    }
}

/// Why the broker could not start or could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum PostgresBrokerError {
    /// The admin connection string does not parse (it is not repeated here:
    /// it may hold a password).
    #[error("the PostgreSQL broker's admin connection string is invalid: {reason}")]
    InvalidAdminUrl {
        /// The parser's words.
        reason: String,
    },
    /// A plan of the configuration is unusable.
    #[error("PostgreSQL broker plan {name:?}: {reason}")]
    InvalidPlan {
        /// The plan's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached or refused the login.
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Connect {
        /// `host:port` or socket directory.
        target: String,
        /// The driver's words.
        reason: String,
    },
    /// The admin role cannot do what the broker needs.
    #[error("the PostgreSQL role {user:?} at {target} is not a superuser; the broker needs one")]
    NotSuperuser {
        /// `host:port` or socket directory.
        target: String,
        /// The role.
        user: String,
    },
    /// A statement failed.
    #[error("PostgreSQL could not {action} ({object}): {reason}")]
    Sql {
        /// What the broker was doing, e.g. `create the database`.
        action: &'static str,
        /// The database, role or id concerned.
        object: String,
        /// The server's SQLSTATE and message.
        reason: String,
    },
    /// An operation's task died (a bug).
    #[error("the PostgreSQL broker's operation on {object} did not finish: {reason}")]
    Aborted {
        /// The instance or binding id.
        object: String,
        /// Why.
        reason: String,
    },
}

/// A running broker: cheap to clone, all clones share one admin connection.
#[derive(Clone)]
pub struct PostgresBroker {
    inner: Arc<Inner>,
}

impl fmt::Debug for PostgresBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBroker")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: PostgresBrokerConfig,
    admin: admin::Admin,
}

impl PostgresBroker {
    /// Checks the plans, connects to PostgreSQL as the admin role (which must
    /// be a superuser), and creates the state tables if they are missing.
    pub async fn connect(
        config: PostgresBrokerConfig,
    ) -> Result<PostgresBroker, PostgresBrokerError> {
        catalog::check_plans(&config.plans)?;
        let mut pg: tokio_postgres::Config =
            config
                .admin_url
                .parse()
                .map_err(
                    |e: tokio_postgres::Error| PostgresBrokerError::InvalidAdminUrl {
                        reason: e.to_string(),
                    },
                )?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(std::time::Duration::from_secs(10));
        }
        pg.application_name("ingot-postgres-broker");
        let target = describe_target(&pg);
        let admin = admin::Admin::connect(pg, target).await?;
        Ok(PostgresBroker {
            inner: Arc::new(Inner { config, admin }),
        })
    }

    /// The OSB API (`/v2/...`) behind basic auth and the version check.
    pub fn router(&self) -> axum::Router {
        http::router(self.inner.clone())
    }

    /// Serves [`router`](Self::router) on `listener` until the task is
    /// dropped or the listener fails.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    /// The body of `GET /v2/catalog`.
    pub fn catalog(&self) -> serde_json::Value {
        catalog::catalog(&self.inner.config.plans)
    }
}

/// `host:port` list for messages; never the user or password.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                tokio_postgres::config::Host::Unix(dir) => {
                    format!("{}/.s.PGSQL.{port}", dir.display())
                }
            }
        })
        .collect();
    if hosts.is_empty() {
        "the default PostgreSQL address".into()
    } else {
        hosts.join(",")
    }
}
