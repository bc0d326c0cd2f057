//! What the broker does to the PostgreSQL server, over one admin
//! connection: the state tables, and provision, update, bind, unbind and
//! deprovision as SQL.
//!
//! Every operation holds the connection's mutex (one operation at a time in
//! this process) and a session advisory lock (one at a time across brokers
//! sharing the server), so two calls for the same instance never interleave.
//! `CREATE DATABASE` cannot run in a transaction, so provision and bind clean
//! up what they created when a later step fails, and every step tolerates
//! objects left by an earlier attempt that died half-way.

use std::future::Future;

use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::{Client, NoTls};

use super::names::{binding_role, database_name, owner_role, quote_ident, quote_literal};
use super::PostgresBrokerError;

/// Key of the advisory lock that serialises brokers sharing a server
/// (the bytes of `ingot_pg`).
const LOCK_KEY: i64 = 0x696e_676f_745f_7067;

/// How long `pg_terminate_backend` waits for a session to end, in ms.
const TERMINATE_WAIT_MS: i64 = 5000;

/// The broker's own tables, in a schema of the admin database that no other
/// role can read (binding passwords are kept there so that a repeated bind
/// answers the same credentials).
const SCHEMA_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS ingot_postgres_broker;
REVOKE ALL ON SCHEMA ingot_postgres_broker FROM PUBLIC;
CREATE TABLE IF NOT EXISTS ingot_postgres_broker.instances (
    instance_id   text PRIMARY KEY,
    plan_id       text NOT NULL,
    database_name text NOT NULL UNIQUE,
    owner_role    text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ingot_postgres_broker.bindings (
    binding_id  text PRIMARY KEY,
    instance_id text NOT NULL REFERENCES ingot_postgres_broker.instances (instance_id),
    role_name   text NOT NULL UNIQUE,
    password    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
";

/// Outcome of a provision.
#[derive(Debug, PartialEq, Eq)]
pub enum Provisioned {
    /// The database was created.
    Created,
    /// It already existed with the same plan.
    Exists,
    /// It already exists with another plan.
    Conflict,
}

/// Outcome of an update.
#[derive(Debug, PartialEq, Eq)]
pub enum Updated {
    /// The connection limit was changed.
    Changed,
    /// The instance already had that plan.
    Unchanged,
    /// No such instance.
    NotFound,
}

/// What a binding may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// Database name.
    pub database: String,
    /// Role name.
    pub username: String,
    /// Its password.
    pub password: String,
}

/// Outcome of a bind.
#[derive(Debug, PartialEq, Eq)]
pub enum Bound {
    /// A new login.
    Created(Login),
    /// The binding existed; its login, unchanged.
    Exists(Login),
    /// The binding id belongs to another instance.
    Conflict,
    /// No such instance.
    NoInstance,
}

/// Outcome of unbind and deprovision.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    /// It existed and is gone now.
    Removed,
    /// It did not exist.
    Gone,
}

/// The admin connection (re-opened when it breaks).
pub struct Admin {
    config: tokio_postgres::Config,
    /// `host:port` for messages; never the password.
    target: String,
    client: Mutex<Option<Client>>,
}

