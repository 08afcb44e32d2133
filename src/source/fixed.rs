//! A fixed backlog: the source that is always there and always says the same thing.
//!
//! For trying a config without a broker (`--dry-run` shows what the policy would do at that backlog), for demos,
//! and for measuring the agent's own cost in the footprint bench, where any real broker's cost would hide it.

use serde::Deserialize;

use super::{ReadBacklog, Reading, SourceError};
use crate::redact::Secrets;
use crate::validation::Problem;

/// `type: fixed` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The backlog every read returns.
    pub backlog: f64,
}

impl Config {
    pub(super) fn problems(&self) -> Vec<Problem> {
        match (Reading { backlog: self.backlog, ..Reading::default() }).checked() {
            Ok(_) => Vec::new(),
            Err(_) => {
                vec![Problem::new("backlog", format!("{} is not a backlog; use 0 or a positive number", self.backlog))]
            }
        }
    }

    pub(super) fn secrets(&self) -> Secrets {
        Secrets::default()
    }
}

/// The reader: no I/O at all.
pub struct Fixed {
    backlog: f64,
}

impl Fixed {
    /// A source that always reads `config.backlog`.
    pub fn new(config: &Config) -> Fixed {
        Fixed { backlog: config.backlog }
    }
}

impl ReadBacklog for Fixed {
    async fn read(&self) -> Result<Reading, SourceError> {
        Ok(Reading { backlog: self.backlog, ..Reading::default() })
    }
}
