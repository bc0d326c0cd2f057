//! Application security groups (`/v3/security_groups`): egress allow-lists
//! bound globally (running or staging) or to spaces, validated with Cloud
//! Controller's rule checks, and the egress rules a space's processes,
//! tasks and stagings get from them.
//!
//! A group keeps its rules as the user gave them (CF shows them back
//! verbatim) and the spaces it is bound to; the parsed form handed to the
//! runtime is [`crate::EgressRule`]. When groups change, every started
//! process of the affected spaces gets its new running rules in place
//! ([`crate::Runtime::update_egress`]) and in its stored desired state, so a
//! platform restart re-desires with the current rules.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::SqliteConnection;

use crate::authz::{Access, Scope};
use crate::error::{ApiError, ApiResult};
use crate::http::{accepted_job, created, no_content, ok, ListParams};
use crate::model::{link, new_guid, now, Desired, Job, Space};
use crate::store::{self, Doc, Query};
use crate::{Api, EgressRule, IpRange, PortRange};

/// The longest name CF accepts.
const MAX_NAME: usize = 250;

/// CF's error when a security group is not visible or does not exist.
fn not_found() -> ApiError {
    ApiError::not_found("Security group")
}

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/security_groups", get(list).post(create))
        .route(
            "/v3/security_groups/{guid}",
            get(show_one).patch(update).delete(destroy),
        )
        .route(
            "/v3/security_groups/{guid}/relationships/{lifecycle}",
            post(bind),
        )
        .route(
            "/v3/security_groups/{guid}/relationships/{lifecycle}/{space_guid}",
            delete(unbind),
        )
        .route(
            "/v3/spaces/{guid}/running_security_groups",
            get(space_running),
        )
        .route(
            "/v3/spaces/{guid}/staging_security_groups",
            get(space_staging),
        )
}

/// A security group as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SecurityGroup {
    pub guid: String,
    pub name: String,
    /// The rules as the user gave them (validated).
    pub rules: Vec<Value>,
    /// Globally enabled for running apps.
    pub running: bool,
    /// Globally enabled for staging.
    pub staging: bool,
    pub running_spaces: Vec<String>,
    pub staging_spaces: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Doc for SecurityGroup {
    const TABLE: &'static str = "cc_security_groups";
    const KIND: &'static str = "Security group";
    // Lists are narrowed here, not by the generic scopes: visibility
    // depends on the global switches as well as on the bound spaces.
    const SCOPE: Scope = Scope::Everyone;
    fn guid(&self) -> &str {
        &self.guid
    }
}

/// Running or staging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Running,
    Staging,
}

impl SecurityGroup {
    /// Whether the group applies to `space` in `lifecycle`.
    fn applies(&self, space: &str, lifecycle: Lifecycle) -> bool {
        match lifecycle {
            Lifecycle::Running => self.running || self.running_spaces.iter().any(|s| s == space),
            Lifecycle::Staging => self.staging || self.staging_spaces.iter().any(|s| s == space),
        }
    }

    /// CF's visibility rule: global readers see every group, others the
    /// globally enabled ones and those bound to a space they can see.
    fn visible_to(&self, access: &Access) -> bool {
        access.reads_everything()
            || self.running
            || self.staging
            || self
                .running_spaces
                .iter()
                .chain(self.staging_spaces.iter())
                .any(|s| access.can_read_space(s))
    }

    fn json(&self, base: &str, access: &Access) -> Value {
        let spaces = |list: &[String]| -> Vec<Value> {
            list.iter()
                .filter(|s| access.can_read_space(s))
                .map(|s| json!({"guid": s}))
                .collect()
        };
        json!({
            "guid": self.guid, "created_at": self.created_at, "updated_at": self.updated_at,
            "name": self.name,
            "rules": self.rules,
            "globally_enabled": {"running": self.running, "staging": self.staging},
            "relationships": {
                "running_spaces": {"data": spaces(&self.running_spaces)},
                "staging_spaces": {"data": spaces(&self.staging_spaces)},
            },
            "links": {"self": link(base, &format!("/v3/security_groups/{}", self.guid))},
        })
    }
}

// ---------------------------------------------------------------------------
// Rule validation, as Cloud Controller's `RulesValidator` (IPv6 off, comma
// separated destinations on).

