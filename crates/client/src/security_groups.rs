//! Security groups: what `security-groups`, `create-security-group`,
//! `bind-security-group`, `bind-running-security-group` and their siblings
//! send (`/v3/security_groups`), and the check of a rules file before it is
//! sent, so that a typo is reported with the rule that has it.

use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::quotas::ToMany;

/// The two lifecycles a security group applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Running app instances and tasks.
    Running,
    /// Staging containers.
    Staging,
}

impl Lifecycle {
    /// `running` or `staging`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Running => "running",
            Lifecycle::Staging => "staging",
        }
    }
}

/// A security group.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SecurityGroup {
    /// Its guid.
    pub guid: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its rules, as the API gives them.
    #[serde(default)]
    pub rules: Vec<Value>,
    /// Whether it applies to every space.
    #[serde(default)]
    pub globally_enabled: GloballyEnabled,
    /// The spaces it is bound to.
    #[serde(default)]
    pub relationships: SecurityGroupSpaces,
}

/// `globally_enabled` of a security group.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
pub struct GloballyEnabled {
    /// For running apps everywhere.
    #[serde(default)]
    pub running: bool,
    /// For staging everywhere.
    #[serde(default)]
    pub staging: bool,
}

/// The spaces a security group is bound to.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SecurityGroupSpaces {
    /// For running apps.
    #[serde(default)]
    pub running_spaces: ToMany,
    /// For staging.
    #[serde(default)]
    pub staging_spaces: ToMany,
}

impl SecurityGroup {
    /// Whether it applies globally to `lifecycle`.
    pub fn global(&self, lifecycle: Lifecycle) -> bool {
        match lifecycle {
            Lifecycle::Running => self.globally_enabled.running,
            Lifecycle::Staging => self.globally_enabled.staging,
        }
    }

    /// The spaces it is bound to for `lifecycle`.
    pub fn spaces(&self, lifecycle: Lifecycle) -> Vec<&str> {
        match lifecycle {
            Lifecycle::Running => self.relationships.running_spaces.guids(),
            Lifecycle::Staging => self.relationships.staging_spaces.guids(),
        }
    }
}

/// What is wrong with a rules file, naming the rule (from 1) and field.
fn bad_rules(path: &str, detail: String) -> ClientError {
    ClientError::Invalid {
        what: format!("the security group rules in {path}"),
        detail,
    }
}

/// Checks the text of a rules file (a JSON array of rule objects, as cf
/// takes it) and returns the rules to send. `path` names the file in errors.
pub fn parse_rules(path: &str, text: &str) -> Result<Value> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| bad_rules(path, format!("not valid JSON: {e}")))?;
    let Some(rules) = value.as_array() else {
        return Err(bad_rules(
            path,
            "must be a JSON array of rules, e.g. [{\"protocol\":\"tcp\",\"destination\":\"10.0.0.0/24\",\"ports\":\"443\"}]".into(),
        ));
    };
    for (i, rule) in rules.iter().enumerate() {
        let n = i + 1;
        let Some(obj) = rule.as_object() else {
            return Err(bad_rules(path, format!("rule {n} is not a JSON object")));
        };
        let protocol = obj.get("protocol").and_then(Value::as_str).ok_or_else(|| {
            bad_rules(
                path,
                format!("rule {n} has no protocol (tcp, udp, icmp, icmpv6 or all)"),
            )
        })?;
        if !matches!(protocol, "tcp" | "udp" | "icmp" | "icmpv6" | "all") {
            return Err(bad_rules(
                path,
                format!(
                    "rule {n}: protocol {protocol:?} is not one of tcp, udp, icmp, icmpv6, all"
                ),
            ));
        }
        match obj.get("destination").and_then(Value::as_str) {
            Some(d) if !d.trim().is_empty() => {}
            _ => {
                return Err(bad_rules(
                    path,
                    format!("rule {n} has no destination (a CIDR, an IP address or a range)"),
                ))
            }
        }
        if let Some(ports) = obj.get("ports") {
            if !matches!(protocol, "tcp" | "udp") {
                return Err(bad_rules(
                    path,
                    format!("rule {n}: ports are only valid for tcp and udp"),
                ));
            }
            let text = ports.as_str().unwrap_or("");
            if !valid_ports(text) {
                return Err(bad_rules(
                    path,
                    format!("rule {n}: ports {ports} must be a string such as \"443\", \"80,443\" or \"8000-9000\""),
                ));
            }
        }
        for field in ["type", "code"] {
            if let Some(v) = obj.get(field) {
                if !matches!(protocol, "icmp" | "icmpv6") {
                    return Err(bad_rules(
                        path,
                        format!("rule {n}: {field} is only valid for icmp and icmpv6"),
                    ));
                }
                if !v.as_i64().is_some_and(|x| (-1..=255).contains(&x)) {
                    return Err(bad_rules(
                        path,
                        format!("rule {n}: {field} must be a whole number from -1 to 255"),
                    ));
                }
            }
        }
        if let Some(log) = obj.get("log") {
            if !log.is_boolean() {
                return Err(bad_rules(
                    path,
                    format!("rule {n}: log must be true or false"),
                ));
            }
        }
        if let Some(unknown) = obj.keys().find(|k| {
            !matches!(
                k.as_str(),
                "protocol" | "destination" | "ports" | "type" | "code" | "description" | "log"
            )
        }) {
            return Err(bad_rules(
                path,
                format!("rule {n}: unknown field {unknown:?}"),
            ));
        }
    }
    Ok(value)
}