impl Admin {
    /// Connects, checks that the role is a superuser, creates the state
    /// tables if missing.
    pub async fn connect(
        config: tokio_postgres::Config,
        target: String,
    ) -> Result<Admin, PostgresBrokerError> {
        let admin = Admin {
            config,
            target,
            client: Mutex::new(None),
        };
        let c = admin.session().await?;
        let row = c
            .query_one(
                "SELECT rolsuper, current_user::text FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(sql("check the admin role", &admin.target))?;
        let (superuser, user): (bool, String) = (row.get(0), row.get(1));
        if !superuser {
            return Err(PostgresBrokerError::NotSuperuser {
                target: admin.target.clone(),
                user,
            });
        }
        c.batch_execute(SCHEMA_SQL).await.map_err(sql(
            "create the broker's state tables",
            "ingot_postgres_broker",
        ))?;
        drop(c);
        Ok(admin)
    }

    /// The open connection, after re-opening it if it broke.
    async fn session(&self) -> Result<MappedMutexGuard<'_, Client>, PostgresBrokerError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.open(&self.config).await?);
        }
        MutexGuard::try_map(guard, Option::as_mut).map_err(|_| PostgresBrokerError::Connect {
            target: self.target.clone(),
            reason: "the admin connection vanished".into(),
        })
    }

    /// A new connection with `config`; its driver runs on its own task.
    async fn open(&self, config: &tokio_postgres::Config) -> Result<Client, PostgresBrokerError> {
        let (client, connection) =
            config
                .connect(NoTls)
                .await
                .map_err(|e| PostgresBrokerError::Connect {
                    target: self.target.clone(),
                    reason: e.to_string(),
                })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "postgres broker: admin connection ended");
            }
        });
        Ok(client)
    }

    /// Runs `op` holding the advisory lock.
    async fn locked<T>(
        c: &Client,
        op: impl Future<Output = Result<T, PostgresBrokerError>>,
    ) -> Result<T, PostgresBrokerError> {
        c.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(sql("take the broker lock", "pg_advisory_lock"))?;
        let outcome = op.await;
        if let Err(e) = c
            .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
            .await
        {
            // The lock dies with the session; a broken session is re-opened
            // by the next call.
            tracing::warn!(error = %e, "postgres broker: releasing the lock failed");
        }
        outcome
    }

    /// Creates the instance's owner role and database.
    pub async fn provision(
        &self,
        instance_id: &str,
        plan_id: &str,
        connection_limit: u32,
    ) -> Result<Provisioned, PostgresBrokerError> {
        let c = self.session().await?;
        Self::locked(&c, async {
            let existing = c
                .query_opt(
                    "SELECT plan_id FROM ingot_postgres_broker.instances WHERE instance_id = $1",
                    &[&instance_id],
                )
                .await
                .map_err(sql("read the broker state", instance_id))?;
            if let Some(row) = existing {
                let current: String = row.get(0);
                return Ok(if current == plan_id {
                    Provisioned::Exists
                } else {
                    Provisioned::Conflict
                });
            }
            let db = database_name(instance_id);
            let owner = owner_role(instance_id);
            match create_database(&c, instance_id, plan_id, &db, &owner, connection_limit).await {
                Ok(()) => Ok(Provisioned::Created),
                Err(e) => {
                    // Leave nothing the platform does not know about.
                    drop_database(&c, &db).await.ok();
                    drop_role(&c, &owner).await.ok();
                    Err(e)
                }
            }
        })
        .await
    }

    /// Changes the connection limit of the database and of every binding's
    /// role; the data stays where it is.
    pub async fn update(
        &self,
        instance_id: &str,
        plan_id: &str,
        connection_limit: u32,
    ) -> Result<Updated, PostgresBrokerError> {
        let c = self.session().await?;
        Self::locked(&c, async {
            let Some(row) = c
                .query_opt(
                    "SELECT plan_id, database_name, owner_role FROM ingot_postgres_broker.instances
                     WHERE instance_id = $1",
                    &[&instance_id],
                )
                .await
                .map_err(sql("read the broker state", instance_id))?
            else {
                return Ok(Updated::NotFound);
            };
            let (current, db, owner): (String, String, String) = (row.get(0), row.get(1), row.get(2));
            if current == plan_id {
                return Ok(Updated::Unchanged);
            }
            let roles = members_of(&c, &owner).await?;
            c.batch_execute("BEGIN").await.map_err(sql("begin", &db))?;
            let outcome = async {
                c.batch_execute(&format!(
                    "ALTER DATABASE {} CONNECTION LIMIT {connection_limit}",
                    quote_ident(&db)
                ))
                .await
                .map_err(sql("change the connection limit of the database", &db))?;
                for role in &roles {
                    c.batch_execute(&format!(
                        "ALTER ROLE {} CONNECTION LIMIT {connection_limit}",
                        quote_ident(role)
                    ))
                    .await
                    .map_err(sql("change the connection limit of the role", role))?;
                }
                c.execute(
                    "UPDATE ingot_postgres_broker.instances SET plan_id = $2 WHERE instance_id = $1",
                    &[&instance_id, &plan_id],
                )
                .await
                .map_err(sql("record the new plan", instance_id))?;
                c.batch_execute("COMMIT").await.map_err(sql("commit", &db))
            }
            .await;
            if outcome.is_err() {
                c.batch_execute("ROLLBACK").await.ok();
            }
            outcome.map(|()| Updated::Changed)
        })
        .await
    }

    /// Creates a login role for a binding, member of the instance's owner.
    pub async fn bind(
        &self,
        instance_id: &str,
        binding_id: &str,
    ) -> Result<Bound, PostgresBrokerError> {
        let c = self.session().await?;
        Self::locked(&c, async {
            let Some(instance) = c
                .query_opt(
                    "SELECT database_name, owner_role FROM ingot_postgres_broker.instances
                     WHERE instance_id = $1",
                    &[&instance_id],
                )
                .await
                .map_err(sql("read the broker state", instance_id))?
            else {
                return Ok(Bound::NoInstance);
            };
            let (db, owner): (String, String) = (instance.get(0), instance.get(1));
            let existing = c
                .query_opt(
                    "SELECT instance_id, role_name, password FROM ingot_postgres_broker.bindings
                     WHERE binding_id = $1",
                    &[&binding_id],
                )
                .await
                .map_err(sql("read the broker state", binding_id))?;
            if let Some(row) = existing {
                let of: String = row.get(0);
                if of != instance_id {
                    return Ok(Bound::Conflict);
                }
                return Ok(Bound::Exists(Login {
                    database: db,
                    username: row.get(1),
                    password: row.get(2),
                }));
            }
            let login = Login {
                username: binding_role(instance_id, binding_id),
                password: hex::encode(rand::random::<[u8; 24]>()),
                database: db,
            };
            match create_login(&c, instance_id, binding_id, &owner, &login).await {
                Ok(()) => Ok(Bound::Created(login)),
                Err(e) => {
                    drop_role(&c, &login.username).await.ok();
                    Err(e)
                }
            }
        })
        .await
    }

    /// Revokes a binding at once: no new logins, open sessions ended, the
    /// role dropped (what it created now belongs to the instance's owner).
    pub async fn unbind(
        &self,
        instance_id: &str,
        binding_id: &str,
    ) -> Result<Removed, PostgresBrokerError> {
        let c = self.session().await?;
        Self::locked(&c, async {
            let row = c
                .query_opt(
                    "SELECT b.role_name, i.database_name, i.owner_role
                     FROM ingot_postgres_broker.bindings b
                     JOIN ingot_postgres_broker.instances i USING (instance_id)
                     WHERE b.binding_id = $1 AND b.instance_id = $2",
                    &[&binding_id, &instance_id],
                )
                .await
                .map_err(sql("read the broker state", binding_id))?;
            let Some(row) = row else {
                return Ok(Removed::Gone);
            };
            let (role, db, owner): (String, String, String) = (row.get(0), row.get(1), row.get(2));
            self.remove_login(&c, &role, Some((&db, &owner))).await?;
            c.execute(
                "DELETE FROM ingot_postgres_broker.bindings WHERE binding_id = $1",
                &[&binding_id],
            )
            .await
            .map_err(sql("forget the binding", binding_id))?;
            Ok(Removed::Removed)
        })
        .await
    }

    /// Ends every session of the instance, drops its database, its bindings'
    /// roles and its owner role. An unknown instance answers
    /// [`Removed::Gone`] after dropping whatever a failed provision of that
    /// id may have left.
    pub async fn deprovision(&self, instance_id: &str) -> Result<Removed, PostgresBrokerError> {
        let c = self.session().await?;
        Self::locked(&c, async {
            let known = c
                .query_opt(
                    "SELECT 1 FROM ingot_postgres_broker.instances WHERE instance_id = $1",
                    &[&instance_id],
                )
                .await
                .map_err(sql("read the broker state", instance_id))?
                .is_some();
            let db = database_name(instance_id);
            let owner = owner_role(instance_id);
            // Bindings are the owner's members; this also finds roles of a
            // bind that died before it was recorded.
            let mut roles = members_of(&c, &owner).await?;
            for row in c
                .query(
                    "SELECT role_name FROM ingot_postgres_broker.bindings WHERE instance_id = $1",
                    &[&instance_id],
                )
                .await
                .map_err(sql("read the broker state", instance_id))?
            {
                let role: String = row.get(0);
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
            for role in &roles {
                shut_out(&c, role).await?;
            }
            drop_database(&c, &db).await?;
            for role in &roles {
                self.remove_login(&c, role, None).await?;
            }
            drop_role(&c, &owner).await?;
            c.execute(
                "DELETE FROM ingot_postgres_broker.bindings WHERE instance_id = $1",
                &[&instance_id],
            )
            .await
            .map_err(sql("forget the bindings", instance_id))?;
            c.execute(
                "DELETE FROM ingot_postgres_broker.instances WHERE instance_id = $1",
                &[&instance_id],
            )
            .await
            .map_err(sql("forget the instance", instance_id))?;
            Ok(if known {
                Removed::Removed
            } else {
                Removed::Gone
            })
        })
        .await
    }

    /// Whether the broker knows the instance, or the binding of it.
    pub async fn exists(
        &self,
        instance_id: &str,
        binding_id: Option<&str>,
    ) -> Result<bool, PostgresBrokerError> {
        let c = self.session().await?;
        let row = match binding_id {
            None => {
                c.query_opt(
                    "SELECT 1 FROM ingot_postgres_broker.instances WHERE instance_id = $1",
                    &[&instance_id],
                )
                .await
            }
            Some(binding_id) => {
                c.query_opt(
                    "SELECT 1 FROM ingot_postgres_broker.bindings
                     WHERE instance_id = $1 AND binding_id = $2",
                    &[&instance_id, &binding_id],
                )
                .await
            }
        }
        .map_err(sql("read the broker state", instance_id))?;
        Ok(row.is_some())
    }

    /// Shuts a login out, hands what it owns in the instance's database to
    /// the owner, and drops it. `instance` is `(database, owner)` when the
    /// database still exists.
    async fn remove_login(
        &self,
        c: &Client,
        role: &str,
        instance: Option<(&str, &str)>,
    ) -> Result<(), PostgresBrokerError> {
        if !role_exists(c, role).await? {
            return Ok(());
        }
        shut_out(c, role).await?;
        if let Some((db, owner)) = instance {
            // REASSIGN/DROP OWNED act on the current database only, so this
            // part runs connected to the instance's database.
            let mut config = self.config.clone();
            config.dbname(db);
            let in_db = self.open(&config).await?;
            in_db
                .batch_execute(&format!(
                    "REASSIGN OWNED BY {role} TO {owner}; DROP OWNED BY {role};",
                    role = quote_ident(role),
                    owner = quote_ident(owner)
                ))
                .await
                .map_err(sql("hand the binding's objects to the owner", role))?;
        }
        // Privileges on shared objects (the database's CONNECT) and anything
        // in the admin database.
        c.batch_execute(&format!("DROP OWNED BY {}", quote_ident(role)))
            .await
            .map_err(sql("drop what the binding owns", role))?;
        drop_role(c, role).await
    }
}

