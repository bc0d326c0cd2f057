//! The HTTP core of the client: the platform's endpoints, the tokens, login
//! and refresh, and one `send` that authenticates a request, refreshes an
//! expired token once and retries, and turns error answers into
//! [`ClientError`]s.

use std::sync::Mutex;

use base64::Engine as _;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, ErrorEnvelope, OAuthErrorBody, Result, CODE_INVALID_AUTH_TOKEN};
use crate::resources::{Page, Root};

/// The platform's parts, as `GET /` links them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// The API (Cloud Controller) URL the user gave, without a trailing `/`.
    pub api: String,
    /// `links.login.href`.
    #[serde(default)]
    pub login: String,
    /// `links.uaa.href`: where tokens are issued.
    #[serde(default)]
    pub uaa: String,
    /// `links.log_cache.href`.
    #[serde(default)]
    pub log_cache: String,
}

/// The OAuth2 tokens of a login.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// The bearer token (a JWT).
    pub access_token: String,
    /// The refresh token, when the server gave one.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Tokens {
    // Tokens are credentials: keep them out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").finish_non_exhaustive()
    }
}

impl Tokens {
    /// The `user_name` claim of the access token, if it is a readable JWT.
    pub fn user_name(&self) -> Option<String> {
        let claims = jwt_claims(&self.access_token)?;
        claims
            .get("user_name")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }
}

/// Decodes the claims of a JWT without verifying it (the client only reads
/// its own token to show the user name).
fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// A client of one platform, for one user.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    endpoints: Endpoints,
    // Behind a lock because a refresh replaces them during `&self` calls.
    tokens: Mutex<Option<Tokens>>,
}

/// Joins a base URL and a path, or keeps `path` when it is already absolute.
pub(crate) fn join(base: &str, path: &str) -> String {
    if path.starts_with("http://") || path.starts_with("https://") {
        path.to_string()
    } else {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }
}

impl Client {
    /// Reads `GET {api_url}/` to learn the platform's endpoints; logs nobody in.
    pub async fn connect(api_url: &str) -> Result<Client> {
        let api = api_url.trim_end_matches('/').to_string();
        let http = http_client();
        let url = join(&api, "/");
        let resp = http
            .get(&url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        let resp = check(Method::GET, &url, resp).await?;
        let root: Root = decode(Method::GET, &url, resp).await?;
        let link = |name: &str| {
            root.links
                .get(name)
                .and_then(|l| l.as_ref())
                .map(|l| l.href.trim_end_matches('/').to_string())
                .unwrap_or_default()
        };
        let mut endpoints = Endpoints {
            api,
            login: link("login"),
            uaa: link("uaa"),
            log_cache: link("log_cache"),
        };
        if endpoints.uaa.is_empty() {
            endpoints.uaa = endpoints.login.clone();
        }
        if endpoints.login.is_empty() {
            endpoints.login = endpoints.uaa.clone();
        }
        if endpoints.uaa.is_empty() {
            return Err(ClientError::Unexpected {
                method: "GET".into(),
                url,
                status: 200,
                body: "the root document links no token server (links.uaa / links.login)".into(),
            });
        }
        Ok(Client::new(endpoints, None))
    }

    /// A client for known endpoints and, optionally, a saved login.
    pub fn new(endpoints: Endpoints, tokens: Option<Tokens>) -> Client {
        Client {
            http: http_client(),
            endpoints,
            tokens: Mutex::new(tokens),
        }
    }

    /// The platform's endpoints.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The current tokens (they change when a refresh happens).
    pub fn tokens(&self) -> Option<Tokens> {
        self.tokens.lock().map(|t| t.clone()).unwrap_or(None)
    }

    fn set_tokens(&self, tokens: Option<Tokens>) {
        if let Ok(mut guard) = self.tokens.lock() {
            *guard = tokens;
        }
    }

    /// Logs in with the password grant of the `cf` client.
    pub async fn login(&self, username: &str, password: &str) -> Result<()> {
        let tokens = self
            .token_request(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ])
            .await?;
        self.set_tokens(Some(tokens));
        Ok(())
    }

    /// Trades the refresh token for new tokens.
    pub async fn refresh(&self) -> Result<()> {
        let refresh = self
            .tokens()
            .and_then(|t| t.refresh_token)
            .ok_or(ClientError::NotLoggedIn)?;
        let mut tokens = self
            .token_request(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
            .await?;
        // UAA may omit a new refresh token; the old one stays valid then.
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(refresh);
        }
        self.set_tokens(Some(tokens));
        Ok(())
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<Tokens> {
        let url = join(&self.endpoints.uaa, "/oauth/token");
        let resp = self
            .http
            .post(&url)
            .basic_auth("cf", Some(""))
            .header("Accept", "application/json")
            .form(form)
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            if let Ok(err) = serde_json::from_str::<OAuthErrorBody>(&body) {
                return Err(ClientError::OAuth {
                    url,
                    status: status.as_u16(),
                    error: err.error,
                    description: err.error_description,
                });
            }
            return Err(error_from_body(Method::POST, &url, status, &body));
        }
        let answer: TokenAnswer = decode(Method::POST, &url, resp).await?;
        Ok(Tokens {
            access_token: answer.access_token,
            refresh_token: answer.refresh_token,
        })
    }