/// `443`, `80,443`, `8000-9000`: ports from 1 to 65535.
fn valid_ports(text: &str) -> bool {
    let port = |p: &str| p.trim().parse::<u16>().is_ok_and(|n| n > 0);
    !text.trim().is_empty()
        && text.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => {
                port(a) && port(b) && a.trim().parse::<u16>().ok() <= b.trim().parse::<u16>().ok()
            }
            None => port(part),
        })
}

impl Client {
    /// Every security group the user can see, by name.
    pub async fn security_groups(&self) -> Result<Vec<SecurityGroup>> {
        let mut groups: Vec<SecurityGroup> = self.list_all("/v3/security_groups", &[]).await?;
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    }

    /// The security group of this name, if any.
    pub async fn security_group_by_name(&self, name: &str) -> Result<Option<SecurityGroup>> {
        let found: Vec<SecurityGroup> = self
            .list_all("/v3/security_groups", &[("names", name)])
            .await?;
        Ok(found.into_iter().find(|g| g.name == name))
    }

    /// The groups applied globally to `lifecycle`.
    pub async fn global_security_groups(&self, lifecycle: Lifecycle) -> Result<Vec<SecurityGroup>> {
        let filter = match lifecycle {
            Lifecycle::Running => "globally_enabled_running",
            Lifecycle::Staging => "globally_enabled_staging",
        };
        let mut groups: Vec<SecurityGroup> = self
            .list_all("/v3/security_groups", &[(filter, "true")])
            .await?;
        // Filtered here too, in case a server ignores the parameter.
        groups.retain(|g| g.global(lifecycle));
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    }

    /// Creates a security group with checked `rules` (see [`parse_rules`]).
    pub async fn create_security_group(&self, name: &str, rules: &Value) -> Result<SecurityGroup> {
        self.send_json(
            Method::POST,
            "/v3/security_groups",
            &json!({"name": name, "rules": rules}),
        )
        .await
    }

    /// Replaces a security group's rules.
    pub async fn update_security_group_rules(
        &self,
        guid: &str,
        rules: &Value,
    ) -> Result<SecurityGroup> {
        self.send_json(
            Method::PATCH,
            &format!("/v3/security_groups/{guid}"),
            &json!({"rules": rules}),
        )
        .await
    }

    /// Applies (or stops applying) a group to every space for `lifecycle`.
    pub async fn set_security_group_global(
        &self,
        guid: &str,
        lifecycle: Lifecycle,
        enabled: bool,
    ) -> Result<SecurityGroup> {
        self.send_json(
            Method::PATCH,
            &format!("/v3/security_groups/{guid}"),
            &json!({"globally_enabled": {lifecycle.as_str(): enabled}}),
        )
        .await
    }

    /// Deletes a security group and waits for the job.
    pub async fn delete_security_group(&self, guid: &str, timeout: Duration) -> Result<()> {
        let resp = self
            .send_empty(Method::DELETE, &format!("/v3/security_groups/{guid}"), None)
            .await?;
        self.wait_accepted(resp, timeout).await
    }

