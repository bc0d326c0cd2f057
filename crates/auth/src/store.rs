//! Users, their groups (scopes) and OAuth clients in the `auth_` tables of
//! the shared SQLite database.

use sqlx::{Row, SqlitePool};

use crate::AuthError;

/// Groups of the first-boot `admin` user.
pub const ADMIN_SCOPES: &[&str] = &[
    "cloud_controller.admin",
    "cloud_controller.read",
    "cloud_controller.write",
    "openid",
    "uaa.user",
    "doppler.firehose",
    "routing.router_groups.read",
    "network.admin",
    "scim.read",
];

/// The `cf` CLI's client id; its secret is empty.
pub const CF_CLIENT: &str = "cf";

/// Grant types the token endpoint implements.
pub(crate) const GRANT_PASSWORD: &str = "password";
pub(crate) const GRANT_REFRESH: &str = "refresh_token";

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
];

/// A user as the token endpoint needs it.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub groups: Vec<String>,
}

/// An OAuth client. `secret_hash` None means the secret is empty (public
/// clients such as `cf`).
#[derive(Clone, Debug)]
pub(crate) struct Client {
    pub secret_hash: Option<String>,
    pub scopes: Vec<String>,
    pub grant_types: Vec<String>,
}

#[derive(Clone)]
pub(crate) struct Store {
    pool: SqlitePool,
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
        // Built-in clients are defined by the code: refresh them on every
        // boot so that a new version's scope list takes effect.
        sqlx::query(
            "INSERT INTO auth_clients (client_id, secret_hash, scopes, grant_types)
             VALUES (?, NULL, ?, ?)
             ON CONFLICT (client_id) DO UPDATE
             SET secret_hash = excluded.secret_hash, scopes = excluded.scopes,
                 grant_types = excluded.grant_types",
        )
        .bind(CF_CLIENT)
        .bind(ADMIN_SCOPES.join(" "))
        .bind([GRANT_PASSWORD, GRANT_REFRESH].join(" "))
        .execute(&mut *tx)
        .await
        .map_err(AuthError::db("register the cf client"))?;
        tx.commit().await.map_err(AuthError::db("commit schema"))?;
        Ok(Store { pool })
    }

    pub(crate) async fn client(&self, client_id: &str) -> Result<Option<Client>, AuthError> {
        let row = sqlx::query(
            "SELECT secret_hash, scopes, grant_types FROM auth_clients WHERE client_id = ?",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(AuthError::db(format!("read client {client_id}")))?;
        Ok(row.map(|row| Client {
            secret_hash: row.get("secret_hash"),
            scopes: split(row.get("scopes")),
            grant_types: split(row.get("grant_types")),
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
        let sql =
            format!("SELECT id, username, email, password_hash FROM auth_users WHERE {column} = ?");
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
        Ok(Some(User {
            id,
            username: row.get("username"),
            email: row.get("email"),
            password_hash: row.get("password_hash"),
            groups,
        }))
    }

    /// Inserts a user and its groups in one transaction.
    pub(crate) async fn insert_user(
        &self,
        username: &str,
        password_hash: &str,
        groups: &[&str],
    ) -> Result<String, AuthError> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = chrono::Utc::now().to_rfc3339();
        let action = || format!("create user {username}");
        let mut tx = self.pool.begin().await.map_err(AuthError::db(action()))?;
        let inserted = sqlx::query(
            "INSERT INTO auth_users (id, username, email, password_hash, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&id)
        .bind(username)
        .bind(username)
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

    /// Replaces a user's password hash; false when there is no such user.
    pub(crate) async fn set_password_hash(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<bool, AuthError> {
        let done = sqlx::query(
            "UPDATE auth_users SET password_hash = ?, updated_at = ? WHERE username = ?",
        )
        .bind(password_hash)
        .bind(chrono::Utc::now().to_rfc3339())
        .bind(username)
        .execute(&self.pool)
        .await
        .map_err(AuthError::db(format!("set password of {username}")))?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a user and its groups; false when there is no such user.
    pub(crate) async fn delete_user(&self, username: &str) -> Result<bool, AuthError> {
        let action = || format!("delete user {username}");
        let mut tx = self.pool.begin().await.map_err(AuthError::db(action()))?;
        // Explicit, because foreign keys are off unless the pool enables them.
        sqlx::query(
            "DELETE FROM auth_user_groups WHERE user_id IN
             (SELECT id FROM auth_users WHERE username = ?)",
        )
        .bind(username)
        .execute(&mut *tx)
        .await
        .map_err(AuthError::db(action()))?;
        let done = sqlx::query("DELETE FROM auth_users WHERE username = ?")
            .bind(username)
            .execute(&mut *tx)
            .await
            .map_err(AuthError::db(action()))?;
        tx.commit().await.map_err(AuthError::db(action()))?;
        Ok(done.rows_affected() > 0)
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

fn split(list: String) -> Vec<String> {
    list.split_whitespace().map(str::to_owned).collect()
}