    /// Sends an authenticated request to `url` (absolute, or a path under the
    /// API). `build` adds the body; it may be called twice, because a 401
    /// `CF-InvalidAuthToken` triggers one refresh and one retry.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let url = join(&self.endpoints.api, url);
        let mut refreshed = false;
        loop {
            let token = self
                .tokens()
                .map(|t| t.access_token)
                .ok_or(ClientError::NotLoggedIn)?;
            let req = self
                .http
                .request(method.clone(), &url)
                .header("Authorization", format!("bearer {token}"))
                .header("Accept", "application/json");
            let resp = build(req)
                .send()
                .await
                .map_err(|source| ClientError::Transport {
                    url: url.clone(),
                    source,
                })?;
            match check(method.clone(), &url, resp).await {
                Err(err)
                    if !refreshed
                        && err.status() == Some(401)
                        && err.has_code(CODE_INVALID_AUTH_TOKEN)
                        && self.tokens().and_then(|t| t.refresh_token).is_some() =>
                {
                    refreshed = true;
                    self.refresh().await?;
                }
                other => return other,
            }
        }
    }

    /// `GET` a JSON document.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T> {
        let resp = self.send(Method::GET, url, |r| r).await?;
        decode(Method::GET, url, resp).await
    }

    /// Sends a JSON body and decodes the JSON answer.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<T> {
        let resp = self.send(method.clone(), url, |r| r.json(body)).await?;
        decode(method, url, resp).await
    }

    /// Sends a request whose answer body is not needed (e.g. 202 or 204).
    pub async fn send_empty(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response> {
        self.send(method, url, |r| match body {
            Some(b) => r.json(b),
            None => r,
        })
        .await
    }

    /// Lists every resource of a paginated list, following `next` links.
    pub async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<Vec<T>> {
        let mut url = with_query(&join(&self.endpoints.api, path), params);
        let mut all = Vec::new();
        loop {
            let page: Page<T> = self.get_json(&url).await?;
            all.extend(page.resources);
            match page.pagination.next {
                Some(next) if !next.href.is_empty() && next.href != url => url = next.href,
                _ => return Ok(all),
            }
        }
    }

    /// A raw authenticated request as `cf curl` makes it: the status and the
    /// body are returned whatever the status (errors are the caller's to show).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        headers: &[(String, String)],
    ) -> Result<(u16, String)> {
        let url = join(&self.endpoints.api, path);
        let resp = match self
            .send(method.clone(), &url, |mut r| {
                for (k, v) in headers {
                    r = r.header(k.as_str(), v.as_str());
                }
                let has_type = headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
                match &body {
                    Some(b) if has_type => r.body(b.clone()),
                    Some(b) => r.header("Content-Type", "application/json").body(b.clone()),
                    None => r,
                }
            })
            .await
        {
            Ok(resp) => resp,
            // cf curl prints error bodies too; rebuild the envelope.
            Err(ClientError::Api { status, errors, .. }) => {
                let body = serde_json::json!({ "errors": errors }).to_string();
                return Ok((status, body));
            }
            Err(other) => return Err(other),
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|source| ClientError::Transport {
            url: url.clone(),
            source,
        })?;
        Ok((status, text))
    }
}

fn http_client() -> reqwest::Client {
    // Redirects are not followed: a 302 from the token server is data, and the
    // API never redirects.
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// Appends query parameters to a URL.
pub(crate) fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return url.to_string();
    }
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            {
                let mut pairs = parsed.query_pairs_mut();
                for (k, v) in params {
                    pairs.append_pair(k, v);
                }
            }
            parsed.to_string()
        }
        Err(_) => url.to_string(),
    }
}

/// Passes a successful answer (or a redirect, which is data here: the token
/// server answers a code request with one) through; turns an error answer
/// into a [`ClientError`].
pub(crate) async fn check(method: Method, url: &str, resp: Response) -> Result<Response> {
    let status = resp.status();
    if status.is_success() || status.is_redirection() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(error_from_body(method, url, status, &body))
}

fn error_from_body(method: Method, url: &str, status: StatusCode, body: &str) -> ClientError {
    if let Ok(env) = serde_json::from_str::<ErrorEnvelope>(body) {
        if !env.errors.is_empty() {
            return ClientError::Api {
                method: method.to_string(),
                url: url.to_string(),
                status: status.as_u16(),
                errors: env.errors,
            };
        }
    }
    if let Ok(err) = serde_json::from_str::<OAuthErrorBody>(body) {
        return ClientError::OAuth {
            url: url.to_string(),
            status: status.as_u16(),
            error: err.error,
            description: err.error_description,
        };
    }
    ClientError::Unexpected {
        method: method.to_string(),
        url: url.to_string(),
        status: status.as_u16(),
        body: body.chars().take(300).collect(),
    }
}

/// Decodes a JSON answer.
pub(crate) async fn decode<T: DeserializeOwned>(
    method: Method,
    url: &str,
    resp: Response,
) -> Result<T> {
    let status = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source,
        })?;
    serde_json::from_slice(&bytes).map_err(|err| ClientError::Unexpected {
        method: method.to_string(),
        url: url.to_string(),
        status,
        body: format!(
            "{err}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ),
    })
}
