//! Kubernetes API paths and query strings, read into what a request addresses.

use super::discovery::Document;
use super::resources::{self, Endpoint};

/// What a request path addresses.
#[derive(Debug)]
pub(super) enum Route {
    /// A discovery document.
    Discovery(Document),
    /// A collection, in one namespace or (namespace `None`) across all of them.
    Collection { endpoint: &'static Endpoint, namespace: Option<String> },
    /// One object.
    Object { endpoint: &'static Endpoint, namespace: String, name: String },
    /// The `scale` subresource of a kind that has one.
    Scale { endpoint: &'static Endpoint, namespace: String, name: String },
}

/// Reads a request path; `None` when the fake serves nothing there.
pub(super) fn route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => Some(Route::Discovery(Document::Version)),
        ["api"] => Some(Route::Discovery(Document::CoreVersions)),
        ["apis"] => Some(Route::Discovery(Document::Groups)),
        ["api", version] => resource_list("", version),
        ["apis", group, version] => resource_list(group, version),
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => None,
    }
}

/// The discovery document of a group version the fake serves.
fn resource_list(group: &str, version: &str) -> Option<Route> {
    let served = resources::group_version(group, version);
    let endpoint = served.first()?;
    Some(Route::Discovery(Document::Resources { group: endpoint.group, version: endpoint.version }))
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Option<Route> {
    let find = |plural: &str| resources::endpoint(group, version, plural);
    match rest {
        [plural] => Some(Route::Collection { endpoint: find(plural)?, namespace: None }),
        ["namespaces", namespace, plural] => {
            Some(Route::Collection { endpoint: find(plural)?, namespace: Some(namespace.to_string()) })
        }
        ["namespaces", namespace, plural, name] => {
            Some(Route::Object { endpoint: find(plural)?, namespace: namespace.to_string(), name: name.to_string() })
        }
        ["namespaces", namespace, plural, name, "scale"] => {
            let endpoint = find(plural).filter(|e| e.kind.has_scale())?;
            Some(Route::Scale { endpoint, namespace: namespace.to_string(), name: name.to_string() })
        }
        _ => None,
    }
}

/// A decoded query string.
#[derive(Debug, Default)]
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: &str) -> Self {
        Self(
            raw.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(key), percent_decode(value))
                })
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A boolean parameter, spelled `true` or `1` as Kubernetes accepts.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[index], escaped) {
            (_, Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (b'+', None) => {
                decoded.push(b' ');
                index += 1;
            }
            (byte, None) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
