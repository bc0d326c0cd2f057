//! SCIM users as UAA serves them to the `cf` CLI and Cloud Controller:
//! `POST /Users`, `GET /Users?filter=…`, `GET|DELETE /Users/:id`,
//! `PUT /Users/:id/password` and `GET /ids/Users?filter=…`, with UAA's JSON
//! (SCIM 1.0 schema, `resources`/`startIndex`/`itemsPerPage`/`totalResults`
//! envelope) and UAA's errors (`{"error","message","error_description"}`).
//!
//! Filters are SCIM's: `attr op "value"` with `eq`, `co`, `sw`, `gt`, `ge`,
//! `lt`, `le`, `attr pr`, `and`, `or` (and binds tighter) and parentheses;
//! attribute names and operators are case-insensitive, as are string
//! comparisons (UAA compares lower-cased values). There are few users, so a
//! filter is evaluated in memory over all of them rather than compiled to SQL.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{bearer_claims, UaaError};
use crate::store::{User, UserKey, DEFAULT_USER_GROUPS};
use crate::token::Claims;
use crate::{password, validate_user, AuthError, Inner, ORIGIN_UAA};

/// The only SCIM schema UAA speaks.
const SCHEMA: &str = "urn:scim:schemas:core:1.0";

/// UAA's default and maximum page sizes for user queries.
const DEFAULT_COUNT: usize = 100;
const MAX_COUNT: usize = 500;

/// Nesting beyond this is refused rather than risking the stack.
const MAX_DEPTH: usize = 32;

/// A user attribute a filter can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attr {
    Id,
    UserName,
    Origin,
    Email,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Co,
    Sw,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A parsed SCIM filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Filter {
    Compare(Attr, Op, String),
    Present(Attr),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

/// Why a filter could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter {filter:?}: {reason}")]
pub(crate) struct FilterError {
    /// The filter as given.
    pub filter: String,
    /// What is wrong with it.
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Word(String),
    Quoted(String),
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '"' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped) => value.push(escaped),
                            None => return Err("unterminated string".into()),
                        },
                        Some(other) => value.push(other),
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' || c == '"' {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn or(&mut self, depth: usize) -> Result<Filter, String> {
        let mut left = self.and(depth)?;
        while self.peek_keyword("or") {
            self.pos += 1;
            let right = self.and(depth)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, String> {
        let mut left = self.factor(depth)?;
        while self.peek_keyword("and") {
            self.pos += 1;
            let right = self.factor(depth)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn factor(&mut self, depth: usize) -> Result<Filter, String> {
        if depth >= MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        match self.next() {
            Some(Token::Open) => {
                let inner = self.or(depth + 1)?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err("missing ')'".into()),
                }
            }
            Some(Token::Word(name)) => {
                let attr = attribute(&name)?;
                let op = match self.next() {
                    Some(Token::Word(op)) => op.to_ascii_lowercase(),
                    _ => return Err(format!("expected an operator after {name}")),
                };
                let op = match op.as_str() {
                    "pr" => return Ok(Filter::Present(attr)),
                    "eq" => Op::Eq,
                    "co" => Op::Co,
                    "sw" => Op::Sw,
                    "gt" => Op::Gt,
                    "ge" => Op::Ge,
                    "lt" => Op::Lt,
                    "le" => Op::Le,
                    other => return Err(format!("unknown operator {other:?}")),
                };
                match self.next() {
                    Some(Token::Quoted(value)) => Ok(Filter::Compare(attr, op, value)),
                    _ => Err(format!("expected a quoted value after {name} {op:?}")),
                }
            }
            Some(Token::Quoted(value)) => Err(format!("expected an attribute, found {value:?}")),
            Some(Token::Close) => Err("unexpected ')'".into()),
            None => Err("unexpected end of filter".into()),
        }
    }
}

fn attribute(name: &str) -> Result<Attr, String> {
    match name.to_ascii_lowercase().as_str() {
        "id" => Ok(Attr::Id),
        "username" => Ok(Attr::UserName),
        "origin" => Ok(Attr::Origin),
        "email" | "emails" | "emails.value" => Ok(Attr::Email),
        _ => Err(format!("unsupported attribute {name:?}")),
    }
}

impl Filter {
    /// Parses a SCIM filter such as `userName eq "bob" and origin eq "uaa"`.
    pub(crate) fn parse(input: &str) -> Result<Filter, FilterError> {
        let error = |reason: String| FilterError {
            filter: input.to_owned(),
            reason,
        };
        let tokens = tokenize(input).map_err(error)?;
        let mut parser = Parser { tokens, pos: 0 };
        let filter = parser.or(0).map_err(error)?;
        if parser.pos < parser.tokens.len() {
            return Err(error(format!("unexpected {:?}", parser.tokens[parser.pos])));
        }
        Ok(filter)
    }

    /// Whether the filter names `id` or `userName` somewhere (what
    /// `/ids/Users` insists on, so that it cannot list every user).
    fn names_id_or_username(&self) -> bool {
        match self {
            Filter::Compare(attr, _, _) | Filter::Present(attr) => {
                matches!(attr, Attr::Id | Attr::UserName)
            }
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.names_id_or_username() || b.names_id_or_username()
            }
        }
    }

    fn matches(&self, user: &User) -> bool {
        match self {
            Filter::Present(_) => true,
            Filter::And(a, b) => a.matches(user) && b.matches(user),
            Filter::Or(a, b) => a.matches(user) || b.matches(user),
            Filter::Compare(attr, op, value) => {
                let actual = match attr {
                    Attr::Id => user.id.as_str(),
                    Attr::UserName => user.username.as_str(),
                    Attr::Origin => ORIGIN_UAA,
                    Attr::Email => user.email.as_str(),
                }
                .to_lowercase();
                let value = value.to_lowercase();
                match op {
                    Op::Eq => actual == value,
                    Op::Co => actual.contains(&value),
                    Op::Sw => actual.starts_with(&value),
                    Op::Gt => actual > value,
                    Op::Ge => actual >= value,
                    Op::Lt => actual < value,
                    Op::Le => actual <= value,
                }
            }
        }
    }
}

