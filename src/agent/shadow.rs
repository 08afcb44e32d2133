//! Shadow mode's recording: what the sources saw and what the live autoscaler did, one row per source and tick.
//!
//! A team running an HPA or KEDA today cannot tell whether queue-scaler would do better on their own traffic
//! without switching. `run --shadow --record FILE.csv` reads the sources and decides like `--dry-run`, writes
//! nothing to the cluster, and appends to a CSV that `replay` reads directly: the replay columns
//! (`time_s,source,backlog,in_flight,arrival_rate`) plus `target` (the workload) and `live_replicas` (the count the
//! current autoscaler gave it). A source whose read failed has no row in that tick, which `replay` reads as a failed
//! read.
//!
//! The file survives restarts by appending: `time_s` counts seconds from the recording's first row and continues
//! after the file's last row. It is readable while written (each tick's rows are written whole, then flushed), and
//! it is capped: past `--record-max` it is rotated to `FILE.1` (replacing an older one) and a new file begins with
//! the header, its times continuing.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::source::Reading;

/// The header every recording starts with.
pub const HEADER: &str = "time_s,source,backlog,in_flight,arrival_rate,target,live_replicas";

/// Why a recording could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}: {source}")]
pub struct RecordError {
    path: String,
    what: &'static str,
    source: std::io::Error,
}

/// The recording, shared by every target's loop; cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Recording>>,
}

#[derive(Debug)]
struct Recording {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    /// `time_s` of this run's start: after the file's last row.
    offset_s: f64,
}

impl Recorder {
    /// Opens `path` for appending (creating it with the header), capped at `max_bytes`; a new run's rows begin
    /// `poll` after the file's last one.
    pub fn open(path: &Path, max_bytes: u64, poll: Duration) -> Result<Recorder, RecordError> {
        let fail = |what| move |source| RecordError { path: path.display().to_string(), what, source };
        let last = last_time(path).map_err(fail("cannot read the recording to continue it"))?;
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(fail("cannot open it"))?;
        let written = file.metadata().map_err(fail("cannot read its size"))?.len();
        let mut recording = Recording {
            path: path.to_owned(),
            file,
            written,
            max_bytes,
            offset_s: last.map_or(0.0, |t| t + poll.as_secs_f64()),
        };
        if written == 0 {
            recording.write(&format!("{HEADER}\n")).map_err(fail("cannot write the header"))?;
        }
        Ok(Recorder { inner: Arc::new(Mutex::new(recording)) })
    }

    /// Records one tick of `target`, `elapsed` into this run: a row per source that was read.
    pub fn record(
        &self,
        elapsed: Duration,
        target: &str,
        sources: &[String],
        readings: &[Option<Reading>],
        live_replicas: u32,
    ) {
        let mut recording = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let time_s = recording.offset_s + elapsed.as_secs_f64();
        let mut rows = String::new();
        for (source, reading) in sources.iter().zip(readings) {
            let Some(reading) = reading else { continue };
            let optional = |value: Option<f64>| value.map(|v| v.to_string()).unwrap_or_default();
            rows.push_str(&format!(
                "{time_s:.3},{},{},{},{},{},{live_replicas}\n",
                quoted(source),
                reading.backlog,
                optional(reading.in_flight),
                optional(reading.arrival_rate),
                quoted(target),
            ));
        }
        if let Err(error) = recording.write(&rows) {
            tracing::warn!(file = %recording.path.display(), %error, "cannot write the shadow recording");
        }
    }
}

impl Recording {
    /// Writes `text` whole and flushes it, rotating the file first if it would pass the cap.
    fn write(&mut self, text: &str) -> std::io::Result<()> {
        if self.written > 0 && self.written + text.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(text.as_bytes())?;
        self.file.flush()?;
        self.written += text.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(".1");
        std::fs::rename(&self.path, &rotated)?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.written = 0;
        self.file.write_all(format!("{HEADER}\n").as_bytes())?;
        self.written = HEADER.len() as u64 + 1;
        tracing::info!(file = %self.path.display(), "the shadow recording reached --record-max; rotated to .1");
        Ok(())
    }
}

/// The `time_s` of the file's last row, if it has one.
fn last_time(path: &Path) -> std::io::Result<Option<f64>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut last = None;
    for line in BufReader::new(file).lines() {
        let line = line?;
        if let Some(time) = line.split(',').next().and_then(|t| t.parse::<f64>().ok()) {
            last = Some(time);
        }
    }
    Ok(last)
}

/// A CSV field: quoted when it holds a comma or a quote (a Prometheus query as a source name, say).
fn quoted(field: &str) -> String {
    if field.contains([',', '"', '\n']) { format!("\"{}\"", field.replace('"', "\"\"")) } else { field.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(backlog: f64, in_flight: Option<f64>) -> Option<Reading> {
        Some(Reading { backlog, in_flight, ..Reading::default() })
    }

    #[test]
    fn rows_per_read_source_continue_after_a_restart_and_rotate_at_the_cap() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("shadow.csv");
        let names = ["rabbitmq/videos".to_owned(), "prometheus/sum(x{a=\"b\",c=\"d\"})".to_owned()];
        let poll = Duration::from_secs(5);
        let recorder = Recorder::open(&path, 10_000, poll).expect("open");
        recorder.record(Duration::ZERO, "worker", &names, &[reading(40.0, Some(3.0)), None], 4);
        recorder.record(Duration::from_secs(5), "worker", &names, &[reading(30.0, None), reading(7.0, None)], 4);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            format!(
                "{HEADER}\n0.000,rabbitmq/videos,40,3,,worker,4\n5.000,rabbitmq/videos,30,,,worker,4\n\
                 5.000,\"prometheus/sum(x{{a=\"\"b\"\",c=\"\"d\"\"}})\",7,,,worker,4\n"
            )
        );
        // A restart appends, its times after the last row's.
        let again = Recorder::open(&path, 10_000, poll).expect("reopen");
        again.record(Duration::from_secs(1), "worker", &names[..1], &[reading(1.0, None)], 2);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.ends_with("\n11.000,rabbitmq/videos,1,,,worker,2\n"), "{text}");
        assert_eq!(text.matches(HEADER).count(), 1);
        // Past the cap: the old file goes to .1, a new one begins with the header, times go on.
        let small = Recorder::open(&path, 200, poll).expect("reopen");
        small.record(Duration::from_secs(2), "worker", &names[..1], &[reading(2.0, None)], 2);
        let rotated = std::fs::read_to_string(dir.path().join("shadow.csv.1")).expect("rotated");
        assert!(rotated.ends_with("11.000,rabbitmq/videos,1,,,worker,2\n"), "{rotated}");
        let fresh = std::fs::read_to_string(&path).expect("read");
        assert_eq!(fresh, format!("{HEADER}\n18.000,rabbitmq/videos,2,,,worker,2\n"));
    }
}