/// `CREATE ROLE owner NOLOGIN`, `CREATE DATABASE … CONNECTION LIMIT`, and
/// the state row; objects left by an earlier failed attempt are reused.
async fn create_database(
    c: &Client,
    instance_id: &str,
    plan_id: &str,
    db: &str,
    owner: &str,
    connection_limit: u32,
) -> Result<(), PostgresBrokerError> {
    if !role_exists(c, owner).await? {
        c.batch_execute(&format!("CREATE ROLE {} NOLOGIN", quote_ident(owner)))
            .await
            .map_err(sql("create the owner role", owner))?;
    }
    let exists = c
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await
        .map_err(sql("look for the database", db))?
        .is_some();
    let statement = if exists {
        format!(
            "ALTER DATABASE {db} OWNER TO {owner}; ALTER DATABASE {db} CONNECTION LIMIT {connection_limit}",
            db = quote_ident(db),
            owner = quote_ident(owner),
        )
    } else {
        format!(
            "CREATE DATABASE {} OWNER {} CONNECTION LIMIT {connection_limit}",
            quote_ident(db),
            quote_ident(owner),
        )
    };
    c.batch_execute(&statement)
        .await
        .map_err(sql("create the database", db))?;
    // New databases let every role connect; only this instance's bindings
    // (members of the owner) may.
    c.batch_execute(&format!(
        "REVOKE ALL ON DATABASE {db} FROM PUBLIC; GRANT ALL ON DATABASE {db} TO {owner}",
        db = quote_ident(db),
        owner = quote_ident(owner),
    ))
    .await
    .map_err(sql("restrict who may connect to the database", db))?;
    c.execute(
        "INSERT INTO ingot_postgres_broker.instances (instance_id, plan_id, database_name, owner_role)
         VALUES ($1, $2, $3, $4)",
        &[&instance_id, &plan_id, &db, &owner],
    )
    .await
    .map_err(sql("record the instance", instance_id))?;
    Ok(())
}

