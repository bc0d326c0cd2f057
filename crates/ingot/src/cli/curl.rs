//! `curl PATH`: an authenticated request to the API, printed as `cf curl`
//! prints it (the body, whatever the status).

use anyhow::{anyhow, Context as _};
use clap::Args;
use ingot_client::Method;

use super::{OrExplain as _, Session};

/// Flags of `curl`.
#[derive(Args)]
pub struct CurlArgs {
    /// Path under the API, e.g. /v3/apps.
    path: String,
    /// HTTP method (default GET, or POST when -d is given).
    #[arg(short = 'X')]
    method: Option<String>,
    /// Request body; `@FILE` reads it from a file.
    #[arg(short = 'd')]
    data: Option<String>,
    /// Extra header, `Name: value`; may be repeated.
    #[arg(short = 'H')]
    headers: Vec<String>,
    /// Exit non-zero when the status is 400 or more.
    #[arg(long)]
    fail: bool,
}

/// `ingot curl PATH`.
pub(crate) async fn curl(args: CurlArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let body = match args.data {
        Some(d) => Some(match d.strip_prefix('@') {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the request body from {file}"))?,
            None => d,
        }),
        None => None,
    };
    let method = match (&args.method, &body) {
        (Some(m), _) => m.to_ascii_uppercase(),
        (None, Some(_)) => "POST".to_string(),
        (None, None) => "GET".to_string(),
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| anyhow!("{method:?} is not an HTTP method"))?;
    let headers = args
        .headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow!("header {h:?} is not `Name: value`"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let path = if args.path.starts_with('/') {
        args.path.clone()
    } else {
        format!("/{}", args.path)
    };
    let (status, text) = session
        .client()
        .request(method.clone(), &path, body, &headers)
        .await
        .or_explain(format!("{method} {path}"))?;
    session.keep_tokens();
    // The body as it came, as cf curl prints it.
    if text.ends_with('\n') || text.is_empty() {
        print!("{text}");
    } else {
        println!("{text}");
    }
    if args.fail && status >= 400 {
        return Err(anyhow!("{method} {path} answered HTTP {status}"));
    }
    Ok(())
}
