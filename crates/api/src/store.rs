//! Persistence: every resource kind is one `cc_` table of JSON documents keyed
//! by guid, queried through SQLite's `json_extract`.
//!
//! Documents keep the resource model flexible while the API grows; the
//! columns clients filter and sort on have expression indexes, and the
//! uniqueness rules CF enforces (an app name per space, a route per domain,
//! host and path, …) are unique expression indexes, so the database refuses a
//! duplicate even if two requests race.

use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::error::{ApiError, ApiResult};

/// A resource stored as a JSON document in its own table.
pub(crate) trait Doc: Serialize + DeserializeOwned + Send + Sync + Unpin {
    /// The table, prefixed `cc_`.
    const TABLE: &'static str;
    /// CF's name for the kind in "… not found".
    const KIND: &'static str;
    /// How lists of the kind are narrowed to what a user can see.
    const SCOPE: crate::authz::Scope;
    /// The document's guid.
    fn guid(&self) -> &str;
}

/// A connection or transaction the store's functions run on.
pub(crate) type Conn = SqliteConnection;

const TABLES: &[&str] = &[
    "cc_orgs",
    "cc_spaces",
    "cc_domains",
    "cc_stacks",
    "cc_buildpacks",
    "cc_users",
    "cc_apps",
    "cc_processes",
    "cc_packages",
    "cc_builds",
    "cc_droplets",
    "cc_routes",
    "cc_jobs",
    "cc_events",
    "cc_desired",
    "cc_feature_flags",
    "cc_tasks",
    "cc_roles",
    "cc_deployments",
    "cc_revisions",
    "cc_service_instances",
    "cc_service_bindings",
    "cc_service_brokers",
    "cc_service_offerings",
    "cc_service_plans",
    "cc_service_plan_visibilities",
    "cc_security_groups",
    "cc_organization_quotas",
    "cc_space_quotas",
    "cc_env_groups",
    "cc_app_usage_events",
];

const INDEXES: &[&str] = &[
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_app_usage_events_seq ON cc_app_usage_events(json_extract(doc,'$.seq'))",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_orgs_name ON cc_orgs(json_extract(doc,'$.name'))",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_spaces_name ON cc_spaces(json_extract(doc,'$.org_guid'), json_extract(doc,'$.name'))",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_domains_name ON cc_domains(json_extract(doc,'$.name'))",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_stacks_name ON cc_stacks(json_extract(doc,'$.name'))",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_buildpacks_name ON cc_buildpacks(json_extract(doc,'$.name'))",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_apps_name ON cc_apps(json_extract(doc,'$.space_guid'), json_extract(doc,'$.name'))",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_processes_type ON cc_processes(json_extract(doc,'$.app_guid'), json_extract(doc,'$.type'))",
    "CREATE INDEX IF NOT EXISTS cc_packages_app ON cc_packages(json_extract(doc,'$.app_guid'))",
    "CREATE INDEX IF NOT EXISTS cc_builds_app ON cc_builds(json_extract(doc,'$.app_guid'))",
    "CREATE INDEX IF NOT EXISTS cc_droplets_app ON cc_droplets(json_extract(doc,'$.app_guid'))",
    // A route is unique by domain, host, path and (TCP) port; the index
    // without the port, of earlier versions, is replaced.
    "DROP INDEX IF EXISTS cc_routes_url",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_routes_url_port ON cc_routes(json_extract(doc,'$.domain_guid'), json_extract(doc,'$.host'), json_extract(doc,'$.path'), coalesce(json_extract(doc,'$.port'), 0))",
    "CREATE INDEX IF NOT EXISTS cc_tasks_app ON cc_tasks(json_extract(doc,'$.app_guid'))",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_roles_unique ON cc_roles(json_extract(doc,'$.type'), json_extract(doc,'$.user_guid'), json_extract(doc,'$.org_guid'), ifnull(json_extract(doc,'$.space_guid'),''))",
    "CREATE INDEX IF NOT EXISTS cc_roles_user ON cc_roles(json_extract(doc,'$.user_guid'))",
    "CREATE INDEX IF NOT EXISTS cc_deployments_app ON cc_deployments(json_extract(doc,'$.app_guid'))",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_revisions_version ON cc_revisions(json_extract(doc,'$.app_guid'), json_extract(doc,'$.version'))",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_service_instances_name ON cc_service_instances(json_extract(doc,'$.space_guid'), json_extract(doc,'$.name'))",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_service_bindings_pair ON cc_service_bindings(json_extract(doc,'$.app_guid'), json_extract(doc,'$.service_instance_guid'))",
    "CREATE INDEX IF NOT EXISTS cc_events_target ON cc_events(json_extract(doc,'$.target.guid'))",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_security_groups_name ON cc_security_groups(json_extract(doc,'$.name'))",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_space_quotas_name ON cc_space_quotas(json_extract(doc,'$.org_guid'), json_extract(doc,'$.name'))",
    "CREATE UNIQUE INDEX IF NOT EXISTS cc_service_brokers_name ON cc_service_brokers(json_extract(doc,'$.name'))",
    "CREATE INDEX IF NOT EXISTS cc_service_plans_offering ON cc_service_plans(json_extract(doc,'$.offering_guid'))",
    "CREATE INDEX IF NOT EXISTS cc_service_instances_plan ON cc_service_instances(json_extract(doc,'$.service_plan_guid'))",
    "CREATE INDEX IF NOT EXISTS cc_service_bindings_instance ON cc_service_bindings(json_extract(doc,'$.service_instance_guid'))",
];