/// UAA's SCIM date format: milliseconds, UTC, `Z`.
fn scim_date(stored: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(stored)
        .map(|d| {
            d.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string()
        })
        .unwrap_or_else(|_| stored.to_owned())
}

/// A user as UAA's SCIM endpoints show it. Groups have no ids of their own
/// here: a group's name is its `value`.
fn user_json(user: &User) -> Value {
    let groups: Vec<Value> = user
        .groups
        .iter()
        .map(|g| json!({"value": g, "display": g, "type": "DIRECT"}))
        .collect();
    json!({
        "id": user.id,
        "externalId": "",
        "meta": {
            "version": 0,
            "created": scim_date(&user.created_at),
            "lastModified": scim_date(&user.updated_at),
        },
        "userName": user.username,
        "name": {},
        "emails": [{"value": user.email, "primary": false}],
        "groups": groups,
        "approvals": [],
        "active": true,
        "verified": true,
        "origin": ORIGIN_UAA,
        "zoneId": "uaa",
        "passwordLastModified": scim_date(&user.updated_at),
        "schemas": [SCHEMA],
    })
}

fn with_etag(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::ETAG, HeaderValue::from_static("\"0\""))],
        Json(body),
    )
        .into_response()
}

/// Counts the request under `operation` and answers it.
fn finish(inner: &Inner, operation: &'static str, result: Result<Response, UaaError>) -> Response {
    let response = match result {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    inner.metrics.scim(operation, response.status().as_u16());
    response
}

fn require_any(claims: &Claims, any_of: &[&str]) -> Result<(), UaaError> {
    if any_of.iter().any(|s| claims.has_scope(s)) {
        Ok(())
    } else {
        Err(UaaError::insufficient_scope(any_of))
    }
}

fn not_found(id: &str) -> UaaError {
    UaaError::scim(
        StatusCode::NOT_FOUND,
        "scim_resource_not_found",
        format!("User {id} does not exist"),
    )
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, UaaError> {
    serde_json::from_slice(body).map_err(|e| {
        UaaError::scim(
            StatusCode::BAD_REQUEST,
            "message_not_readable",
            format!("Request body is not the expected JSON: {e}"),
        )
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewUser {
    user_name: Option<String>,
    password: Option<String>,
    #[serde(default)]
    emails: Vec<Email>,
    origin: Option<String>,
}

#[derive(Deserialize)]
struct Email {
    value: String,
}

/// `POST /Users` (scope `scim.write`, `scim.create` or `uaa.admin`).
pub(crate) async fn create_user(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = create_user_inner(&inner, &headers, &body).await;
    finish(&inner, "create_user", result)
}

async fn create_user_inner(
    inner: &Inner,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, UaaError> {
    let claims = bearer_claims(inner, headers).await?;
    require_any(&claims, &["scim.write", "scim.create", "uaa.admin"])?;
    let new: NewUser = parse_json(body)?;
    let invalid =
        |message: String| UaaError::scim(StatusCode::BAD_REQUEST, "invalid_scim_resource", message);
    let Some(username) = new.user_name.filter(|u| !u.is_empty()) else {
        return Err(invalid("A username must be provided.".into()));
    };
    if let Some(origin) = new
        .origin
        .as_deref()
        .filter(|o| *o != ORIGIN_UAA && !o.is_empty())
    {
        return Err(invalid(format!(
            "Origin {origin:?} is not supported: Ingot has only the \"uaa\" identity provider"
        )));
    }
    let password = new.password.unwrap_or_default();
    if password.is_empty() {
        return Err(UaaError::scim(
            StatusCode::BAD_REQUEST,
            "invalid_password",
            "Password must be at least 1 characters in length.",
        ));
    }
    let email = new
        .emails
        .first()
        .map(|e| e.value.clone())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| username.clone());
    validate_user(&username, &password, &[]).map_err(|e| match e {
        AuthError::InvalidUser { reason, .. } => invalid(reason),
        e => UaaError::from(e),
    })?;
    let hash = password::hash(&username, &password).await?;
    let id = match inner
        .store
        .insert_user(&username, &email, &hash, DEFAULT_USER_GROUPS)
        .await
    {
        Ok(id) => id,
        Err(AuthError::UserExists { .. }) => {
            return Err(UaaError::scim(
                StatusCode::CONFLICT,
                "scim_resource_already_exists",
                format!("Username already in use: {username}"),
            )
            .with("origin", ORIGIN_UAA))
        }
        Err(e) => return Err(e.into()),
    };
    let user = inner
        .store
        .user_by_id(&id)
        .await?
        .ok_or_else(|| UaaError::from(AuthError::UserNotFound { username }))?;
    Ok(with_etag(StatusCode::CREATED, user_json(&user)))
}

/// Paging parameters of a list request, clamped as UAA clamps them.
fn paging(query: &HashMap<String, String>) -> Result<(usize, usize), UaaError> {
    let number = |key: &str, default: usize| -> Result<i64, UaaError> {
        match query.get(key) {
            None => Ok(default as i64),
            Some(v) => v.trim().parse::<i64>().map_err(|_| {
                UaaError::scim(
                    StatusCode::BAD_REQUEST,
                    "scim",
                    format!("Invalid {key}: {v:?} is not a number"),
                )
            }),
        }
    };
    let start = number("startIndex", 1)?.max(1);
    let count = number("count", DEFAULT_COUNT)?.clamp(0, MAX_COUNT as i64);
    Ok((
        usize::try_from(start).unwrap_or(1),
        usize::try_from(count).unwrap_or(DEFAULT_COUNT),
    ))
}

/// The users matching the request's filter, sorted and with the total.
async fn query_users(
    inner: &Inner,
    query: &HashMap<String, String>,
    default_sort: &str,
    require_id_or_username: bool,
) -> Result<Vec<User>, UaaError> {
    let raw = query.get("filter").map(|f| f.trim()).unwrap_or_default();
    let invalid = |message: String| UaaError::scim(StatusCode::BAD_REQUEST, "scim", message);
    let filter = if raw.is_empty() {
        if require_id_or_username {
            return Err(invalid("a 'filter' parameter is required".into()));
        }
        None
    } else {
        let filter = Filter::parse(raw)
            .map_err(|e| invalid(format!("Invalid filter expression: [{raw}] ({})", e.reason)))?;
        if require_id_or_username && !filter.names_id_or_username() {
            return Err(invalid("Invalid filter attribute.".into()));
        }
        Some(filter)
    };
    let sort_by = query
        .get("sortBy")
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_else(|| default_sort.to_owned());
    let descending = query
        .get("sortOrder")
        .is_some_and(|o| o.eq_ignore_ascii_case("descending"));
    let mut users: Vec<User> = inner
        .store
        .all_users()
        .await?
        .into_iter()
        .filter(|u| filter.as_ref().is_none_or(|f| f.matches(u)))
        .collect();
    match sort_by.as_str() {
        "created" => {} // the store's order
        "username" => users.sort_by_key(|u| u.username.to_lowercase()),
        "id" => users.sort_by(|a, b| a.id.cmp(&b.id)),
        "email" | "emails.value" => users.sort_by(|a, b| a.email.cmp(&b.email)),
        _ => {
            return Err(invalid(format!(
                "Invalid filter expression: [{raw}] [{sort_by}]"
            )))
        }
    }
    if descending {
        users.reverse();
    }
    Ok(users)
}

fn envelope(resources: Vec<Value>, start: usize, count: usize, total: usize) -> Value {
    json!({
        "resources": resources,
        "startIndex": start,
        "itemsPerPage": count,
        "totalResults": total,
        "schemas": [SCHEMA],
    })
}

/// `GET /Users[?filter=…&sortBy=…&sortOrder=…&startIndex=…&count=…]`
/// (scope `scim.read` or `uaa.admin`).
pub(crate) async fn list_users(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let result = async {
        let claims = bearer_claims(&inner, &headers).await?;
        require_any(&claims, &["scim.read", "uaa.admin"])?;
        let (start, count) = paging(&query)?;
        let users = query_users(&inner, &query, "created", false).await?;
        let page = users
            .iter()
            .skip(start - 1)
            .take(count)
            .map(user_json)
            .collect();
        Ok(Json(envelope(page, start, count, users.len())).into_response())
    }
    .await;
    finish(&inner, "list_users", result)
}

/// `GET /ids/Users?filter=…` (scope `scim.userids`): only `id`, `userName`
/// and `origin`, and only for filters naming an id or a username.
pub(crate) async fn ids_users(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let result = async {
        let claims = bearer_claims(&inner, &headers).await?;
        require_any(&claims, &["scim.userids"])?;
        let (start, count) = paging(&query)?;
        let users = query_users(&inner, &query, "username", true).await?;
        let page = users
            .iter()
            .skip(start - 1)
            .take(count)
            .map(|u| json!({"id": u.id, "userName": u.username, "origin": ORIGIN_UAA}))
            .collect();
        Ok(Json(envelope(page, start, count, users.len())).into_response())
    }
    .await;
    finish(&inner, "ids_users", result)
}

/// `GET /Users/:id` (scope `scim.read` or `uaa.admin`, or the user itself).
pub(crate) async fn get_user(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let claims = bearer_claims(&inner, &headers).await?;
        if claims.user_id != id {
            require_any(&claims, &["scim.read", "uaa.admin"])?;
        }
        let user = inner
            .store
            .user_by_id(&id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        Ok(with_etag(StatusCode::OK, user_json(&user)))
    }
    .await;
    finish(&inner, "get_user", result)
}

/// `DELETE /Users/:id` (scope `scim.write` or `uaa.admin`) → the deleted
/// user, as UAA answers.
pub(crate) async fn delete_user(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let claims = bearer_claims(&inner, &headers).await?;
        require_any(&claims, &["scim.write", "uaa.admin"])?;
        let user = inner
            .store
            .user_by_id(&id)
            .await?
            .ok_or_else(|| not_found(&id))?;
        if !inner.store.delete_user(UserKey::Id, &id).await? {
            return Err(not_found(&id));
        }
        Ok(with_etag(StatusCode::OK, user_json(&user)))
    }
    .await;
    finish(&inner, "delete_user", result)
}

/// `GET /userinfo` (scope `openid`): OpenID Connect's claims about the
/// token's user, as UAA answers them.
pub(crate) async fn userinfo(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let result = async {
        let claims = bearer_claims(&inner, &headers).await?;
        require_any(&claims, &["openid"])?;
        let user = inner
            .store
            .user_by_id(&claims.user_id)
            .await?
            .ok_or_else(|| UaaError::invalid_token("Invalid token: its user no longer exists"))?;
        Ok(Json(json!({
            "user_id": user.id,
            "sub": user.id,
            "user_name": user.username,
            "given_name": "",
            "family_name": "",
            "name": "",
            "email": user.email,
            "email_verified": true,
            "phone_number": null,
            "previous_logon_time": null,
        }))
        .into_response())
    }
    .await;
    finish(&inner, "userinfo", result)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordChange {
    old_password: Option<String>,
    password: Option<String>,
}

/// `PUT /Users/:id/password` `{"oldPassword","password"}` (scope
/// `password.write`): a user changes its own password giving the old one; a
/// `uaa.admin` token or a client token may set anyone's (an admin still
/// gives its own old password), as in UAA.
pub(crate) async fn change_password(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let result = change_password_inner(&inner, &headers, &id, &body).await;
    finish(&inner, "change_password", result)
}

async fn change_password_inner(
    inner: &Inner,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
) -> Result<Response, UaaError> {
    let claims = bearer_claims(inner, headers).await?;
    require_any(&claims, &["password.write"])?;
    let change: PasswordChange = parse_json(body)?;
    let invalid = |status: StatusCode, message: &str| {
        UaaError::scim(status, "invalid_password", message.to_owned())
    };
    let new_password = change.password.unwrap_or_default();
    let old_password = change.old_password.unwrap_or_default();
    let Some(user) = inner.store.user_by_id(id).await? else {
        return Err(UaaError::scim(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid password change request",
        ));
    };
    let is_self = claims.user_id == user.id;
    let privileged = claims.is_client() || claims.has_scope("uaa.admin");
    if !privileged && !is_self {
        return Err(invalid(
            StatusCode::BAD_REQUEST,
            "Not permitted to change another user's password",
        ));
    }
    if is_self {
        if old_password.is_empty() {
            return Err(invalid(
                StatusCode::BAD_REQUEST,
                "Previous password is required",
            ));
        }
        if !password::verify(Some(user.password_hash.clone()), &old_password).await {
            return Err(UaaError::scim(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Old password is incorrect",
            ));
        }
    }
    if new_password.is_empty() {
        return Err(invalid(
            StatusCode::BAD_REQUEST,
            "Password must be at least 1 characters in length.",
        ));
    }
    if password::verify(Some(user.password_hash.clone()), &new_password).await {
        return Err(invalid(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Your new password cannot be the same as the old password.",
        ));
    }
    let hash = password::hash(&user.username, &new_password).await?;
    if !inner
        .store
        .set_password_hash(UserKey::Id, &user.id, &hash)
        .await?
    {
        return Err(not_found(id));
    }
    Ok(Json(json!({"status": "ok", "message": "password updated"})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(attr: Attr, op: Op, value: &str) -> Filter {
        Filter::Compare(attr, op, value.to_owned())
    }

    fn and(a: Filter, b: Filter) -> Filter {
        Filter::And(Box::new(a), Box::new(b))
    }

    fn or(a: Filter, b: Filter) -> Filter {
        Filter::Or(Box::new(a), Box::new(b))
    }

    #[test]
    fn filters_parse_as_uaa_reads_them() {
        let cases = [
            (r#"userName eq "bob""#, cmp(Attr::UserName, Op::Eq, "bob")),
            (r#"USERNAME EQ "bob""#, cmp(Attr::UserName, Op::Eq, "bob")),
            (r#"id eq "a-b""#, cmp(Attr::Id, Op::Eq, "a-b")),
            (r#"origin eq "uaa""#, cmp(Attr::Origin, Op::Eq, "uaa")),
            (
                r#"emails.value co "example""#,
                cmp(Attr::Email, Op::Co, "example"),
            ),
            (r#"userName sw "b""#, cmp(Attr::UserName, Op::Sw, "b")),
            ("userName pr", Filter::Present(Attr::UserName)),
            (
                r#"userName eq "with \"quote\"""#,
                cmp(Attr::UserName, Op::Eq, "with \"quote\""),
            ),
            (
                r#"userName eq "two words and or""#,
                cmp(Attr::UserName, Op::Eq, "two words and or"),
            ),
            (
                r#"userName eq "a" and origin eq "uaa""#,
                and(
                    cmp(Attr::UserName, Op::Eq, "a"),
                    cmp(Attr::Origin, Op::Eq, "uaa"),
                ),
            ),
            // `and` binds tighter than `or`.
            (
                r#"id eq "1" or userName eq "a" AND origin eq "uaa""#,
                or(
                    cmp(Attr::Id, Op::Eq, "1"),
                    and(
                        cmp(Attr::UserName, Op::Eq, "a"),
                        cmp(Attr::Origin, Op::Eq, "uaa"),
                    ),
                ),
            ),
            (
                r#"(id eq "1" or userName eq "a") and origin eq "uaa""#,
                and(
                    or(cmp(Attr::Id, Op::Eq, "1"), cmp(Attr::UserName, Op::Eq, "a")),
                    cmp(Attr::Origin, Op::Eq, "uaa"),
                ),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Filter::parse(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn malformed_filters_are_refused() {
        let deep = format!("{}userName eq \"a\"{}", "(".repeat(100), ")".repeat(100));
        let cases = [
            "",
            "userName",
            "userName eq",
            "userName eq bob",
            r#"userName eq "bob"#,
            r#"userName equals "bob""#,
            r#"password eq "x""#,
            r#"userName eq "a" and"#,
            r#"(userName eq "a""#,
            r#"userName eq "a")"#,
            r#"userName eq "a" userName eq "b""#,
            r#""bob" eq userName"#,
            r#"userName eq "a" xor id eq "b""#,
            deep.as_str(),
        ];
        for input in cases {
            let result = Filter::parse(input);
            assert!(result.is_err(), "{input:?} parsed as {result:?}");
        }
    }

    #[test]
    fn filters_match_case_insensitively() {
        let user = User {
            id: "0b5e".into(),
            username: "Bob".into(),
            email: "bob@example.com".into(),
            password_hash: String::new(),
            groups: vec![],
            created_at: String::new(),
            updated_at: String::new(),
        };
        let matches = |f: &str| Filter::parse(f).map(|f| f.matches(&user));
        assert_eq!(matches(r#"userName eq "bob""#), Ok(true));
        assert_eq!(
            matches(r#"username eq "BOB" and origin eq "uaa""#),
            Ok(true)
        );
        assert_eq!(matches(r#"userName eq "bo""#), Ok(false));
        assert_eq!(matches(r#"userName sw "bo""#), Ok(true));
        assert_eq!(matches(r#"email co "EXAMPLE""#), Ok(true));
        assert_eq!(matches(r#"origin eq "ldap""#), Ok(false));
        assert_eq!(matches(r#"id eq "x" or id eq "0b5e""#), Ok(true));
        assert_eq!(
            matches(r#"id eq "x" or (id eq "0b5e" and origin eq "ldap")"#),
            Ok(false)
        );
    }

    #[test]
    fn ids_filters_must_name_an_id_or_username() {
        let names = |f: &str| Filter::parse(f).map(|f| f.names_id_or_username());
        assert_eq!(names(r#"origin eq "uaa""#), Ok(false));
        assert_eq!(names(r#"origin eq "uaa" and userName eq "a""#), Ok(true));
        assert_eq!(names(r#"id eq "a""#), Ok(true));
    }

    #[test]
    fn scim_dates_have_milliseconds_and_z() {
        assert_eq!(
            scim_date("2026-11-25T14:07:28.123456789+00:00"),
            "2026-11-25T14:07:28.123Z"
        );
        assert_eq!(
            scim_date("2026-11-25T14:07:28.5Z"),
            "2026-11-25T14:07:28.500Z"
        );
    }
}
