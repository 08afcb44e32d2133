//! Stamps the git revision into the binary, for `queue_scaler_build_info{revision}`: which commit is running is the
//! first question about a deployed agent. `QUEUE_SCALER_REVISION` set at build time wins (an image built without
//! `.git`); otherwise `git rev-parse` answers when the source is a checkout, and the metric says `unknown` when not.
//!
//! It also names two conditions the code asks in several places: `clients`, set when any source with a broker client
//! (every source but `fixed`) is built in, and `every_source`, set when all of them are.

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(clients)");
    println!("cargo::rustc-check-cfg=cfg(every_source)");
    let sources = ["KAFKA", "RABBITMQ", "SQS", "PUBSUB", "PROMETHEUS"];
    let built = sources.iter().filter(|feature| std::env::var_os(format!("CARGO_FEATURE_{feature}")).is_some()).count();
    if built > 0 {
        println!("cargo::rustc-cfg=clients");
    }
    if built == sources.len() {
        println!("cargo::rustc-cfg=every_source");
    }
    println!("cargo:rerun-if-env-changed=QUEUE_SCALER_REVISION");
    if std::env::var_os("QUEUE_SCALER_REVISION").is_some() {
        return;
    }
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let revision = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output();
    if let Some(output) = revision.ok().filter(|o| o.status.success()) {
        let revision = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !revision.is_empty() {
            println!("cargo:rustc-env=QUEUE_SCALER_REVISION={revision}");
        }
    }
}
