//! Any text as a simulator trace: `read_csv` must answer with jobs or a line-numbered error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = queue_scaler::sim::read_csv(text);
});