/// Creates the tables and indexes (idempotent).
pub(crate) async fn migrate(pool: &SqlitePool) -> ApiResult<()> {
    for table in TABLES {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (guid TEXT PRIMARY KEY NOT NULL, doc TEXT NOT NULL)"
        ))
        .execute(pool)
        .await?;
    }
    for index in INDEXES {
        sqlx::query(index).execute(pool).await?;
    }
    Ok(())
}

/// Begins a write transaction that takes the write lock at once, so two
/// writers never both read and then fail to upgrade (SQLITE_BUSY).
pub(crate) async fn begin(pool: &SqlitePool) -> ApiResult<Transaction<'static, Sqlite>> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

fn decode<T: Doc>(text: &str) -> ApiResult<T> {
    serde_json::from_str(text)
        .map_err(|e| ApiError::Internal(format!("corrupt {} document: {e}", T::TABLE)))
}

fn encode<T: Doc>(doc: &T) -> ApiResult<String> {
    serde_json::to_string(doc)
        .map_err(|e| ApiError::Internal(format!("cannot encode {} {}: {e}", T::TABLE, doc.guid())))
}

/// The document with this guid, if any.
pub(crate) async fn get<T: Doc>(c: &mut SqliteConnection, guid: &str) -> ApiResult<Option<T>> {
    let row = sqlx::query(&format!("SELECT doc FROM {} WHERE guid = ?", T::TABLE))
        .bind(guid)
        .fetch_optional(&mut *c)
        .await?;
    match row {
        Some(row) => Ok(Some(decode(&row.try_get::<String, _>(0)?)?)),
        None => Ok(None),
    }
}

/// The document with this guid, or CF's 404 for its kind.
pub(crate) async fn fetch<T: Doc>(c: &mut SqliteConnection, guid: &str) -> ApiResult<T> {
    get(c, guid)
        .await?
        .ok_or_else(|| ApiError::not_found(T::KIND))
}

