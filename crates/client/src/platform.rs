//! Platform-wide listings and copying an app's source: what `stacks`,
//! `stack`, `buildpacks` and `copy-source` send.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::Client;
use crate::error::Result;
use crate::resources::Package;

/// A stack (root file system apps run on).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Stack {
    /// Its guid.
    pub guid: String,
    /// Its name, e.g. `cflinuxfs4`.
    #[serde(default)]
    pub name: String,
    /// What it is.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether apps that name none get it.
    #[serde(default)]
    pub default: bool,
}

/// An admin buildpack, with what `buildpacks` shows.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct BuildpackInfo {
    /// Its guid.
    pub guid: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its place in detection order, from 1.
    #[serde(default)]
    pub position: Option<u32>,
    /// The stack it is for; none means any.
    #[serde(default)]
    pub stack: Option<String>,
    /// Whether detection uses it.
    #[serde(default)]
    pub enabled: bool,
    /// Whether it may not be changed.
    #[serde(default)]
    pub locked: bool,
    /// `AWAITING_UPLOAD`, `READY`, …
    #[serde(default)]
    pub state: String,
    /// The uploaded file's name.
    #[serde(default)]
    pub filename: Option<String>,
}

/// A package with its creation time (to find an app's newest).
#[derive(Debug, Clone, Default, Deserialize)]
struct DatedPackage {
    guid: String,
    #[serde(default)]
    created_at: String,
}

impl Client {
    /// Every stack, by name.
    pub async fn stacks(&self, name: Option<&str>) -> Result<Vec<Stack>> {
        let mut params = vec![("order_by", "name")];
        if let Some(n) = name {
            params.push(("names", n));
        }
        let mut stacks: Vec<Stack> = self.list_all("/v3/stacks", &params).await?;
        stacks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(stacks)
    }

    /// Every admin buildpack, in detection order.
    pub async fn buildpack_infos(&self) -> Result<Vec<BuildpackInfo>> {
        let mut found: Vec<BuildpackInfo> = self
            .list_all("/v3/buildpacks", &[("order_by", "position")])
            .await?;
        found.sort_by_key(|b| b.position.unwrap_or(u32::MAX));
        Ok(found)
    }

    /// The guid of an app's newest READY package, if it has one.
    pub async fn newest_ready_package(&self, app_guid: &str) -> Result<Option<String>> {
        let packages: Vec<DatedPackage> = self
            .list_all(
                &format!("/v3/apps/{app_guid}/packages"),
                &[("states", "READY")],
            )
            .await?;
        Ok(packages
            .into_iter()
            .max_by(|a, b| a.created_at.cmp(&b.created_at))
            .map(|p| p.guid))
    }

    /// Copies a package into another app (any space the user may write):
    /// `POST /v3/packages?source_guid=…`.
    pub async fn copy_package(&self, source_guid: &str, dest_app_guid: &str) -> Result<Package> {
        let url = format!("/v3/packages?source_guid={}", urlencode(source_guid));
        self.send_json(
            Method::POST,
            &url,
            &json!({"relationships": {"app": {"data": {"guid": dest_app_guid}}}}),
        )
        .await
    }
}

/// Percent-encodes a query value (guids need none, but a typo might).
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(urlencode("abc-123"), "abc-123");
        assert_eq!(urlencode("a b&c"), "a%20b%26c");
    }

    #[test]
    fn buildpacks_parse_from_the_docs_shape() {
        let b: BuildpackInfo = serde_json::from_value(json!({
            "guid": "b", "name": "ruby_buildpack", "state": "READY", "filename": "ruby.zip",
            "stack": "cflinuxfs4", "position": 1, "enabled": true, "locked": false
        }))
        .expect("parses");
        assert_eq!(b.position, Some(1));
        assert_eq!(b.stack.as_deref(), Some("cflinuxfs4"));
    }
}
