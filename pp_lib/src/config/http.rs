//! Where the API listens, and where its clients find it.

use std::net::SocketAddr;

/// Where the API listens unless told otherwise.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:3000";
/// Where clients find the API unless told otherwise.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:3000";

/// The API server's listening address.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpConfig {
    /// Address the API listens on (port 0 picks a free one).
    #[arg(id = "http_addr", long = "http-addr", env = "PP_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub addr: SocketAddr,
}

/// Where clients find the API, and the key they show it.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiClientConfig {
    /// Base URL of the pp API.
    #[arg(id = "api_url", long = "api-url", env = "PP_API_URL", default_value = DEFAULT_API_URL)]
    pub url: String,
    /// API key sent as `Authorization: Bearer <token>` (from `pp_storage keys create`); needed
    /// where the API asks for one (PP_AUTH). Prefer the environment variable: a flag shows in
    /// the process list.
    #[arg(
        id = "api_key",
        long = "api-key",
        env = "PP_API_KEY",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub key: Option<crate::auth::Secret>,
}