/// Validates the `rules` of a request; the errors are CF's, each prefixed
/// `Rules[i]:`.
pub(crate) fn validate_rules(rules: &Value) -> Result<Vec<EgressRule>, Vec<String>> {
    let Some(list) = rules.as_array() else {
        return Err(vec!["Rules must be an array".into()]);
    };
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for (i, rule) in list.iter().enumerate() {
        match parse_rule(rule) {
            Ok(r) => parsed.push(r),
            Err(errs) => errors.extend(errs.into_iter().map(|e| format!("Rules[{i}]: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

const RULE_KEYS: &[&str] = &[
    "code",
    "description",
    "destination",
    "log",
    "ports",
    "protocol",
    "type",
];

/// Parses one rule, or says everything wrong with it.
pub(crate) fn parse_rule(rule: &Value) -> Result<EgressRule, Vec<String>> {
    let Some(obj) = rule.as_object() else {
        return Err(vec!["must be an object".into()]);
    };
    let mut errs = Vec::new();
    let unknown: Vec<String> = obj
        .keys()
        .filter(|k| !RULE_KEYS.contains(&k.as_str()))
        .map(|k| format!("\"{k}\""))
        .collect();
    if !unknown.is_empty() {
        errs.push(format!("unknown field(s): [{}]", unknown.join(", ")));
    }
    let protocol = obj.get("protocol").and_then(Value::as_str).unwrap_or("");
    if !["tcp", "udp", "icmp", "icmpv6", "all"].contains(&protocol) {
        errs.push("protocol must be 'tcp', 'udp', 'icmp', 'icmpv6' or 'all'".into());
    }
    let mut destinations = Vec::new();
    match obj.get("destination") {
        None | Some(Value::Null) => errs.push(
            "nil destination; destination must be a comma-delimited list of valid CIDRs, IP addresses, or IP address ranges"
                .into(),
        ),
        Some(Value::String(d)) if d.chars().any(char::is_whitespace) => {
            errs.push("destination must not contain whitespace".into())
        }
        Some(Value::String(d)) => {
            for one in d.split(',') {
                match parse_destination(one) {
                    Ok(range) => destinations.push(range),
                    Err(e) => errs.extend(e),
                }
            }
        }
        Some(_) => errs.push("destination must be a string".into()),
    }
    if let Some(d) = obj.get("description") {
        if !d.is_null() && !d.is_string() {
            errs.push("description must be a string".into());
        }
    }
    let log = match obj.get("log") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => {
            errs.push("log must be a boolean".into());
            false
        }
    };
    let ports_value = obj.get("ports").filter(|p| !p.is_null());
    let mut ports = Vec::new();
    let (mut icmp_type, mut icmp_code) = (None, None);
    match protocol {
        "tcp" | "udp" => {
            if ports_value.is_none() {
                errs.push("ports are required for protocols of type TCP and UDP".into());
            }
            match ports_value.and_then(Value::as_str).and_then(parse_ports) {
                Some(p) => ports = p,
                None => errs.push(
                    "ports must be a valid single port, comma separated list of ports, or range or ports, formatted as a string"
                        .into(),
                ),
            }
        }
        "icmp" | "icmpv6" => {
            if protocol == "icmpv6" {
                errs.push("icmpv6 cannot be used if enable_ipv6 is false".into());
            }
            for (field, slot) in [("code", &mut icmp_code), ("type", &mut icmp_type)] {
                let value = obj.get(field).filter(|v| !v.is_null());
                if value.is_none() {
                    errs.push(format!("{field} is required for protocols of type ICMP"));
                }
                match value
                    .and_then(Value::as_i64)
                    .filter(|v| (-1..=255).contains(v))
                {
                    Some(v) => *slot = i32::try_from(v).ok(),
                    None => errs.push(format!(
                        "{field} must be an integer between -1 and 255 (inclusive)"
                    )),
                }
            }
        }
        "all" if ports_value.is_some() => {
            errs.push("ports are not allowed for protocols of type all".into());
        }
        _ => {}
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(EgressRule {
        protocol: protocol.to_string(),
        destinations,
        ports,
        icmp_type,
        icmp_code,
        log,
    })
}

/// An IPv4 address in dotted quad form, refusing leading zeros.
fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    text.parse().ok()
}

/// Whether any octet has a leading zero (CF refuses `010.0.0.1`).
fn leading_zeros(text: &str) -> bool {
    text.split(['.', '-'])
        .map(|octet| octet.split('/').next().unwrap_or(""))
        .any(|octet| octet.len() > 1 && octet.starts_with('0'))
}

/// One destination: an address, a CIDR, or a range `a-b`.
fn parse_destination(text: &str) -> Result<IpRange, Vec<String>> {
    const INVALID: &str =
        "destination must contain valid CIDR(s), IP address(es), or IP address range(s)";
    let mut errs = Vec::new();
    if text.is_empty() {
        errs.push("empty destination specified in comma-delimited list".to_string());
        errs.push(INVALID.to_string());
        return Err(errs);
    }
    if leading_zeros(text) {
        return Err(vec![
            "destination octets cannot contain leading zeros".into()
        ]);
    }
    let parts: Vec<&str> = text.split('-').collect();
    match parts.as_slice() {
        [one] => parse_cidr(one).ok_or_else(|| vec![INVALID.to_string()]),
        [a, b] => {
            let (Some(start), Some(end)) = (parse_ipv4(a), parse_ipv4(b)) else {
                return Err(vec!["destination IP address range is invalid".into()]);
            };
            if start > end {
                return Err(vec![
                    "beginning of IP address range is numerically greater than the end of its range (range endpoints are inverted)"
                        .into(),
                ]);
            }
            Ok(IpRange { start, end })
        }
        _ => Err(vec![INVALID.to_string()]),
    }
}

/// `a.b.c.d` or `a.b.c.d/n`, as the range it covers (host bits masked, as
/// Ruby's `IPAddr` does).
fn parse_cidr(text: &str) -> Option<IpRange> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, p.parse::<u32>().ok().filter(|p| *p <= 32)?),
        None => (text, 32),
    };
    let addr = u32::from(parse_ipv4(addr)?);
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Some(IpRange {
        start: Ipv4Addr::from(addr & mask),
        end: Ipv4Addr::from((addr & mask) | !mask),
    })
}

/// `80`, `80,443` or `1000-2000`, as CF's `TransportRuleValidator` reads them.
fn parse_ports(text: &str) -> Option<Vec<PortRange>> {
    if text
        .chars()
        .any(|c| !(c.is_ascii_digit() || c.is_whitespace() || c == '-' || c == ','))
    {
        return None;
    }
    let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p > 0);
    if let Some((a, b)) = text.split_once('-') {
        let (start, end) = (port(a)?, port(b)?);
        return (start < end).then(|| vec![PortRange { start, end }]);
    }
    // Ruby's `split(',')` drops trailing empty pieces.
    let mut pieces: Vec<&str> = text.split(',').collect();
    while pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    if pieces.is_empty() {
        return None;
    }
    pieces
        .into_iter()
        .map(|p| port(p).map(|p| PortRange { start: p, end: p }))
        .collect()
}

// ---------------------------------------------------------------------------
// Effective rules.

/// Every group, oldest first.
async fn all_groups(c: &mut SqliteConnection) -> ApiResult<Vec<SecurityGroup>> {
    store::find(c, &Query::new()).await
}

/// The egress rules of `space` in `lifecycle`: every globally enabled group
/// and every group bound to the space, in creation order, without repeats.
pub(crate) async fn rules_for(
    c: &mut SqliteConnection,
    space: &str,
    lifecycle: Lifecycle,
) -> ApiResult<Vec<EgressRule>> {
    let mut rules: Vec<EgressRule> = Vec::new();
    for group in all_groups(c).await? {
        if !group.applies(space, lifecycle) {
            continue;
        }
        for rule in &group.rules {
            // Stored rules were validated; one that no longer parses (a
            // stricter check in a later version) is left out, not fatal.
            if let Ok(r) = parse_rule(rule) {
                if !rules.contains(&r) {
                    rules.push(r);
                }
            }
        }
    }
    Ok(rules)
}

/// The running rules of a space (processes and tasks).
pub(crate) async fn running_rules(
    c: &mut SqliteConnection,
    space: &str,
) -> ApiResult<Vec<EgressRule>> {
    rules_for(c, space, Lifecycle::Running).await
}

/// The staging rules of a space.
pub(crate) async fn staging_rules(
    c: &mut SqliteConnection,
    space: &str,
) -> ApiResult<Vec<EgressRule>> {
    rules_for(c, space, Lifecycle::Staging).await
}

/// Brings the running rules of every started process in `spaces` (all when
/// `None`) up to date: the stored desired state first, then the runtime,
/// one app at a time under its lock so the runtime sees changes in commit
/// order.
pub(crate) async fn push_running_rules(
    api: &Api,
    spaces: Option<BTreeSet<String>>,
) -> ApiResult<()> {
    let apps: BTreeSet<String> = {
        let mut c = api.inner.pool.acquire().await?;
        let q = match &spaces {
            Some(s) => Query::new().any_of("process.space_guid", s.iter().cloned().collect()),
            None => Query::new(),
        };
        let records: Vec<Desired> = store::find(&mut c, &q).await?;
        records.into_iter().map(|d| d.app_guid).collect()
    };
    for app in apps {
        let _serial = api.lock_app(&app).await;
        let mut tx = store::begin(&api.inner.pool).await?;
        let records: Vec<Desired> =
            store::find(&mut tx, &Query::new().eq("app_guid", &app)).await?;
        let mut changed = Vec::new();
        for mut record in records {
            let rules = running_rules(&mut tx, &record.process.space_guid).await?;
            if record.process.egress != rules {
                record.process.egress = rules.clone();
                store::put(&mut tx, &record).await?;
                changed.push((record.guid, rules));
            }
        }
        tx.commit().await?;
        for (process, rules) in changed {
            api.inner.runtime.update_egress(&process, rules).await;
        }
    }
    Ok(())
}

/// Pushes after a change of `group` (as it was before and after).
async fn push_after(
    api: &Api,
    before: Option<&SecurityGroup>,
    after: Option<&SecurityGroup>,
) -> ApiResult<()> {
    let global = before.into_iter().chain(after).any(|g| g.running);
    let spaces: BTreeSet<String> = before
        .into_iter()
        .chain(after)
        .flat_map(|g| g.running_spaces.iter().cloned())
        .collect();
    if global {
        push_running_rules(api, None).await
    } else if spaces.is_empty() {
        Ok(())
    } else {
        push_running_rules(api, Some(spaces)).await
    }
}

/// Forgets a deleted space in every group, in the caller's transaction.
pub(crate) async fn forget_space(c: &mut SqliteConnection, space: &str) -> ApiResult<()> {
    for mut group in all_groups(c).await? {
        let before = group.running_spaces.len() + group.staging_spaces.len();
        group.running_spaces.retain(|s| s != space);
        group.staging_spaces.retain(|s| s != space);
        if group.running_spaces.len() + group.staging_spaces.len() != before {
            store::put(c, &group).await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// First boot.

/// CF's usual defaults (cf-deployment's `public_networks` and `dns`), both
/// globally enabled for running and staging: every IPv4 address outside
/// the private, link-local, loopback and `0/8` networks, and DNS anywhere.
pub(crate) async fn bootstrap(c: &mut SqliteConnection) -> ApiResult<()> {
    if !all_groups(c).await?.is_empty() {
        return Ok(());
    }
    let all = |d: &str| json!({"protocol": "all", "destination": d});
    let defaults = [
        (
            "public_networks",
            vec![
                all("1.0.0.0-9.255.255.255"),
                all("11.0.0.0-126.255.255.255"),
                all("128.0.0.0-169.253.255.255"),
                all("169.255.0.0-172.15.255.255"),
                all("172.32.0.0-192.167.255.255"),
                all("192.169.0.0-255.255.255.255"),
            ],
        ),
        (
            "dns",
            vec![
                json!({"protocol": "tcp", "destination": "0.0.0.0/0", "ports": "53"}),
                json!({"protocol": "udp", "destination": "0.0.0.0/0", "ports": "53"}),
            ],
        ),
    ];
    for (name, rules) in defaults {
        let at = now();
        let group = SecurityGroup {
            guid: new_guid(),
            name: name.into(),
            rules,
            running: true,
            staging: true,
            running_spaces: Vec::new(),
            staging_spaces: Vec::new(),
            created_at: at.clone(),
            updated_at: at,
        };
        store::insert(c, &group).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Handlers.

/// The group, if the user may see it (else CF's 404).
async fn visible(
    c: &mut SqliteConnection,
    access: &Access,
    guid: &str,
) -> ApiResult<SecurityGroup> {
    store::get::<SecurityGroup>(c, guid)
        .await?
        .filter(|g| g.visible_to(access))
        .ok_or_else(not_found)
}

const FILTERS: &[&str] = &[
    "guids",
    "names",
    "globally_enabled_running",
    "globally_enabled_staging",
    "running_space_guids",
    "staging_space_guids",
];

fn matches_filters(g: &SecurityGroup, params: &ListParams) -> bool {
    let has = |name: &str, value: &str| {
        params
            .filter(name)
            .is_none_or(|values| values.iter().any(|v| v == value))
    };
    let flag = |name: &str, value: bool| {
        params.filter(name).is_none_or(|values| {
            values
                .iter()
                .any(|v| v == if value { "true" } else { "false" })
        })
    };
    let bound = |name: &str, spaces: &[String]| {
        params
            .filter(name)
            .is_none_or(|values| values.iter().any(|v| spaces.contains(v)))
    };
    has("guids", &g.guid)
        && has("names", &g.name)
        && flag("globally_enabled_running", g.running)
        && flag("globally_enabled_staging", g.staging)
        && bound("running_space_guids", &g.running_spaces)
        && bound("staging_space_guids", &g.staging_spaces)
}

/// One page of groups, in CF's list envelope.
async fn page(
    api: &Api,
    access: &Access,
    raw: Option<&str>,
    path: &str,
    filters: &[&str],
    keep: impl Fn(&SecurityGroup) -> bool,
) -> ApiResult<Response> {
    let params = ListParams::parse(raw, filters, &[])?;
    let mut c = api.inner.pool.acquire().await?;
    let mut q = Query::new();
    if let Some((field, desc)) = &params.order {
        q = q.order(field, *desc);
    }
    let groups: Vec<SecurityGroup> = store::find(&mut c, &q)
        .await?
        .into_iter()
        .filter(|g| keep(g) && matches_filters(g, &params))
        .collect();
    let base = &api.inner.config.external_url;
    let resources = params
        .slice(&groups)
        .iter()
        .map(|g| g.json(base, access))
        .collect();
    Ok(ok(params.envelope(
        api,
        path,
        groups.len() as u64,
        resources,
    )))
}

/// `GET /v3/security_groups`.
async fn list(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    page(
        &api,
        &access,
        raw.as_deref(),
        "/v3/security_groups",
        FILTERS,
        |g| g.visible_to(&access),
    )
    .await
}

/// `GET /v3/spaces/:guid/{running,staging}_security_groups` (the space's
/// visibility was checked by the authorization layer).
async fn space_groups(
    api: &Api,
    access: &Access,
    space: &str,
    raw: Option<&str>,
    lifecycle: Lifecycle,
) -> ApiResult<Response> {
    crate::http::require::<Space>(api, space).await?;
    let kind = match lifecycle {
        Lifecycle::Running => "running",
        Lifecycle::Staging => "staging",
    };
    let path = format!("/v3/spaces/{space}/{kind}_security_groups");
    page(api, access, raw, &path, &["guids", "names"], |g| {
        g.applies(space, lifecycle)
    })
    .await
}

async fn space_running(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    space_groups(&api, &access, &guid, raw.as_deref(), Lifecycle::Running).await
}

async fn space_staging(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    space_groups(&api, &access, &guid, raw.as_deref(), Lifecycle::Staging).await
}

/// `GET /v3/security_groups/:guid`.
async fn show_one(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let group = visible(&mut c, &access, &guid).await?;
    Ok(ok(group.json(&api.inner.config.external_url, &access)))
}

/// A JSON object body, or CF's parse errors.
fn object_body(body: &[u8]) -> ApiResult<serde_json::Map<String, Value>> {
    let value: Value = crate::http::parse_json(body)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::MessageParse("invalid request body".into())),
    }
}

/// `Unknown field(s): 'a', 'b'` for keys outside `allowed`.
fn unknown_keys(body: &serde_json::Map<String, Value>, allowed: &[&str]) -> Option<String> {
    let unknown: Vec<String> = body
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("'{k}'"))
        .collect();
    (!unknown.is_empty()).then(|| format!("Unknown field(s): {}", unknown.join(", ")))
}

/// Checks `name`, `globally_enabled` and `rules` of a create or update;
/// returns the (running, staging) switches asked for.
fn validate_fields(
    body: &serde_json::Map<String, Value>,
    name_required: bool,
    errors: &mut Vec<String>,
) -> (Option<bool>, Option<bool>) {
    match body.get("name") {
        None | Some(Value::Null) if name_required => errors.push("Name can't be blank".into()),
        None => {}
        Some(Value::String(n)) if n.trim().is_empty() => errors.push("Name can't be blank".into()),
        Some(Value::String(n)) if n.chars().count() > MAX_NAME => {
            errors.push(format!(
                "Name is too long (maximum is {MAX_NAME} characters)"
            ));
        }
        Some(Value::String(_)) => {}
        Some(_) => errors.push("Name must be a string".into()),
    }
    let mut switches = (None, None);
    match body.get("globally_enabled") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ge)) => {
            if ge.keys().any(|k| k != "running" && k != "staging") {
                errors.push("Globally enabled only allows keys 'running' or 'staging'".into());
            } else if ge.values().any(|v| !v.is_boolean()) {
                errors.push("Globally enabled values must be booleans".into());
            } else {
                switches = (
                    ge.get("running").and_then(Value::as_bool),
                    ge.get("staging").and_then(Value::as_bool),
                );
            }
        }
        Some(_) => errors.push("Globally enabled must be an object".into()),
    }
    if let Some(rules) = body.get("rules") {
        if let Err(e) = validate_rules(rules) {
            errors.extend(e);
        }
    }
    switches
}