/// The binding's LOGIN role: the database's connection limit, a member of
/// the owner (so it may use and create everything in the database, the
/// `public` schema included, since PostgreSQL 15 gives that schema to the
/// database owner), and sessions that act as the owner, so that tables one
/// binding creates belong to the instance and outlive the binding.
async fn create_login(
    c: &Client,
    instance_id: &str,
    binding_id: &str,
    owner: &str,
    login: &Login,
) -> Result<(), PostgresBrokerError> {
    let limit: i32 = c
        .query_one(
            "SELECT datconnlimit FROM pg_database WHERE datname = $1",
            &[&login.database],
        )
        .await
        .map_err(sql("read the database's connection limit", &login.database))?
        .get(0);
    // Only the SCRAM verifier reaches the server (and its statement log).
    let verifier = postgres_protocol::password::scram_sha_256(login.password.as_bytes());
    let role = quote_ident(&login.username);
    let verb = if role_exists(c, &login.username).await? {
        "ALTER"
    } else {
        "CREATE"
    };
    c.batch_execute(&format!(
        "{verb} ROLE {role} LOGIN PASSWORD {verifier} CONNECTION LIMIT {limit};
         GRANT {owner} TO {role};
         ALTER ROLE {role} SET role = {owner};
         GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role};",
        verifier = quote_literal(&verifier),
        owner = quote_ident(owner),
        db = quote_ident(&login.database),
    ))
    .await
    .map_err(sql("create the binding's role", &login.username))?;
    c.execute(
        "INSERT INTO ingot_postgres_broker.bindings (binding_id, instance_id, role_name, password)
         VALUES ($1, $2, $3, $4)",
        &[&binding_id, &instance_id, &login.username, &login.password],
    )
    .await
    .map_err(sql("record the binding", binding_id))?;
    Ok(())
}

