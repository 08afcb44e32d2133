//! Setting a drain up and its process-level clock: no runtime, token settings, the flush deadline, streams.

use std::io::Write;
use std::time::Instant;

use super::*;
use crate::drain::error::token_from;
use crate::drain::exit::Alarm;

#[test]
fn install_outside_a_runtime_is_an_error_not_a_panic() {
    let error = Drain::builder().signals(false).install().expect_err("no runtime");
    assert!(matches!(error, Error::NoRuntime), "{error:?}");
    assert!(error.to_string().contains("tokio runtime"), "{error}");
}

#[test]
fn the_token_comes_from_the_variable_or_the_file_and_bad_settings_are_errors() {
    assert_eq!(token_from(None, None).expect("none"), None);
    assert_eq!(token_from(Some(" abc \n".into()), None).expect("set"), Some("abc".to_owned()));
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(b"from-a-secret\n").expect("write");
    assert_eq!(token_from(None, Some(file.path().into())).expect("file"), Some("from-a-secret".to_owned()));
    let both = token_from(Some("a".into()), Some(file.path().into())).expect_err("both");
    assert_eq!(both.to_string(), "set DRAIN_TOKEN or DRAIN_TOKEN_FILE, not both");
    let empty = token_from(Some("  ".into()), None).expect_err("empty");
    assert!(empty.to_string().contains("DRAIN_TOKEN is set but empty"), "{empty}");
    let missing = token_from(None, Some("/nonexistent/token".into())).expect_err("missing");
    assert!(missing.to_string().starts_with("DRAIN_TOKEN_FILE=/nonexistent/token: "), "{missing}");
    let blank = tempfile::NamedTempFile::new().expect("temp file");
    assert!(token_from(None, Some(blank.path().into())).expect_err("blank").to_string().contains("empty"));
}

/// Real time: the watchdog's clock is the thread's, not tokio's.
#[test]
fn the_flush_deadline_is_the_grace_plus_the_budget_or_a_cut_plus_the_budget() {
    let budget = Duration::from_millis(150);
    let alarm = Arc::new(Alarm::new(budget));
    let start = Instant::now();
    alarm.began(Duration::from_millis(100));
    assert!(!alarm.flushing(), "still in the grace");
    alarm.wait_for_the_deadline();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(alarm.flushing());
    eprintln!("grace 100 ms + budget 150 ms: the watchdog woke after {waited:?}");

    let alarm = Arc::new(Alarm::new(budget));
    alarm.began(Duration::from_secs(3600));
    let cutter = alarm.clone();
    let start = Instant::now();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        cutter.cut();
    });
    alarm.wait_for_the_deadline();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(60), "{waited:?}");
    eprintln!("a cut after 50 ms + budget 150 ms: the watchdog woke after {waited:?}");
}

#[test]
fn the_summary_line_is_claimed_once() {
    let alarm = Alarm::new(Duration::from_secs(1));
    assert!(alarm.claim_report());
    assert!(!alarm.claim_report());
}

#[cfg(feature = "stream")]
mod stream {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// Two items, then the end: a consumer whose broker closed the connection.
    struct TwoThenEnd(u32);

    impl futures_core::Stream for TwoThenEnd {
        type Item = u32;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<u32>> {
            self.0 += 1;
            Poll::Ready((self.0 <= 2).then_some(self.0))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_of_a_stream_that_ends_begin_the_drain_as_stream_ended() {
        let drain = drain(25);
        let mut jobs = drain.jobs(TwoThenEnd(0));
        let mut seen = Vec::new();
        while let Some(permit) = jobs.next().await {
            let (job, item) = permit.start(|| async {});
            seen.push(item);
            assert!(job.complete(|| async {}).await.is_some());
        }
        assert_eq!(seen, [1, 2]);
        let summary = drain.wait().await;
        assert_eq!((summary.cause, summary.exit_code()), (Cause::StreamEnded, EXIT_STREAM_ENDED));
    }
}
