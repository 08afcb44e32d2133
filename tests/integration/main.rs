//! Integration tests against real peers and the fake Kubernetes API, in one binary.

#[path = "../support/mod.rs"]
mod support;

mod agent_api_faults;
mod agent_broker_outage;
mod agent_cluster;
mod agent_hostile_values;
mod agent_idle_first;
mod agent_other_controllers;
mod agent_quiet;
mod agent_rabbitmq;
mod agent_shadow;
mod agent_workloads;
mod agent_writes;
mod cli_check;
mod client_library_logs;
mod drain_endpoint;
mod drain_hostile;
mod drain_kafka;
mod drain_pubsub;
mod drain_rabbitmq;
mod drain_sqs;
mod fake_kube;
mod helm_chart;
mod kafka_source;
mod prometheus_source;
mod pubsub_source;
mod rabbitmq_source;
mod secrets;
mod sqs_source;
