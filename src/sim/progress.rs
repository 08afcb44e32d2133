//! A progress bar on stderr for simulations that take more than a second.
//!
//! Most runs finish before anyone would look at a bar, so it appears only after a second, only on a terminal
//! (never in a pipe or a log file), redraws at most ten times a second, and erases itself when done so the report
//! starts on a clean line.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How long a run goes before the bar shows.
const SHOW_AFTER: Duration = Duration::from_secs(1);
/// The least time between two redraws.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// Cells in the bar.
const WIDTH: usize = 30;

/// The bar of one run.
#[derive(Debug)]
pub struct ProgressBar {
    enabled: bool,
    started: Instant,
    last_drawn: Option<Instant>,
    label: String,
}

impl ProgressBar {
    /// A bar labelled `label`, shown only when stderr is a terminal.
    pub fn on_stderr(label: impl Into<String>) -> ProgressBar {
        ProgressBar::new(label, std::io::stderr().is_terminal())
    }

    /// A bar that draws only if `enabled`.
    pub fn new(label: impl Into<String>, enabled: bool) -> ProgressBar {
        ProgressBar { enabled, started: Instant::now(), last_drawn: None, label: label.into() }
    }

    /// Records progress (0 to 1), redrawing when due.
    pub fn update(&mut self, fraction: f64) {
        if !self.enabled || self.started.elapsed() < SHOW_AFTER {
            return;
        }
        if self.last_drawn.is_some_and(|at| at.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.last_drawn = Some(Instant::now());
        let mut stderr = std::io::stderr().lock();
        // A bar that cannot be drawn is no reason to stop a simulation.
        let _ = write!(stderr, "\r{}", render(fraction, &self.label));
        let _ = stderr.flush();
    }

    /// Erases the bar, if it was drawn.
    pub fn finish(&mut self) {
        if self.last_drawn.take().is_some() {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        }
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One line of the bar: `[#########---------------------]  30% label`.
pub fn render(fraction: f64, label: &str) -> String {
    let fraction = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
    let filled = (fraction * WIDTH as f64).round() as usize;
    format!("[{}{}] {:>3}% {label}", "#".repeat(filled), "-".repeat(WIDTH - filled), (fraction * 100.0).round())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_fraction_as_cells_and_percent() {
        assert_eq!(render(0.3, "spike"), format!("[{}{}]  30% spike", "#".repeat(9), "-".repeat(21)));
        assert_eq!(render(1.0, ""), format!("[{}] 100% ", "#".repeat(30)));
        assert_eq!(render(-2.0, "x"), format!("[{}]   0% x", "-".repeat(30)));
        assert_eq!(render(f64::NAN, "x"), render(0.0, "x"));
    }

    #[test]
    fn a_disabled_bar_never_draws() {
        let mut bar = ProgressBar::new("quiet", false);
        bar.update(0.5);
        assert!(bar.last_drawn.is_none());
    }
}