/// The guids of a to-many relationship `{"data": [{"guid": …}]}`.
fn to_many(value: Option<&Value>, what: &str, errors: &mut Vec<String>) -> Vec<String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Vec::new();
    };
    let guids: Option<Vec<String>> = value["data"].as_array().and_then(|items| {
        items
            .iter()
            .map(|i| i["guid"].as_str().map(str::to_string))
            .collect()
    });
    match guids {
        Some(g) => g,
        None => {
            errors.push(format!("{what} must be a to-many relationship"));
            Vec::new()
        }
    }
}

/// `["a", "b"]`, as Ruby prints a list of guids in CF's messages.
fn ruby_list(guids: &[String]) -> String {
    let quoted: Vec<String> = guids.iter().map(|g| format!("\"{g}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// `POST /v3/security_groups` (admins).
async fn create(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> ApiResult<Response> {
    if !access.is_admin() {
        return Err(ApiError::NotAuthorized);
    }
    let body = object_body(&body)?;
    let mut errors = Vec::new();
    if let Some(e) = unknown_keys(
        &body,
        &["name", "globally_enabled", "relationships", "rules"],
    ) {
        errors.push(e);
    }
    let (running, staging) = validate_fields(&body, true, &mut errors);
    let rel = body.get("relationships");
    let running_spaces = to_many(
        rel.and_then(|r| r.get("running_spaces")),
        "Running spaces",
        &mut errors,
    );
    let staging_spaces = to_many(
        rel.and_then(|r| r.get("staging_spaces")),
        "Staging spaces",
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable(errors.join(", ")));
    }
    let name = body["name"].as_str().unwrap_or_default().to_string();
    let mut tx = store::begin(&api.inner.pool).await?;
    if store::find_one::<SecurityGroup>(&mut tx, &Query::new().eq("name", &name))
        .await?
        .is_some()
    {
        return Err(ApiError::Unprocessable(format!(
            "Security group with name '{name}' already exists."
        )));
    }
    let mut missing = Vec::new();
    for guid in running_spaces.iter().chain(staging_spaces.iter()) {
        if store::get::<Space>(&mut tx, guid).await?.is_none() && !missing.contains(guid) {
            missing.push(guid.clone());
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "Spaces with guids {} do not exist.",
            ruby_list(&missing)
        )));
    }
    let at = now();
    let group = SecurityGroup {
        guid: new_guid(),
        name,
        rules: body
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        running: running.unwrap_or(false),
        staging: staging.unwrap_or(false),
        running_spaces: dedup(running_spaces),
        staging_spaces: dedup(staging_spaces),
        created_at: at.clone(),
        updated_at: at,
    };
    store::insert(&mut tx, &group).await?;
    tx.commit().await?;
    push_after(&api, None, Some(&group)).await?;
    Ok(created(group.json(&api.inner.config.external_url, &access)))
}

fn dedup(mut guids: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    guids.retain(|g| seen.insert(g.clone()));
    guids
}

/// `PATCH /v3/security_groups/:guid` (admins).
async fn update(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let before = visible(&mut tx, &access, &guid).await?;
    if !access.is_admin() {
        return Err(ApiError::NotAuthorized);
    }
    let body = object_body(&body)?;
    let mut errors = Vec::new();
    if let Some(e) = unknown_keys(&body, &["name", "globally_enabled", "rules"]) {
        errors.push(e);
    }
    let (running, staging) = validate_fields(&body, false, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable(errors.join(", ")));
    }
    let mut group = before.clone();
    if let Some(name) = body.get("name").and_then(Value::as_str) {
        if name != group.name
            && store::find_one::<SecurityGroup>(&mut tx, &Query::new().eq("name", name))
                .await?
                .is_some()
        {
            return Err(ApiError::Unprocessable(format!(
                "Security group with name '{name}' already exists."
            )));
        }
        group.name = name.to_string();
    }
    if let Some(rules) = body.get("rules").and_then(Value::as_array) {
        group.rules = rules.clone();
    }
    if let Some(r) = running {
        group.running = r;
    }
    if let Some(s) = staging {
        group.staging = s;
    }
    group.updated_at = now();
    store::put(&mut tx, &group).await?;
    tx.commit().await?;
    push_after(&api, Some(&before), Some(&group)).await?;
    Ok(ok(group.json(&api.inner.config.external_url, &access)))
}

