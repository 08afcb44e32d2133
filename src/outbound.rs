//! The agent's one HTTP client, for RabbitMQ's management API, Prometheus and the workers' drain endpoints.
//!
//! A `reqwest::Client` carries a TLS configuration with the whole root-certificate store and a connection pool, a
//! good hundred kilobytes; one per source and per target made the agent's memory grow by that much per target. A
//! client is a handle to shared state, so every user clones this one.

use std::sync::LazyLock;

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(reqwest::Client::new);

/// A handle to the process-wide client.
pub(crate) fn client() -> reqwest::Client {
    CLIENT.clone()
}
