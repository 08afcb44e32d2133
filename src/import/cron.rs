//! KEDA's `cron` trigger as a schedule: a floor of `desiredReplicas` from `start` for as long as until `end`.

use super::document::quote;
use super::scaled_object::Trigger;

pub(super) fn map(t: &mut Trigger) -> bool {
    let (Some(start), Some(end), Some(desired)) =
        (t.required("start"), t.required("end"), t.required("desiredReplicas"))
    else {
        return false;
    };
    let timezone = t.param("timezone");
    let Some(minutes) = window_minutes(&start, &end) else {
        let path = t.meta.path_of("end");
        t.notes.skip(
            t.doc,
            &path,
            &format!(
                "`{start}` to `{end}`: only windows whose start and end differ in minute and hour map to a schedule"
            ),
        );
        return false;
    };
    let mut schedule = format!("{{ cron: {}, duration: {minutes}m, minReplicas: {}", quote(&start), desired.trim());
    if let Some(timezone) = timezone {
        schedule.push_str(&format!(", timezone: {}", quote(&timezone)));
    }
    schedule.push_str(" }");
    t.comments.push(format!("# cron trigger: from `{start}` to `{end}`"));
    t.schedule = Some(schedule);
    true
}

/// Minutes from `start` to `end` when both are `M H rest` with the same `rest` and plain numbers for M and H.
fn window_minutes(start: &str, end: &str) -> Option<u32> {
    let parse = |cron: &str| -> Option<(u32, String)> {
        let fields: Vec<&str> = cron.split_whitespace().collect();
        let [minute, hour, rest @ ..] = fields.as_slice() else { return None };
        let (m, h) = (minute.parse::<u32>().ok()?, hour.parse::<u32>().ok()?);
        (m < 60 && h < 24 && rest.len() == 3).then(|| (h * 60 + m, rest.join(" ")))
    };
    let ((from, days), (to, end_days)) = (parse(start)?, parse(end)?);
    let minutes = (to + 24 * 60 - from) % (24 * 60);
    (days == end_days && minutes > 0).then_some(minutes)
}
