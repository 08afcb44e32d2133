//! Job traces as CSV files (`arrival_s,duration_s`), so anyone can replay their own traffic through `simulate`.
//!
//! The format is deliberately tiny and strict: a header, then one job a line. Blank lines and `#` comment lines are
//! allowed anywhere. Every error names the line and what is wrong with it, because the person reading it has the
//! file open next to the message.

use thiserror::Error;

use super::Job;

const HEADER: [&str; 2] = ["arrival_s", "duration_s"];

/// What is wrong with a trace file; line numbers count from 1, comment and blank lines included.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TraceError {
    /// Nothing but blank or comment lines.
    #[error("the trace is empty: expected the header `arrival_s,duration_s`")]
    Empty,
    /// The first meaningful line is not the header.
    #[error("line {line}: expected the header `arrival_s,duration_s`, found {found:?}")]
    Header { line: usize, found: String },
    /// A row without exactly two comma-separated fields.
    #[error("line {line}: expected 2 comma-separated fields (arrival_s,duration_s), found {found}")]
    FieldCount { line: usize, found: usize },
    /// A field that is not a number in its allowed range.
    #[error("line {line}: {column} {value:?} must be {expected}")]
    Value { line: usize, column: &'static str, value: String, expected: &'static str },
    /// A header and no rows: nothing to simulate.
    #[error("the trace has a header but no jobs")]
    NoJobs,
}

/// A CSV file's lines that hold something, trimmed, each with its number from 1: no byte-order mark, no blank
/// lines, no `#` comments. Traces and replay recordings share this shape.
pub(crate) fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// Parses a CSV trace. Rows may come in any order; the jobs come back sorted by arrival.
///
/// Arrivals must be finite and ≥ 0, durations finite and > 0 (a zero-length job would measure nothing).
pub fn read_csv(text: &str) -> Result<Vec<Job>, TraceError> {
    let mut rows = content_lines(text);

    let (header_line, header) = rows.next().ok_or(TraceError::Empty)?;
    if !header.split(',').map(str::trim).eq(HEADER) {
        return Err(TraceError::Header { line: header_line, found: header.to_owned() });
    }

    let mut jobs = rows.map(|(line, row)| parse_row(line, row)).collect::<Result<Vec<Job>, TraceError>>()?;
    if jobs.is_empty() {
        return Err(TraceError::NoJobs);
    }
    jobs.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
    Ok(jobs)
}

/// Writes jobs in the format [`read_csv`] reads; numbers use Rust's shortest exact form, so they read back equal.
pub fn write_csv(jobs: &[Job]) -> String {
    let mut text = HEADER.join(",");
    text.push('\n');
    for job in jobs {
        text.push_str(&format!("{},{}\n", job.arrival_s, job.duration_s));
    }
    text
}

fn parse_row(line: usize, row: &str) -> Result<Job, TraceError> {
    let fields: Vec<&str> = row.split(',').map(str::trim).collect();
    let [arrival, duration] = fields[..] else {
        return Err(TraceError::FieldCount { line, found: fields.len() });
    };
    Ok(Job {
        arrival_s: parse_seconds(line, HEADER[0], arrival, |s| s >= 0.0, "a non-negative number of seconds")?,
        duration_s: parse_seconds(line, HEADER[1], duration, |s| s > 0.0, "a positive number of seconds")?,
    })
}

fn parse_seconds(
    line: usize,
    column: &'static str,
    value: &str,
    in_range: impl Fn(f64) -> bool,
    expected: &'static str,
) -> Result<f64, TraceError> {
    value
        .parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && in_range(*seconds))
        .ok_or_else(|| TraceError::Value { line, column, value: value.to_owned(), expected })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(arrival_s: f64, duration_s: f64) -> Job {
        Job { arrival_s, duration_s }
    }

    #[test]
    fn reads_unsorted_rows_with_spaces_comments_and_blank_lines_and_sorts_them() {
        let text = "# exported from prod\n arrival_s , duration_s \n\n5.5, 2\n# a comment row\n1,0.25\r\n0 ,10\n";
        let jobs = read_csv(text).expect("valid trace");
        assert_eq!(jobs, vec![job(0.0, 10.0), job(1.0, 0.25), job(5.5, 2.0)]);
    }

    #[test]
    fn accepts_a_file_without_a_trailing_newline() {
        let jobs = read_csv("arrival_s,duration_s\n3,4").expect("valid trace");
        assert_eq!(jobs, vec![job(3.0, 4.0)]);
    }

    #[test]
    fn a_negative_duration_names_its_line_column_and_value() {
        let text = "arrival_s,duration_s\n0,1\n1,1\n2,1\n3,1\n4,1\n5,-3\n";
        let error = read_csv(text).expect_err("negative duration");
        assert_eq!(error.to_string(), "line 7: duration_s \"-3\" must be a positive number of seconds");
    }

    #[test]
    fn rejects_zero_nan_and_infinite_durations() {
        for (value, line) in [("0", 2), ("NaN", 2), ("inf", 2), ("-inf", 2), ("ten", 2)] {
            let text = format!("arrival_s,duration_s\n1,{value}\n");
            assert_eq!(
                read_csv(&text),
                Err(TraceError::Value {
                    line,
                    column: "duration_s",
                    value: value.to_owned(),
                    expected: "a positive number of seconds",
                }),
                "duration {value}"
            );
        }
    }

    #[test]
    fn rejects_negative_and_non_finite_arrivals_but_accepts_zero() {
        assert_eq!(read_csv("arrival_s,duration_s\n0,1\n"), Ok(vec![job(0.0, 1.0)]));
        for value in ["-0.5", "NaN", "infinity", ""] {
            let text = format!("arrival_s,duration_s\n# note\n{value},1\n");
            let error = read_csv(&text).expect_err(value);
            assert_eq!(
                error.to_string(),
                format!("line 3: arrival_s {value:?} must be a non-negative number of seconds")
            );
        }
    }

    #[test]
    fn a_row_with_the_wrong_number_of_fields_names_its_line() {
        let error = read_csv("arrival_s,duration_s\n1,2\n3,4,5\n").expect_err("three fields");
        assert_eq!(error, TraceError::FieldCount { line: 3, found: 3 });
        assert_eq!(error.to_string(), "line 3: expected 2 comma-separated fields (arrival_s,duration_s), found 3");
    }

    #[test]
    fn a_wrong_or_missing_header_is_reported_on_its_line() {
        assert_eq!(
            read_csv("# jobs\narrival,duration\n1,2\n"),
            Err(TraceError::Header { line: 2, found: "arrival,duration".to_owned() })
        );
        assert_eq!(read_csv("1,2\n"), Err(TraceError::Header { line: 1, found: "1,2".to_owned() }));
        assert_eq!(
            read_csv("duration_s,arrival_s\n"),
            Err(TraceError::Header { line: 1, found: "duration_s,arrival_s".to_owned() })
        );
    }

    #[test]
    fn empty_files_and_header_only_files_are_rejected() {
        assert_eq!(read_csv(""), Err(TraceError::Empty));
        assert_eq!(read_csv("\n# nothing\n  \n"), Err(TraceError::Empty));
        assert_eq!(read_csv("arrival_s,duration_s\n"), Err(TraceError::NoJobs));
    }

    #[test]
    fn written_traces_read_back_equal() {
        let jobs = vec![job(0.0, 0.1), job(0.1 + 0.2, 1e-9), job(12_345.678_9, 1.0 / 3.0)];
        assert_eq!(read_csv(&write_csv(&jobs)), Ok(jobs));
    }
}
