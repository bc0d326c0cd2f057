//! `ingot-client`: a typed client for Ingot's Cloud Foundry v3 API, speaking
//! only what the `cf` CLI speaks (see `shared/PROTOCOLS.md`), plus the
//! client-side parts of a push that need no server: `.cfignore` matching,
//! the zip of app bits, the manifest a push applies, and the CLI's saved
//! login. Used by the `ingot` CLI and by tests.
//!
//! *Invariant*: no platform logic; everything here is what any CF client
//! would do on its side of the wire.

pub mod bits;
pub mod buildpacks;
pub mod cfignore;
mod client;
pub mod config;
pub mod deploy;
pub mod docker;
pub mod error;
pub mod logcache;
pub mod manifest;
pub mod marketplace;
pub mod people;
pub mod platform;
pub mod poll;
pub mod quotas;
pub mod resources;
pub mod routes;
pub mod security_groups;
pub mod services;
pub mod ssh;
mod v3;

pub use client::{Client, Endpoints, Tokens};
pub use error::{ApiErrorItem, ClientError, Result};
pub use logcache::{LogEnvelope, LogTail, ReadQuery};
pub use reqwest::Method;
pub use v3::{Progress, RESOURCE_MATCH_CHUNK};