/// No new sessions for `role`, and its open ones ended.
async fn shut_out(c: &Client, role: &str) -> Result<(), PostgresBrokerError> {
    if !role_exists(c, role).await? {
        return Ok(());
    }
    c.batch_execute(&format!("ALTER ROLE {} NOLOGIN", quote_ident(role)))
        .await
        .map_err(sql("refuse new logins of the role", role))?;
    c.execute(
        "SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity
         WHERE usename = $1 AND pid <> pg_backend_pid()",
        &[&role, &TERMINATE_WAIT_MS],
    )
    .await
    .map_err(sql("end the role's sessions", role))?;
    Ok(())
}

/// `DROP DATABASE IF EXISTS … WITH (FORCE)`: its sessions are ended first.
async fn drop_database(c: &Client, db: &str) -> Result<(), PostgresBrokerError> {
    c.batch_execute(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(db)
    ))
    .await
    .map_err(sql("drop the database", db))
}

/// `DROP ROLE IF EXISTS`, after revoking what it holds in the admin database.
async fn drop_role(c: &Client, role: &str) -> Result<(), PostgresBrokerError> {
    if role_exists(c, role).await? {
        c.batch_execute(&format!(
            "DROP OWNED BY {role}; DROP ROLE {role}",
            role = quote_ident(role)
        ))
        .await
        .map_err(sql("drop the role", role))?;
    }
    Ok(())
}

async fn role_exists(c: &Client, role: &str) -> Result<bool, PostgresBrokerError> {
    Ok(
        c.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .map_err(sql("look for the role", role))?
            .is_some(),
    )
}

/// Roles that are members of `owner` (the instance's bindings).
async fn members_of(c: &Client, owner: &str) -> Result<Vec<String>, PostgresBrokerError> {
    let rows = c
        .query(
            "SELECT m.rolname::text FROM pg_auth_members a
             JOIN pg_roles m ON m.oid = a.member
             JOIN pg_roles o ON o.oid = a.roleid
             WHERE o.rolname = $1 ORDER BY 1",
            &[&owner],
        )
        .await
        .map_err(sql("list the bindings' roles", owner))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Maps a driver error to [`PostgresBrokerError::Sql`].
fn sql<'a>(
    action: &'static str,
    object: &'a str,
) -> impl FnOnce(tokio_postgres::Error) -> PostgresBrokerError + 'a {
    move |e| PostgresBrokerError::Sql {
        action,
        object: object.to_string(),
        reason: db_message(&e),
    }
}

/// The server's message when there is one (tokio-postgres' own `Display`
/// says only "db error").
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}