/// `DELETE /v3/security_groups/:guid` (admins), as a job.
async fn destroy(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let group = visible(&mut tx, &access, &guid).await?;
    if !access.is_admin() {
        return Err(ApiError::NotAuthorized);
    }
    store::delete::<SecurityGroup>(&mut tx, &guid).await?;
    let job = Job::completed("security_group.delete", None);
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    push_after(&api, Some(&group), None).await?;
    Ok(accepted_job(&api, &job.guid))
}

/// The lifecycle a relationship path names.
fn lifecycle(name: &str) -> ApiResult<Lifecycle> {
    match name {
        "running_spaces" => Ok(Lifecycle::Running),
        "staging_spaces" => Ok(Lifecycle::Staging),
        _ => Err(ApiError::UnknownRequest),
    }
}

/// Whether the user may bind groups to the space or unbind them: admins,
/// the space's managers and its organization's managers.
fn may_change_space(access: &Access, space: &Space) -> bool {
    access.can_manage_space(&space.guid, &space.org_guid)
}

/// `POST /v3/security_groups/:guid/relationships/{running,staging}_spaces`.
async fn bind(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path((guid, rel)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let lifecycle = lifecycle(&rel)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let before = visible(&mut tx, &access, &guid).await?;
    let body: Value = crate::http::parse_json(&body)?;
    let mut errors = Vec::new();
    let guids = if body.get("data").is_some() {
        to_many(Some(&body), "Data", &mut errors)
    } else {
        errors.push("Data must be an array".into());
        Vec::new()
    };
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable(errors.join(", ")));
    }
    let mut invalid = Vec::new();
    for space_guid in &guids {
        match store::get::<Space>(&mut tx, space_guid).await? {
            Some(space) if access.can_read_space(&space.guid) => {
                if !may_change_space(&access, &space) {
                    return Err(ApiError::NotAuthorized);
                }
            }
            _ => invalid.push(space_guid.clone()),
        }
    }
    if !invalid.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "Spaces with guids {} do not exist, or you do not have access to them.",
            ruby_list(&invalid)
        )));
    }
    let mut group = before.clone();
    let list = match lifecycle {
        Lifecycle::Running => &mut group.running_spaces,
        Lifecycle::Staging => &mut group.staging_spaces,
    };
    for g in guids {
        if !list.contains(&g) {
            list.push(g);
        }
    }
    let data: Vec<Value> = list.iter().map(|s| json!({"guid": s})).collect();
    group.updated_at = now();
    store::put(&mut tx, &group).await?;
    tx.commit().await?;
    if lifecycle == Lifecycle::Running {
        push_after(&api, Some(&before), Some(&group)).await?;
    }
    Ok(ok(json!({
        "data": data,
        "links": {"self": {"href": api.url(&format!("/v3/security_groups/{guid}/relationships/{rel}"))}},
    })))
}

