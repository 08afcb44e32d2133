//! Any text as a config file: `Config::parse` must answer with a config or located problems, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = queue_scaler::config::Config::parse("fuzz.yaml", text, |name| (name.len() < 8).then(|| "value".to_owned()));
});
