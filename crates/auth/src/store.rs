//! Users, their groups (scopes) and OAuth clients in the `auth_` tables of
//! the shared SQLite database.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use sqlx::{Row, SqlitePool};

use crate::AuthError;

/// Groups of the first-boot `admin` user: cf-deployment's admin groups, plus
/// `uaa.admin`, plus every default user group (UAA gives those to every user).
pub const ADMIN_SCOPES: &[&str] = &[
    "cloud_controller.admin",
    "cloud_controller.read",
    "cloud_controller.write",
    "openid",
    "uaa.user",
    "uaa.admin",
    "clients.read",
    "doppler.firehose",
    "routing.router_groups.read",
    "routing.router_groups.write",
    "network.admin",
    "scim.read",
    "scim.write",
    "password.write",
    "scim.me",
    "cloud_controller_service_permissions.read",
    "approvals.me",
    "oauth.approvals",
    "profile",
    "roles",
    "user_attributes",
    "uaa.offline_token",
];

/// Groups every user created through `POST /Users` gets: UAA's default
/// `uaa.user.authorities` (uaa-release job spec), without the long-removed
/// notification preferences.
pub const DEFAULT_USER_GROUPS: &[&str] = &[
    "openid",
    "scim.me",
    "cloud_controller.read",
    "cloud_controller.write",
    "cloud_controller_service_permissions.read",
    "password.write",
    "uaa.user",
    "approvals.me",
    "oauth.approvals",
    "profile",
    "roles",
    "user_attributes",
    "uaa.offline_token",
];

/// The `cf` CLI's client id; its secret is empty.
pub const CF_CLIENT: &str = "cf";

/// Scopes the `cf` client may ask for, as cf-deployment registers it. A
/// token never carries more than these ∩ the user's groups.
pub const CF_CLIENT_SCOPES: &[&str] = &[
    "network.admin",
    "network.write",
    "cloud_controller.read",
    "cloud_controller.write",
    "openid",
    "password.write",
    "cloud_controller.admin",
    "scim.read",
    "scim.write",
    "doppler.firehose",
    "uaa.user",
    "routing.router_groups.read",
    "routing.router_groups.write",
    "cloud_controller.admin_read_only",
    "cloud_controller.global_auditor",
    "perm.admin",
    "clients.read",
];

/// The SSH proxy's client id (`links.app_ssh.meta.oauth_client`).
pub const SSH_PROXY_CLIENT: &str = "ssh-proxy";

/// Scopes of the `ssh-proxy` client, as cf-deployment registers it.
pub const SSH_PROXY_SCOPES: &[&str] = &[
    "openid",
    "cloud_controller.read",
    "cloud_controller.write",
    "cloud_controller.admin",
];

/// Grant types the token endpoint implements.
pub(crate) const GRANT_PASSWORD: &str = "password";
pub(crate) const GRANT_REFRESH: &str = "refresh_token";
pub(crate) const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub(crate) const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS auth_users (
        id TEXT PRIMARY KEY NOT NULL,
        username TEXT NOT NULL UNIQUE,
        email TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS auth_user_groups (
        user_id TEXT NOT NULL REFERENCES auth_users(id) ON DELETE CASCADE,
        group_name TEXT NOT NULL,
        PRIMARY KEY (user_id, group_name)
    )",
    "CREATE TABLE IF NOT EXISTS auth_clients (
        client_id TEXT PRIMARY KEY NOT NULL,
        secret_hash TEXT,
        scopes TEXT NOT NULL,
        grant_types TEXT NOT NULL
    )",
    // Authorization codes (`/oauth/authorize`), keyed by the SHA-256 of the
    // code so that the database never holds a usable code.
    "CREATE TABLE IF NOT EXISTS auth_codes (
        code_hash TEXT PRIMARY KEY NOT NULL,
        client_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        scopes TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL
    )",
];

/// Columns added to `auth_clients` after its first release; added to older
/// databases on open.
const CLIENT_COLUMNS: &[(&str, &str)] = &[
    ("authorities", "TEXT NOT NULL DEFAULT ''"),
    ("redirect_uri", "TEXT NOT NULL DEFAULT ''"),
];

