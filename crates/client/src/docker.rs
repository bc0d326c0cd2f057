//! Pushing a Docker image instead of source, as `cf push --docker-image`
//! does: the app is created with the `docker` lifecycle, a `docker` package
//! names the image (and the registry credentials), and its build stages
//! without buildpacks.
//!
//! The image comes from `--docker-image` / `--docker-username`, or from the
//! manifest's `docker: {image, username}`; the password is never a flag or in
//! a manifest: it is read from `CF_DOCKER_PASSWORD`, as cf reads it.

use reqwest::Method;
use serde_yaml::Value;

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::manifest::PushPlan;
use crate::resources::{App, Package};

/// The environment variable holding the registry password.
pub const PASSWORD_VARIABLE: &str = "CF_DOCKER_PASSWORD";

/// The image to push and the registry credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct DockerPush {
    /// The image reference, e.g. `registry.example.com:5000/team/web:1`.
    pub image: String,
    /// The registry user name.
    pub username: Option<String>,
    /// The registry password (from [`PASSWORD_VARIABLE`]).
    pub password: Option<String>,
}

impl std::fmt::Debug for DockerPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerPush")
            .field("image", &self.image)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Takes the `docker` section out of the push plan's manifest (the API
/// applies the rest) and combines it with the flags, which win. Returns
/// `None` for a source push. `password` is the value of
/// [`PASSWORD_VARIABLE`], if set.
pub fn take_docker_push(
    plan: &mut PushPlan,
    image_flag: Option<&str>,
    username_flag: Option<&str>,
    password: Option<String>,
) -> Result<Option<DockerPush>> {
    let invalid = |detail: &str| ClientError::Invalid {
        what: "docker image".into(),
        detail: detail.into(),
    };
    let section = plan.app.remove(Value::String("docker".into()));
    let field = |name: &str| {
        section
            .as_ref()
            .and_then(|s| s.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if section.is_some() {
        plan.manifest_yaml = render(plan)?;
    }
    let image = image_flag.map(str::to_string).or_else(|| field("image"));
    let username = username_flag
        .map(str::to_string)
        .or_else(|| field("username"));
    let Some(image) = image.filter(|i| !i.trim().is_empty()) else {
        if username.is_some() {
            return Err(invalid(
                "--docker-username (or docker.username) needs --docker-image (or docker.image)",
            ));
        }
        return Ok(None);
    };
    let password = password.filter(|p| !p.is_empty());
    if username.is_some() && password.is_none() {
        return Err(invalid(&format!(
            "set the registry password in the environment variable {PASSWORD_VARIABLE}"
        )));
    }
    Ok(Some(DockerPush {
        image: image.trim().to_string(),
        // Without a user name a password means nothing to a registry.
        password: username.as_ref().and(password),
        username,
    }))
}

/// The plan's app as a one-app manifest document.
fn render(plan: &PushPlan) -> Result<String> {
    let mut doc = serde_yaml::Mapping::new();
    doc.insert(
        Value::String("applications".into()),
        Value::Sequence(vec![Value::Mapping(plan.app.clone())]),
    );
    serde_yaml::to_string(&Value::Mapping(doc)).map_err(|e| ClientError::Invalid {
        what: "manifest".into(),
        detail: e.to_string(),
    })
}

impl Client {
    /// Creates an app with the `docker` lifecycle.
    pub async fn create_docker_app(&self, space_guid: &str, name: &str) -> Result<App> {
        let body = serde_json::json!({
            "name": name,
            "relationships": {"space": {"data": {"guid": space_guid}}},
            "lifecycle": {"type": "docker", "data": {}},
        });
        self.send_json(Method::POST, "/v3/apps", &body).await
    }

    /// Creates a `docker` package for an app (`READY` at once).
    pub async fn create_docker_package(
        &self,
        app_guid: &str,
        push: &DockerPush,
    ) -> Result<Package> {
        let mut data = serde_json::json!({"image": push.image});
        if let (Some(username), Some(password)) = (&push.username, &push.password) {
            data["username"] = username.clone().into();
            data["password"] = password.clone().into();
        }
        let body = serde_json::json!({
            "type": "docker",
            "relationships": {"app": {"data": {"guid": app_guid}}},
            "data": data,
        });
        self.send_json(Method::POST, "/v3/packages", &body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{plan_push, PushFlags};

    fn plan(manifest: Option<&str>) -> PushPlan {
        let flags = PushFlags {
            name: Some("web".into()),
            ..PushFlags::default()
        };
        let dir = std::env::temp_dir();
        plan_push(&flags, manifest.map(|m| (m, dir.as_path())), &dir).expect("plan")
    }

    #[test]
    fn flags_make_a_docker_push_and_the_password_comes_from_the_environment() {
        let mut p = plan(None);
        let push = take_docker_push(
            &mut p,
            Some("127.0.0.1:5000/team/web:1"),
            Some("deployer"),
            Some("s3cret".into()),
        )
        .expect("valid")
        .expect("a docker push");
        assert_eq!(push.image, "127.0.0.1:5000/team/web:1");
        assert_eq!(push.username.as_deref(), Some("deployer"));
        assert_eq!(push.password.as_deref(), Some("s3cret"));
        assert!(!format!("{push:?}").contains("s3cret"));
    }

    #[test]
    fn the_manifest_docker_section_is_used_and_not_sent_to_the_api() {
        let manifest = "applications:\n- name: web\n  instances: 2\n  docker:\n    image: busybox:1\n    username: reader\n";
        let mut p = plan(Some(manifest));
        let push = take_docker_push(&mut p, None, None, Some("pw".into()))
            .expect("valid")
            .expect("a docker push");
        assert_eq!(push.image, "busybox:1");
        assert_eq!(push.username.as_deref(), Some("reader"));
        assert!(!p.manifest_yaml.contains("docker"), "{}", p.manifest_yaml);
        assert!(
            p.manifest_yaml.contains("instances: 2"),
            "{}",
            p.manifest_yaml
        );
        let flag_wins = take_docker_push(&mut plan(Some(manifest)), Some("other:2"), None, None);
        // The manifest's username still asks for a password.
        assert!(flag_wins.is_err());
    }

    #[test]
    fn a_user_name_without_a_password_or_an_image_is_refused() {
        let err = take_docker_push(&mut plan(None), Some("busybox"), Some("u"), None)
            .expect_err("no password");
        assert!(err.to_string().contains(PASSWORD_VARIABLE), "{err}");
        assert!(take_docker_push(&mut plan(None), None, Some("u"), Some("p".into())).is_err());
        assert_eq!(
            take_docker_push(&mut plan(None), None, None, None).expect("source push"),
            None
        );
    }

    #[test]
    fn a_password_without_a_user_name_is_not_sent() {
        let push = take_docker_push(&mut plan(None), Some("busybox"), None, Some("p".into()))
            .expect("valid")
            .expect("docker");
        assert_eq!(push.password, None);
    }
}