/// Stores a new document; a unique index refusing it (a race the caller's
/// own check lost) is CF's uniqueness error.
pub(crate) async fn insert<T: Doc>(c: &mut SqliteConnection, doc: &T) -> ApiResult<()> {
    let result = sqlx::query(&format!(
        "INSERT INTO {} (guid, doc) VALUES (?, ?)",
        T::TABLE
    ))
    .bind(doc.guid())
    .bind(encode(doc)?)
    .execute(&mut *c)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(ApiError::Uniqueness(
            format!("{} with these values already exists.", T::KIND),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Replaces a document (inserting it if it is missing).
pub(crate) async fn put<T: Doc>(c: &mut SqliteConnection, doc: &T) -> ApiResult<()> {
    sqlx::query(&format!(
        "INSERT INTO {} (guid, doc) VALUES (?, ?) ON CONFLICT(guid) DO UPDATE SET doc = excluded.doc",
        T::TABLE
    ))
    .bind(doc.guid())
    .bind(encode(doc)?)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Deletes a document; deleting a missing one is not an error.
pub(crate) async fn delete<T: Doc>(c: &mut SqliteConnection, guid: &str) -> ApiResult<()> {
    sqlx::query(&format!("DELETE FROM {} WHERE guid = ?", T::TABLE))
        .bind(guid)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// A query over one table: equality filters (each field in a set of values)
/// and an order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    filters: Vec<(String, Vec<String>)>,
    /// Keeps documents whose integer field is greater than the value.
    above: Option<(String, i64)>,
    order: Option<(String, bool)>,
}

impl Query {
    pub(crate) fn new() -> Self {
        Query::default()
    }

    /// Keeps documents whose `field` (a JSON path below `$.`, from code, never
    /// from the user) is one of `values`.
    pub(crate) fn any_of(mut self, field: &str, values: Vec<String>) -> Self {
        self.filters.push((field.to_string(), values));
        self
    }

    /// Keeps documents whose `field` equals `value`.
    pub(crate) fn eq(self, field: &str, value: &str) -> Self {
        self.any_of(field, vec![value.to_string()])
    }

    /// Keeps documents whose integer `field` is greater than `value`.
    pub(crate) fn above(mut self, field: &str, value: i64) -> Self {
        self.above = Some((field.to_string(), value));
        self
    }

    /// Orders by `field` (validated by the caller), descending if asked.
    pub(crate) fn order(mut self, field: &str, descending: bool) -> Self {
        self.order = Some((field.to_string(), descending));
        self
    }

    fn where_clause(&self) -> String {
        if self.filters.is_empty() && self.above.is_none() {
            return String::new();
        }
        let mut parts: Vec<String> = self
            .filters
            .iter()
            .map(|(field, values)| {
                if values.is_empty() {
                    "0".to_string()
                } else {
                    let marks = vec!["?"; values.len()].join(",");
                    format!("json_extract(doc,'$.{field}') IN ({marks})")
                }
            })
            .collect();
        if let Some((field, _)) = &self.above {
            parts.push(format!("json_extract(doc,'$.{field}') > ?"));
        }
        format!(" WHERE {}", parts.join(" AND "))
    }

    fn order_clause(&self) -> String {
        match &self.order {
            Some((field, desc)) => {
                let dir = if *desc { "DESC" } else { "ASC" };
                format!(" ORDER BY json_extract(doc,'$.{field}') {dir}, rowid {dir}")
            }
            None => " ORDER BY json_extract(doc,'$.created_at'), rowid".to_string(),
        }
    }

    fn binds(&self) -> impl Iterator<Item = &String> {
        self.filters.iter().flat_map(|(_, v)| v.iter())
    }
}

/// Runs `SELECT <what> FROM <T's table> <where><tail>` with the query's values
/// bound, then `extra` (e.g. the LIMIT and OFFSET).
async fn select<T: Doc>(
    c: &mut SqliteConnection,
    q: &Query,
    what: &str,
    tail: &str,
    extra: &[i64],
) -> ApiResult<Vec<sqlx::sqlite::SqliteRow>> {
    let sql = format!("SELECT {what} FROM {}{}{tail}", T::TABLE, q.where_clause());
    let mut query = sqlx::query(&sql);
    for value in q.binds() {
        query = query.bind(value);
    }
    if let Some((_, value)) = &q.above {
        query = query.bind(value);
    }
    for value in extra {
        query = query.bind(value);
    }
    Ok(query.fetch_all(&mut *c).await?)
}

fn decode_rows<T: Doc>(rows: &[sqlx::sqlite::SqliteRow]) -> ApiResult<Vec<T>> {
    rows.iter()
        .map(|row| decode(&row.try_get::<String, _>(0)?))
        .collect()
}

/// Every document matching the query, in its order.
pub(crate) async fn find<T: Doc>(c: &mut SqliteConnection, q: &Query) -> ApiResult<Vec<T>> {
    decode_rows(&select::<T>(c, q, "doc", &q.order_clause(), &[]).await?)
}

/// The first document matching the query.
pub(crate) async fn find_one<T: Doc>(c: &mut SqliteConnection, q: &Query) -> ApiResult<Option<T>> {
    Ok(find(c, q).await?.into_iter().next())
}

/// One page of the documents matching the query, and how many match in all.
pub(crate) async fn page<T: Doc>(
    c: &mut SqliteConnection,
    q: &Query,
    page: u64,
    per_page: u64,
) -> ApiResult<(Vec<T>, u64)> {
    let counted = select::<T>(c, q, "COUNT(*)", "", &[]).await?;
    let total: i64 = match counted.first() {
        Some(row) => row.try_get(0)?,
        None => 0,
    };
    let offset = page.saturating_sub(1).saturating_mul(per_page);
    let limits = [
        i64::try_from(per_page).unwrap_or(i64::MAX),
        i64::try_from(offset).unwrap_or(i64::MAX),
    ];
    let tail = format!("{} LIMIT ? OFFSET ?", q.order_clause());
    let docs = decode_rows(&select::<T>(c, q, "doc", &tail, &limits).await?)?;
    Ok((docs, u64::try_from(total).unwrap_or(0)))
}
