//! Organizations, spaces, users and roles: what `create-org`, `create-space`,
//! `create-user`, `set-org-role`, `set-space-role` and their opposites send.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{join, Client};
use crate::error::{ClientError, Result};
use crate::resources::{Organization, Space};

/// A user as `/v3/users` shows it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct User {
    /// Its guid (the token server's user id).
    pub guid: String,
    /// Its name.
    #[serde(default)]
    pub username: Option<String>,
}

/// A role as `/v3/roles` shows it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Role {
    /// Its guid.
    pub guid: String,
    /// e.g. `space_developer`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whom it is given to.
    #[serde(default)]
    pub relationships: RoleRelationships,
}

/// A role's user.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RoleRelationships {
    /// The user.
    #[serde(default)]
    pub user: crate::resources::ToOne,
}

/// Where a role applies.
#[derive(Debug, Clone, Copy)]
pub enum RoleTarget<'a> {
    /// An organization, by guid.
    Org(&'a str),
    /// A space, by guid.
    Space(&'a str),
}

impl Client {
    /// `POST /v3/organizations`.
    pub async fn create_organization(&self, name: &str) -> Result<Organization> {
        self.send_json(Method::POST, "/v3/organizations", &json!({"name": name}))
            .await
    }

    /// `POST /v3/spaces` in an organization.
    pub async fn create_space(&self, org_guid: &str, name: &str) -> Result<Space> {
        self.send_json(
            Method::POST,
            "/v3/spaces",
            &json!({"name": name, "relationships": {"organization": {"data": {"guid": org_guid}}}}),
        )
        .await
    }

    /// Creates an account on the token server (`POST {uaa}/Users`, SCIM),
    /// then makes it known to the API (`POST /v3/users`); returns its guid.
    pub async fn create_user(&self, username: &str, password: &str) -> Result<String> {
        let url = join(&self.endpoints().uaa, "/Users");
        let created: Value = self
            .send_json(
                Method::POST,
                &url,
                &json!({
                    "userName": username,
                    "password": password,
                    "origin": "uaa",
                    "emails": [{"value": username, "primary": true}],
                }),
            )
            .await?;
        let guid = created["id"]
            .as_str()
            .ok_or_else(|| ClientError::Unexpected {
                method: "POST".into(),
                url: url.clone(),
                status: 201,
                body: "the token server's answer has no user id".into(),
            })?
            .to_string();
        let _: User = self
            .send_json(Method::POST, "/v3/users", &json!({"guid": guid}))
            .await?;
        Ok(guid)
    }

    /// Deletes a user from the API and from the token server.
    pub async fn delete_user(&self, guid: &str) -> Result<()> {
        self.send_empty(Method::DELETE, &format!("/v3/users/{guid}"), None)
            .await?;
        let url = join(&self.endpoints().uaa, &format!("/Users/{guid}"));
        self.send_empty(Method::DELETE, &url, None).await?;
        Ok(())
    }

    /// The API's user of this name, if any.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        let users: Vec<User> = self
            .list_all("/v3/users", &[("usernames", username)])
            .await?;
        Ok(users.into_iter().next())
    }

    /// Gives `username` the role `kind` (e.g. `organization_manager`,
    /// `space_developer`). Giving a role the user already has is not an
    /// error, as with cf.
    pub async fn set_role(&self, username: &str, kind: &str, target: RoleTarget<'_>) -> Result<()> {
        let (relation, guid) = match target {
            RoleTarget::Org(g) => ("organization", g),
            RoleTarget::Space(g) => ("space", g),
        };
        let body = json!({
            "type": kind,
            "relationships": {
                "user": {"data": {"username": username, "origin": "uaa"}},
                relation: {"data": {"guid": guid}},
            }
        });
        match self
            .send_json::<Value>(Method::POST, "/v3/roles", &body)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(422) && e.to_string().contains("already has") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The roles in an organization or a space, with their users.
    pub async fn roles(&self, target: RoleTarget<'_>) -> Result<Vec<(Role, Option<String>)>> {
        let filter = match target {
            RoleTarget::Org(g) => ("organization_guids", g),
            RoleTarget::Space(g) => ("space_guids", g),
        };
        let roles: Vec<Role> = self.list_all("/v3/roles", &[filter]).await?;
        let mut out = Vec::new();
        for role in roles {
            let guid = role
                .relationships
                .user
                .data
                .as_ref()
                .map(|d| d.guid.clone());
            let name = match guid {
                Some(g) => {
                    let user: User = self.get_json(&format!("/v3/users/{g}")).await?;
                    user.username
                }
                None => None,
            };
            out.push((role, name));
        }
        Ok(out)
    }

    /// Takes the role `kind` from `username`; not having it is not an error.
    pub async fn unset_role(
        &self,
        username: &str,
        kind: &str,
        target: RoleTarget<'_>,
    ) -> Result<()> {
        let Some(user) = self.user_by_name(username).await? else {
            return Ok(());
        };
        let filter = match target {
            RoleTarget::Org(g) => ("organization_guids", g),
            RoleTarget::Space(g) => ("space_guids", g),
        };
        let roles: Vec<Role> = self
            .list_all(
                "/v3/roles",
                &[filter, ("types", kind), ("user_guids", &user.guid)],
            )
            .await?;
        for role in roles {
            self.send_empty(Method::DELETE, &format!("/v3/roles/{}", role.guid), None)
                .await?;
        }
        Ok(())
    }
}