    /// Binds a group to spaces for `lifecycle`.
    pub async fn bind_security_group(
        &self,
        guid: &str,
        lifecycle: Lifecycle,
        space_guids: &[String],
    ) -> Result<()> {
        let data: Vec<Value> = space_guids.iter().map(|g| json!({"guid": g})).collect();
        self.send_empty(
            Method::POST,
            &format!(
                "/v3/security_groups/{guid}/relationships/{}_spaces",
                lifecycle.as_str()
            ),
            Some(&json!({ "data": data })),
        )
        .await?;
        Ok(())
    }

    /// Unbinds a group from a space for `lifecycle`.
    pub async fn unbind_security_group(
        &self,
        guid: &str,
        lifecycle: Lifecycle,
        space_guid: &str,
    ) -> Result<()> {
        self.send_empty(
            Method::DELETE,
            &format!(
                "/v3/security_groups/{guid}/relationships/{}_spaces/{space_guid}",
                lifecycle.as_str()
            ),
            None,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        parse_rules("rules.json", text)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn good_rules_pass_unchanged() {
        let text = r#"[
            {"protocol":"tcp","destination":"10.0.0.0/24","ports":"443,80,8000-9000","log":true},
            {"protocol":"icmp","destination":"10.0.0.1","type":8,"code":-1,"description":"ping"},
            {"protocol":"all","destination":"0.0.0.0-9.255.255.255"}
        ]"#;
        let rules = parse_rules("rules.json", text).expect("valid");
        assert_eq!(rules.as_array().map(Vec::len), Some(3));
        assert_eq!(rules[0]["ports"], "443,80,8000-9000");
        assert_eq!(parse_rules("r", "[]").expect("empty is fine"), json!([]));
    }

    #[test]
    fn bad_rules_name_the_file_rule_and_field() {
        let msg = refused("{not json");
        assert!(
            msg.contains("rules.json") && msg.contains("not valid JSON"),
            "{msg}"
        );
        assert!(refused(r#"{"protocol":"tcp"}"#).contains("JSON array"));
        let msg = refused(
            r#"[{"protocol":"tcp","destination":"1.2.3.4"},{"protocol":"tpc","destination":"1.2.3.4"}]"#,
        );
        assert!(msg.contains("rule 2") && msg.contains("\"tpc\""), "{msg}");
        assert!(refused(r#"[{"protocol":"tcp"}]"#).contains("rule 1 has no destination"));
        assert!(refused(r#"[{"destination":"1.2.3.4"}]"#).contains("no protocol"));
        assert!(
            refused(r#"[{"protocol":"icmp","destination":"1.2.3.4","ports":"80"}]"#)
                .contains("only valid for tcp and udp")
        );
        assert!(
            refused(r#"[{"protocol":"tcp","destination":"1.2.3.4","ports":80}]"#)
                .contains("must be a string")
        );
        assert!(
            refused(r#"[{"protocol":"tcp","destination":"1.2.3.4","ports":"9000-80"}]"#)
                .contains("ports")
        );
        assert!(
            refused(r#"[{"protocol":"tcp","destination":"1.2.3.4","ports":"70000"}]"#)
                .contains("ports")
        );
        assert!(
            refused(r#"[{"protocol":"icmp","destination":"1.2.3.4","type":300}]"#)
                .contains("-1 to 255")
        );
        assert!(
            refused(r#"[{"protocol":"tcp","destination":"1.2.3.4","type":1}]"#)
                .contains("only valid for icmp")
        );
        assert!(
            refused(r#"[{"protocol":"tcp","destination":"1.2.3.4","port":"80"}]"#)
                .contains("unknown field \"port\"")
        );
        assert!(
            refused(r#"[{"protocol":"tcp","destination":"1.2.3.4","log":"yes"}]"#)
                .contains("log must be true or false")
        );
    }

    #[test]
    fn groups_parse_from_the_docs_shape() {
        let g: SecurityGroup = serde_json::from_value(json!({
            "guid": "g1", "name": "dns",
            "globally_enabled": {"running": true, "staging": false},
            "rules": [{"protocol": "udp", "destination": "0.0.0.0/0", "ports": "53"}],
            "relationships": {
                "running_spaces": {"data": [{"guid": "s1"}, {"guid": "s2"}]},
                "staging_spaces": {"data": []}
            }
        }))
        .expect("parses");
        assert!(g.global(Lifecycle::Running));
        assert!(!g.global(Lifecycle::Staging));
        assert_eq!(g.spaces(Lifecycle::Running), vec!["s1", "s2"]);
        assert!(g.spaces(Lifecycle::Staging).is_empty());
    }
}
