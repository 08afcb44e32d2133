//! RabbitMQ: the backlog of one queue or several, over AMQP or through the management API.
//!
//! Two ways to read it, as KEDA offers:
//!
//! * **AMQP** (default): a passive `queue.declare` returns the number of *ready* messages. Cheap and needs only the
//!   AMQP port, but messages that workers hold unacknowledged are invisible, so a busy fleet looks idle.
//! * **Management API** (`managementUrl` set): `GET /api/queues/VHOST` gives ready *and* unacknowledged messages
//!   (the backlog counts both unless `excludeUnacknowledged`), the publish rate, which the latency mode uses as the
//!   arrival rate, and `head_message_timestamp`, the AMQP `timestamp` property of each queue's first message, which
//!   gives the oldest message's age when publishers set it (unknown, never 0, when they do not). RabbitMQ refreshes
//!   these numbers every few seconds (`collect_statistics_interval`).
//!
//! **Which queues.** `queue`, a list (`queues`), or every queue of the vhost whose whole name matches `queueRegex`;
//! their backlogs are summed and each is reported on its own for the per-queue metric. A pattern is matched against
//! the management API's list at every poll, so a queue created later counts from the next poll; only that list can
//! say which queues exist, so a pattern needs `managementUrl`. The vhost is `vhost`, else the one `url` names.
//!
//! **One client per broker.** Every queue read over AMQP on the same URL (host, port, user, password, vhost and
//! options) shares one connection, opened on the first read, with `CHANNELS` channels; a declare has a channel to
//! itself, because a failed passive declare (a missing queue, access refused) closes its channel — only that read
//! fails, never its neighbours'. A connection that breaks is opened again by the first read after the break, once
//! for all its queues. Every queue read through the same management API, user and vhost is answered by one
//! `GET /api/queues/VHOST?columns=…` per poll for the whole vhost (see [`super::shared`]): a queue the list does not
//! hold is not found, a refusal is every such queue's.

#[cfg(feature = "rabbitmq")]
mod reader;

use std::str::FromStr;

use amq_protocol_uri::AMQPUri;
use regex::Regex;
use serde::Deserialize;

use crate::redact::{self, Secrets};
use crate::validation::Problem;

#[cfg(feature = "rabbitmq")]
pub use reader::RabbitMq;
#[cfg(feature = "rabbitmq")]
pub(crate) use reader::{AmqpClient, ManagementClient};

/// `type: rabbitmq` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// `amqp://user:password@host:5672/vhost` (`%2f` is the default vhost `/`); `amqps://` for TLS.
    pub url: String,
    /// The virtual host the queues live in; default: the one `url` names, else `/`.
    #[serde(default)]
    pub vhost: Option<String>,
    /// The queue to measure (exactly one of `queue`, `queues` and `queueRegex`).
    #[serde(default)]
    pub queue: Option<String>,
    /// Several queues, whose backlogs are summed.
    #[serde(default)]
    pub queues: Option<Vec<String>>,
    /// Every queue of the vhost whose whole name matches this regular expression, summed; the management API lists
    /// them at every poll, so a queue created later counts from the next poll.
    #[serde(default)]
    pub queue_regex: Option<String>,
    /// `http(s)://host:15672` of the management plugin; credentials from its userinfo, else from `url`.
    #[serde(default)]
    pub management_url: Option<String>,
    /// With the management API, count only ready messages (KEDA's `excludeUnacknowledged`).
    #[serde(default)]
    pub exclude_unacknowledged: bool,
}

/// The fields that name queues, of which a source sets exactly one.
const QUEUE_FIELDS: &str = "`queue`, `queues` or `queueRegex`";