/// `DELETE /v3/security_groups/:guid/relationships/{running,staging}_spaces/:space_guid`.
async fn unbind(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path((guid, rel, space_guid)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let lifecycle = lifecycle(&rel)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut group = visible(&mut tx, &access, &guid).await?;
    let unbindable = || {
        ApiError::Unprocessable(format!(
            "Unable to unbind security group from space with guid '{space_guid}'. Ensure the space is bound to this security group."
        ))
    };
    let space = store::get::<Space>(&mut tx, &space_guid)
        .await?
        .ok_or_else(unbindable)?;
    if !may_change_space(&access, &space) {
        return Err(ApiError::NotAuthorized);
    }
    let list = match lifecycle {
        Lifecycle::Running => &mut group.running_spaces,
        Lifecycle::Staging => &mut group.staging_spaces,
    };
    let Some(pos) = list.iter().position(|s| *s == space_guid) else {
        return Err(unbindable());
    };
    list.remove(pos);
    group.updated_at = now();
    store::put(&mut tx, &group).await?;
    tx.commit().await?;
    if lifecycle == Lifecycle::Running {
        push_running_rules(&api, Some(BTreeSet::from([space_guid]))).await?;
    }
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_as_cf_accepts_them() {
        let rule = parse_rule(&json!({"protocol": "tcp", "destination": "10.0.0.5/24,192.168.1.1-192.168.1.9", "ports": "80,443", "log": true}))
            .expect("valid");
        assert_eq!(
            rule.destinations,
            vec![
                IpRange {
                    start: Ipv4Addr::new(10, 0, 0, 0),
                    end: Ipv4Addr::new(10, 0, 0, 255)
                },
                IpRange {
                    start: Ipv4Addr::new(192, 168, 1, 1),
                    end: Ipv4Addr::new(192, 168, 1, 9)
                },
            ]
        );
        assert_eq!(
            rule.ports,
            vec![
                PortRange { start: 80, end: 80 },
                PortRange {
                    start: 443,
                    end: 443
                }
            ]
        );
        assert!(rule.log);
        let range = parse_rule(
            &json!({"protocol": "udp", "destination": "0.0.0.0/0", "ports": "1000-2000"}),
        )
        .expect("valid");
        assert_eq!(
            range.ports,
            vec![PortRange {
                start: 1000,
                end: 2000
            }]
        );
        let icmp = parse_rule(
            &json!({"protocol": "icmp", "destination": "10.0.0.1", "type": 8, "code": -1}),
        )
        .expect("valid");
        assert_eq!((icmp.icmp_type, icmp.icmp_code), (Some(8), Some(-1)));
        assert!(parse_rule(&json!({"protocol": "all", "destination": "1.2.3.4"})).is_ok());
    }

    #[test]
    fn bad_rules_get_cf_messages() {
        let cases = [
            (json!({"protocol": "sctp", "destination": "1.2.3.4"}), "protocol must be 'tcp', 'udp', 'icmp', 'icmpv6' or 'all'"),
            (json!({"protocol": "all", "destination": "10.0.0.0/33"}), "destination must contain valid CIDR(s), IP address(es), or IP address range(s)"),
            (json!({"protocol": "all", "destination": "010.0.0.1"}), "destination octets cannot contain leading zeros"),
            (json!({"protocol": "all", "destination": "10.0.0.9-10.0.0.1"}), "beginning of IP address range is numerically greater than the end of its range (range endpoints are inverted)"),
            (json!({"protocol": "all", "destination": "1.2.3.4", "ports": "80"}), "ports are not allowed for protocols of type all"),
            (json!({"protocol": "tcp", "destination": "1.2.3.4", "ports": "0"}), "ports must be a valid single port, comma separated list of ports, or range or ports, formatted as a string"),
            (json!({"protocol": "tcp", "destination": "1.2.3.4", "ports": "90-80"}), "ports must be a valid single port, comma separated list of ports, or range or ports, formatted as a string"),
            (json!({"protocol": "tcp", "destination": "1.2.3.4"}), "ports are required for protocols of type TCP and UDP"),
            (json!({"protocol": "icmp", "destination": "1.2.3.4", "code": 0}), "type is required for protocols of type ICMP"),
            (json!({"protocol": "all", "destination": "1.2.3.4 "}), "destination must not contain whitespace"),
            (json!({"protocol": "all", "destination": "::1"}), "destination must contain valid CIDR(s), IP address(es), or IP address range(s)"),
            (json!({"protocol": "all", "destination": "1.2.3.4", "bogus": 1}), "unknown field(s): [\"bogus\"]"),
        ];
        for (rule, message) in cases {
            let errs = parse_rule(&rule).expect_err(&rule.to_string());
            assert!(errs.iter().any(|e| e == message), "{rule}: {errs:?}");
        }
        let errs = validate_rules(&json!([{"protocol": "all", "destination": "1.2.3.4"}, {"protocol": "x", "destination": "1.2.3.4"}]))
            .expect_err("second is bad");
        assert_eq!(
            errs,
            vec!["Rules[1]: protocol must be 'tcp', 'udp', 'icmp', 'icmpv6' or 'all'".to_string()]
        );
    }

    #[test]
    fn default_public_networks_leave_out_private_ranges() {
        let inside = |ip: Ipv4Addr, ranges: &[&str]| {
            ranges.iter().any(|r| {
                let range = parse_destination(r).expect("range");
                range.start <= ip && ip <= range.end
            })
        };
        let public = [
            "1.0.0.0-9.255.255.255",
            "11.0.0.0-126.255.255.255",
            "128.0.0.0-169.253.255.255",
            "169.255.0.0-172.15.255.255",
            "172.32.0.0-192.167.255.255",
            "192.169.0.0-255.255.255.255",
        ];
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "127.0.0.1",
            "0.1.2.3",
        ] {
            assert!(!inside(private.parse().expect("ip"), &public), "{private}");
        }
        for open in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "200.1.1.1", "128.0.0.1"] {
            assert!(inside(open.parse().expect("ip"), &public), "{open}");
        }
    }
}