/// A user as the token endpoint needs it.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub groups: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// An OAuth client. `secret_hash` None means the secret is empty (public
/// clients such as `cf`).
#[derive(Clone, Debug)]
pub(crate) struct Client {
    pub secret_hash: Option<String>,
    pub scopes: Vec<String>,
    pub grant_types: Vec<String>,
    /// What a `client_credentials` token of the client carries.
    pub authorities: Vec<String>,
    /// Where `/oauth/authorize` sends the code; empty when none is registered.
    pub redirect_uri: String,
}

/// A code as stored: who it stands for and until when (Unix milliseconds).
#[derive(Clone, Debug)]
pub(crate) struct StoredCode {
    pub client_id: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub expires_at_ms: i64,
}

#[derive(Clone)]
pub(crate) struct Store {
    pool: SqlitePool,
    /// Ids of the users that exist, mirrored in memory so that a token's
    /// user can be checked synchronously on every request
    /// (`AuthServer::verify_live`). Updated after each committed insert or
    /// delete; every write to `auth_users` goes through this store.
    live: Arc<RwLock<HashSet<String>>>,
}

impl Store {
    /// Creates the tables and (re)writes the built-in clients.
    pub(crate) async fn open(pool: SqlitePool) -> Result<Self, AuthError> {
        let mut tx = pool.begin().await.map_err(AuthError::db("begin schema"))?;
        for statement in SCHEMA {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(AuthError::db("create auth tables"))?;
        }
        for (column, declaration) in CLIENT_COLUMNS {
            let exists: Option<String> = sqlx::query_scalar(
                "SELECT name FROM pragma_table_info('auth_clients') WHERE name = ?",
            )
            .bind(column)
            .fetch_optional(&mut *tx)
            .await
            .map_err(AuthError::db("inspect auth_clients"))?;
            if exists.is_none() {
                // Both strings are literals above, never input.
                sqlx::query(&format!(
                    "ALTER TABLE auth_clients ADD COLUMN {column} {declaration}"
                ))
                .execute(&mut *tx)
                .await
                .map_err(AuthError::db(format!("add column auth_clients.{column}")))?;
            }
        }
        tx.commit().await.map_err(AuthError::db("commit schema"))?;
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM auth_users")
            .fetch_all(&pool)
            .await
            .map_err(AuthError::db("read user ids"))?;
        Ok(Store {
            pool,
            live: Arc::new(RwLock::new(ids.into_iter().collect())),
        })
    }

    /// Whether a user with this id exists (from memory, without I/O).
    pub(crate) fn is_live(&self, user_id: &str) -> bool {
        // A poisoned lock only means a writer panicked after a commit; the
        // set itself is still a set.
        match self.live.read() {
            Ok(live) => live.contains(user_id),
            Err(poisoned) => poisoned.into_inner().contains(user_id),
        }
    }

    fn set_live(&self, user_id: &str, live: bool) {
        let mut set = match self.live.write() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        if live {
            set.insert(user_id.to_owned());
        } else {
            set.remove(user_id);
        }
    }

    /// Creates or replaces a client.
    pub(crate) async fn upsert_client(
        &self,
        client_id: &str,
        client: &Client,
    ) -> Result<(), AuthError> {
        sqlx::query(
            "INSERT INTO auth_clients
                 (client_id, secret_hash, scopes, grant_types, authorities, redirect_uri)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (client_id) DO UPDATE
             SET secret_hash = excluded.secret_hash, scopes = excluded.scopes,
                 grant_types = excluded.grant_types, authorities = excluded.authorities,
                 redirect_uri = excluded.redirect_uri",
        )
        .bind(client_id)
        .bind(&client.secret_hash)
        .bind(client.scopes.join(" "))
        .bind(client.grant_types.join(" "))
        .bind(client.authorities.join(" "))
        .bind(&client.redirect_uri)
        .execute(&self.pool)
        .await
        .map_err(AuthError::db(format!("register client {client_id}")))?;
        Ok(())
    }