impl Config {
    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        match AMQPUri::from_str(&self.url) {
            Err(why) => problems.push(Problem::new(
                "url",
                format!(
                    "`{}` is not an AMQP URL ({}); write `amqp://user:${{PASSWORD}}@host:5672/%2f`",
                    redact::url(&self.url),
                    self.secrets().scrub(&why)
                ),
            )),
            Ok(uri) => {
                if let (Some(vhost), Some(in_url)) = (&self.vhost, url_names_vhost(&self.url).then_some(uri.vhost))
                    && *vhost != in_url
                {
                    problems.push(Problem::new(
                        "vhost",
                        format!(
                            "`{vhost}` differs from the vhost `{in_url}` that `url` names; drop the vhost from one \
                             of them or make them agree"
                        ),
                    ));
                }
            }
        }
        problems.extend(self.queue_problems());
        match &self.management_url {
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                problems.push(Problem::new(
                    "managementUrl",
                    format!("`{}` is not an http(s) URL; write e.g. `http://rabbitmq:15672`", redact::url(url)),
                ));
            }
            None if self.exclude_unacknowledged => problems.push(Problem::new(
                "excludeUnacknowledged",
                "only applies with `managementUrl` (over AMQP only ready messages are counted anyway); add \
                 `managementUrl` or remove it",
            )),
            None if self.queue_regex.is_some() => problems.push(Problem::new(
                "queueRegex",
                "needs `managementUrl`: only the management API lists a vhost's queues; add e.g. \
                 `managementUrl: http://rabbitmq:15672`, or name the queues with `queues: [a, b]`",
            )),
            _ => {}
        }
        problems
    }

    /// Exactly one of `queue`, `queues` and `queueRegex`, each well formed.
    fn queue_problems(&self) -> Vec<Problem> {
        let given: Vec<&str> = [
            ("queue", self.queue.is_some()),
            ("queues", self.queues.is_some()),
            ("queueRegex", self.queue_regex.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, set)| set.then_some(field))
        .collect();
        match given[..] {
            [] => {
                return vec![Problem::new(
                    "queue",
                    format!("missing; name the queue the workers consume with {QUEUE_FIELDS}"),
                )];
            }
            [_] => {}
            [first, second, ..] => {
                return vec![Problem::new(
                    second,
                    format!("is set along with `{first}`; use exactly one of {QUEUE_FIELDS}"),
                )];
            }
        }
        let mut problems = Vec::new();
        if self.queue.as_deref() == Some("") {
            problems.push(Problem::new("queue", "is empty; name the queue the workers consume"));
        }
        if let Some(queues) = &self.queues {
            if queues.is_empty() {
                problems.push(Problem::new("queues", "is empty; list the queues the workers consume, e.g. `[a, b]`"));
            }
            for (i, queue) in queues.iter().enumerate() {
                if queue.is_empty() {
                    problems.push(Problem::new(format!("queues[{i}]"), "is empty; name a queue"));
                } else if queues[..i].contains(queue) {
                    problems.push(Problem::new(
                        format!("queues[{i}]"),
                        format!("`{queue}` is listed twice; its backlog would count twice, remove one"),
                    ));
                }
            }
        }
        if let Some(pattern) = &self.queue_regex
            && let Err(why) = whole_name(pattern)
        {
            problems.push(Problem::new(
                "queueRegex",
                format!("`{pattern}` is not a regular expression ({}); write e.g. `jobs-.*`", regex_complaint(&why)),
            ));
        }
        problems
    }

    /// The vhost the queues live in: `vhost`, else the one `url` names, else `/`.
    pub fn effective_vhost(&self) -> String {
        self.vhost.clone().unwrap_or_else(|| AMQPUri::from_str(&self.url).map_or_else(|_| "/".into(), |u| u.vhost))
    }

    /// The queues measured, as a default source name shows them: `videos`, `a,b` or the pattern.
    pub fn measured(&self) -> String {
        match (&self.queue, &self.queues, &self.queue_regex) {
            (Some(queue), _, _) => queue.clone(),
            (None, Some(queues), _) => queues.join(","),
            (None, None, Some(pattern)) => pattern.clone(),
            (None, None, None) => String::new(),
        }
    }

    pub(super) fn warnings(&self) -> Vec<Problem> {
        let hidden = if self.management_url.is_none() {
            Some(("managementUrl", "is not set, so only ready messages count (AMQP cannot see the others)"))
        } else if self.exclude_unacknowledged {
            Some(("excludeUnacknowledged", "is true, so only ready messages count"))
        } else {
            None
        };
        hidden
            .map(|(field, why)| {
                Problem::new(
                    field,
                    format!(
                        "{why}: workers busy with a job look idle, and a scale-down (to zero with minReplicas: 0) \
                         removes them mid-job; set `managementUrl` to count unacknowledged messages too"
                    ),
                )
            })
            .into_iter()
            .collect()
    }

    pub(super) fn secrets(&self) -> Secrets {
        let mut secrets = Secrets::default();
        secrets.add_url_password(&self.url);
        if let Some(url) = &self.management_url {
            secrets.add_url_password(url);
        }
        secrets
    }
}

/// `pattern` as a regular expression that must match a queue's whole name: `jobs-.*` takes `jobs-1`, not
/// `old-jobs-1`.
fn whole_name(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| e.to_string())
}

/// What the regex crate says is wrong, without the pattern and caret it draws above it.
fn regex_complaint(text: &str) -> &str {
    text.lines().find_map(|line| line.trim().strip_prefix("error: ")).unwrap_or(text)
}

/// Whether `url` writes a vhost (a path after the host), rather than leaving it to the default `/`.
fn url_names_vhost(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    rest.split_once('/').is_some_and(|(_, path)| !path.is_empty())
}
