//! What every part of the config shares to say what is wrong with it: a [`Problem`] at a path, durations as humans
//! write them, and the marker that carries a nested deserializer's path up through serde.
//!
//! It is a leaf: the config, the policy's settings and the sources' settings all use it and it uses none of them, so
//! the pure decision code does not depend on the config loader or the I/O layer to describe its own settings.

/// Durations as humans write them: `30s`, `5m`, `1h30m`.
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)
            .map_err(|_| serde::de::Error::custom("must be a duration with a unit, such as `30s`, `5m` or `1h30m`"))?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn parse(text: &str) -> Result<Duration, String> {
        humantime::parse_duration(text.trim())
            .map_err(|_| format!("`{text}` is not a duration; write it with a unit, such as `30s`, `5m` or `1h30m`"))
    }
}

/// A problem found in the config, located by its path (`targets[0].minReplicas`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field, as a path from the top of the file.
    pub path: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { path: path.into(), message: message.into() }
    }

    /// The same problem, seen from one level up (`queue` inside `targets[0].sources[1]`).
    pub fn under(self, parent: &str) -> Problem {
        let path = match (parent, self.path.as_str()) {
            ("", p) | (p, "") => p.to_owned(),
            (parent, p) if p.starts_with('[') => format!("{parent}{p}"),
            (parent, p) => format!("{parent}.{p}"),
        };
        Problem { path, ..self }
    }
}

/// Marks an error raised inside a nested deserializer with the path below the point where serde lost track of it.
///
/// `serde_path_to_error` follows the typed structs, but a source's settings are deserialized in a second step (the
/// `type:` decides which struct), so its field path travels inside the message and is unpacked here.
pub(crate) fn nested_error(sub_path: &str, message: &str) -> String {
    format!("{NESTED}{sub_path}{NESTED}{message}")
}

const NESTED: char = '\u{1f}';

pub(crate) fn split_nested(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix(NESTED)?;
    rest.split_once(NESTED)
}