    pub(crate) async fn client(&self, client_id: &str) -> Result<Option<Client>, AuthError> {
        let row = sqlx::query(
            "SELECT secret_hash, scopes, grant_types, authorities, redirect_uri
             FROM auth_clients WHERE client_id = ?",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(AuthError::db(format!("read client {client_id}")))?;
        Ok(row.map(|row| Client {
            secret_hash: row.get("secret_hash"),
            scopes: split(row.get("scopes")),
            grant_types: split(row.get("grant_types")),
            authorities: split(row.get("authorities")),
            redirect_uri: row.get("redirect_uri"),
        }))
    }

    pub(crate) async fn user_by_name(&self, username: &str) -> Result<Option<User>, AuthError> {
        self.user_where("username", username).await
    }

    pub(crate) async fn user_by_id(&self, id: &str) -> Result<Option<User>, AuthError> {
        self.user_where("id", id).await
    }

    async fn user_where(&self, column: &str, value: &str) -> Result<Option<User>, AuthError> {
        // `column` is one of two literals above, never input.
        let sql = format!("{USER_COLUMNS} WHERE {column} = ?");
        let action = || format!("read user {column}={value}");
        let Some(row) = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(AuthError::db(action()))?
        else {
            return Ok(None);
        };
        let id: String = row.get("id");
        let groups = sqlx::query_scalar(
            "SELECT group_name FROM auth_user_groups WHERE user_id = ? ORDER BY group_name",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await
        .map_err(AuthError::db(action()))?;
        Ok(Some(user_from_row(&row, groups)))
    }

    /// Every user with its groups, oldest first (UAA's default order).
    pub(crate) async fn all_users(&self) -> Result<Vec<User>, AuthError> {
        let rows = sqlx::query(&format!("{USER_COLUMNS} ORDER BY created_at, username"))
            .fetch_all(&self.pool)
            .await
            .map_err(AuthError::db("list users"))?;
        let memberships: Vec<(String, String)> =
            sqlx::query_as("SELECT user_id, group_name FROM auth_user_groups ORDER BY group_name")
                .fetch_all(&self.pool)
                .await
                .map_err(AuthError::db("list user groups"))?;
        let mut groups: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (user_id, group) in memberships {
            groups.entry(user_id).or_default().push(group);
        }
        Ok(rows
            .iter()
            .map(|row| {
                let id: String = row.get("id");
                let mine = groups.remove(&id).unwrap_or_default();
                user_from_row(row, mine)
            })
            .collect())
    }

    /// Stores a new authorization code (by its hash).
    pub(crate) async fn insert_code(
        &self,
        code_hash: &str,
        code: &StoredCode,
    ) -> Result<(), AuthError> {
        let action = || format!("store a code for user {}", code.user_id);
        let mut tx = self.pool.begin().await.map_err(AuthError::db(action()))?;
        // Expired codes are useless: drop them whenever a new one is made.
        sqlx::query("DELETE FROM auth_codes WHERE expires_at_ms <= ?")
            .bind(chrono::Utc::now().timestamp_millis())
            .execute(&mut *tx)
            .await
            .map_err(AuthError::db(action()))?;
        sqlx::query(
            "INSERT INTO auth_codes (code_hash, client_id, user_id, scopes, expires_at_ms)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(code_hash)
        .bind(&code.client_id)
        .bind(&code.user_id)
        .bind(code.scopes.join(" "))
        .bind(code.expires_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(AuthError::db(action()))?;
        tx.commit().await.map_err(AuthError::db(action()))
    }

    /// Removes and returns a code in one statement, so that two concurrent
    /// redemptions cannot both get it.
    pub(crate) async fn take_code(&self, code_hash: &str) -> Result<Option<StoredCode>, AuthError> {
        let row: Option<(String, String, String, i64)> = sqlx::query_as(
            "DELETE FROM auth_codes WHERE code_hash = ?
             RETURNING client_id, user_id, scopes, expires_at_ms",
        )
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(AuthError::db("redeem a code"))?;
        Ok(
            row.map(|(client_id, user_id, scopes, expires_at_ms)| StoredCode {
                client_id,
                user_id,
                scopes: split(scopes),
                expires_at_ms,
            }),
        )
    }

    /// Inserts a user and its groups in one transaction.
    pub(crate) async fn insert_user(
        &self,
        username: &str,
        email: &str,
        password_hash: &str,
        groups: &[&str],
    ) -> Result<String, AuthError> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now();
        let action = || format!("create user {username}");
        let mut tx = self.pool.begin().await.map_err(AuthError::db(action()))?;
        let inserted = sqlx::query(
            "INSERT INTO auth_users (id, username, email, password_hash, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&id)
        .bind(username)
        .bind(email)
        .bind(password_hash)
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(AuthError::db(action()))?;
        if inserted.rows_affected() == 0 {
            return Err(AuthError::UserExists {
                username: username.to_owned(),
            });
        }
        add_groups(&mut tx, &id, groups)
            .await
            .map_err(AuthError::db(action()))?;
        tx.commit().await.map_err(AuthError::db(action()))?;
        self.set_live(&id, true);
        Ok(id)
    }

    /// Adds any of `groups` the user lacks.
    pub(crate) async fn grant_groups(
        &self,
        user_id: &str,
        groups: &[&str],
    ) -> Result<(), AuthError> {
        let action = || format!("add groups to user {user_id}");
        let mut tx = self.pool.begin().await.map_err(AuthError::db(action()))?;
        add_groups(&mut tx, user_id, groups)
            .await
            .map_err(AuthError::db(action()))?;
        tx.commit().await.map_err(AuthError::db(action()))
    }

    /// Replaces the password hash of the user whose `key` ("username" or
    /// "id") is `value`; false when there is no such user.
    pub(crate) async fn set_password_hash(
        &self,
        key: UserKey,
        value: &str,
        password_hash: &str,
    ) -> Result<bool, AuthError> {
        let column = key.column();
        // `column` is a literal, never input.
        let done = sqlx::query(&format!(
            "UPDATE auth_users SET password_hash = ?, updated_at = ? WHERE {column} = ?"
        ))
        .bind(password_hash)
        .bind(now())
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(AuthError::db(format!("set password of {column}={value}")))?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a user, its groups and its codes; false when there is no
    /// such user.
    pub(crate) async fn delete_user(&self, key: UserKey, value: &str) -> Result<bool, AuthError> {
        let column = key.column();
        let action = || format!("delete user {column}={value}");
        let mut tx = self.pool.begin().await.map_err(AuthError::db(action()))?;
        // Explicit, because foreign keys are off unless the pool enables them.
        for table in ["auth_user_groups", "auth_codes"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE user_id IN
                 (SELECT id FROM auth_users WHERE {column} = ?)"
            ))
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(AuthError::db(action()))?;
        }
        let deleted: Option<String> = sqlx::query_scalar(&format!(
            "DELETE FROM auth_users WHERE {column} = ? RETURNING id"
        ))
        .bind(value)
        .fetch_optional(&mut *tx)
        .await
        .map_err(AuthError::db(action()))?;
        tx.commit().await.map_err(AuthError::db(action()))?;
        if let Some(id) = &deleted {
            self.set_live(id, false);
        }
        Ok(deleted.is_some())
    }
}

async fn add_groups(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    user_id: &str,
    groups: &[&str],
) -> Result<(), sqlx::Error> {
    for group in groups {
        sqlx::query("INSERT OR IGNORE INTO auth_user_groups (user_id, group_name) VALUES (?, ?)")
            .bind(user_id)
            .bind(group)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Which column identifies a user in a statement.
#[derive(Clone, Copy, Debug)]
pub(crate) enum UserKey {
    Username,
    Id,
}

impl UserKey {
    fn column(self) -> &'static str {
        match self {
            UserKey::Username => "username",
            UserKey::Id => "id",
        }
    }
}

const USER_COLUMNS: &str =
    "SELECT id, username, email, password_hash, created_at, updated_at FROM auth_users";

fn user_from_row(row: &sqlx::sqlite::SqliteRow, groups: Vec<String>) -> User {
    User {
        id: row.get("id"),
        username: row.get("username"),
        email: row.get("email"),
        password_hash: row.get("password_hash"),
        groups,
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

/// Timestamps are RFC 3339 with milliseconds in UTC, so that they sort as
/// text and convert directly to SCIM's `meta` dates.
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn split(list: String) -> Vec<String> {
    list.split_whitespace().map(str::to_owned).collect()
}
