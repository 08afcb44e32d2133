//! HPA v2 `behavior`: stabilization windows and rate policies, with Kubernetes' defaults and arithmetic.
//!
//! Teams already tune the HPA with this block, so it has the same shape and the same meaning here. The algorithm
//! follows `pkg/controller/podautoscaler/horizontal.go` (`stabilizeRecommendationWithBehaviors`,
//! `convertDesiredReplicasWithBehaviorRate`, `calculateScaleUpLimitWithScalingRules`,
//! `calculateScaleDownLimitWithBehaviors`):
//!
//! * every raw recommendation is remembered with its time;
//! * scaling up uses the *smallest* recommendation inside the scale-up window, scaling down the *largest* inside the
//!   scale-down window, so a count only moves when the whole window agrees;
//! * each rate policy limits the change relative to the replica count at the start of its period (the current count
//!   minus what was added, plus what was removed, within the period); `selectPolicy` picks the most permissive
//!   (`Max`), the most restrictive (`Min`), or forbids that direction (`Disabled`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::validation::Problem;

/// `behavior:` as in `autoscaling/v2` HorizontalPodAutoscaler.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    /// Rules for adding replicas; unset fields take Kubernetes' defaults.
    #[serde(default)]
    pub scale_up: Option<ScalingRules>,
    /// Rules for removing replicas; unset fields take Kubernetes' defaults.
    #[serde(default)]
    pub scale_down: Option<ScalingRules>,
}

/// `scaleUp:` / `scaleDown:`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingRules {
    /// How far back recommendations are considered.
    #[serde(default)]
    pub stabilization_window_seconds: Option<u32>,
    /// How the policies combine.
    #[serde(default)]
    pub select_policy: Option<SelectPolicy>,
    /// How fast replicas may change.
    #[serde(default)]
    pub policies: Option<Vec<ScalingPolicy>>,
}

/// `selectPolicy:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum SelectPolicy {
    /// The policy that allows the largest change.
    Max,
    /// The policy that allows the smallest change.
    Min,
    /// No change in this direction.
    Disabled,
}

/// One rate policy: at most `value` pods (or percent) per `periodSeconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingPolicy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub kind: PolicyKind,
    /// The amount of change allowed.
    pub value: u32,
    /// The period the amount applies to.
    pub period_seconds: u32,
}

/// `type:` of a rate policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum PolicyKind {
    /// An absolute number of pods.
    Pods,
    /// A percentage of the replica count at the start of the period.
    Percent,
}

/// One direction's rules with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// The stabilization window.
    pub window: Duration,
    /// How policies combine.
    pub select: SelectPolicy,
    /// The rate policies.
    pub policies: Vec<ScalingPolicy>,
}

/// The HPA's upper bound on `stabilizationWindowSeconds` (one hour).
const MAX_WINDOW_SECONDS: u32 = 3600;
/// The HPA's upper bound on a policy's `periodSeconds` (30 minutes).
const MAX_PERIOD_SECONDS: u32 = 1800;

impl Behavior {
    /// Scale-up rules; defaults: no stabilization, 4 pods or 100 % per 15 s, whichever is more.
    pub fn up(&self) -> Rules {
        resolve(
            self.scale_up.as_ref(),
            0,
            &[
                ScalingPolicy { kind: PolicyKind::Pods, value: 4, period_seconds: 15 },
                ScalingPolicy { kind: PolicyKind::Percent, value: 100, period_seconds: 15 },
            ],
        )
    }

    /// Scale-down rules; defaults: 300 s stabilization, 100 % per 15 s.
    pub fn down(&self) -> Rules {
        resolve(
            self.scale_down.as_ref(),
            300,
            &[ScalingPolicy { kind: PolicyKind::Percent, value: 100, period_seconds: 15 }],
        )
    }

    /// Whether the user wrote any scale-up rule (`policies`, `selectPolicy` or a window). A rule someone wrote —
    /// two pods a minute to spare a database, `Disabled` to freeze the count — is a promise that bursts keep too.
    pub fn names_scale_up(&self) -> bool {
        self.scale_up.as_ref().is_some_and(|rules| {
            rules.policies.is_some() || rules.select_policy.is_some() || rules.stabilization_window_seconds.is_some()
        })
    }

    /// The HPA's validation rules, relative to `behavior`.
    pub fn problems(&self) -> Vec<Problem> {
        [("scaleUp", &self.scale_up), ("scaleDown", &self.scale_down)]
            .into_iter()
            .filter_map(|(name, rules)| rules.as_ref().map(|r| (name, r)))
            .flat_map(|(name, rules)| rules.problems().into_iter().map(move |p| p.under(name)))
            .collect()
    }
}

impl ScalingRules {
    fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(window) = self.stabilization_window_seconds.filter(|w| *w > MAX_WINDOW_SECONDS) {
            problems.push(Problem::new(
                "stabilizationWindowSeconds",
                format!(
                    "{window} is above the HPA's limit of {MAX_WINDOW_SECONDS} seconds; use at most \
                     {MAX_WINDOW_SECONDS}"
                ),
            ));
        }
        match &self.policies {
            Some(policies) if policies.is_empty() && self.select_policy != Some(SelectPolicy::Disabled) => {
                problems.push(Problem::new(
                    "policies",
                    "an empty list allows no change at all; give at least one policy, omit `policies` for the \
                     defaults, or set `selectPolicy: Disabled`",
                ));
            }
            Some(policies) => {
                for (i, policy) in policies.iter().enumerate() {
                    if policy.value == 0 {
                        problems.push(Problem::new(
                            format!("policies[{i}].value"),
                            "must be at least 1; to allow no change in this direction, set `selectPolicy: Disabled`",
                        ));
                    }
                    if !(1..=MAX_PERIOD_SECONDS).contains(&policy.period_seconds) {
                        problems.push(Problem::new(
                            format!("policies[{i}].periodSeconds"),
                            format!(
                                "{} is outside 1..={MAX_PERIOD_SECONDS} seconds; use e.g. 60",
                                policy.period_seconds
                            ),
                        ));
                    }
                }
            }
            None => {}
        }
        problems
    }
}

fn resolve(rules: Option<&ScalingRules>, default_window: u32, default_policies: &[ScalingPolicy]) -> Rules {
    let rules = rules.cloned().unwrap_or_default();
    Rules {
        window: Duration::from_secs(u64::from(rules.stabilization_window_seconds.unwrap_or(default_window))),
        select: rules.select_policy.unwrap_or(SelectPolicy::Max),
        policies: rules.policies.unwrap_or_else(|| default_policies.to_vec()),
    }
}

impl Rules {
    /// A short description for reasons, e.g. `Pods 4/15s, Percent 100/15s, select Max`.
    pub fn describe(&self) -> String {
        let policies: Vec<String> =
            self.policies.iter().map(|p| format!("{:?} {}/{}s", p.kind, p.value, p.period_seconds)).collect();
        format!("{}, select {:?}", policies.join(", "), self.select)
    }

    fn longest_period(&self) -> Duration {
        let longest = self.policies.iter().map(|p| p.period_seconds).max().unwrap_or(0);
        Duration::from_secs(u64::from(longest))
    }
}

/// What bounded a count inside the behavior stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BehaviorBound {
    /// Held below the raw recommendation by the scale-up window.
    UpStabilized,
    /// Held above the raw recommendation by the scale-down window.
    DownStabilized,
    /// Limited by the scale-up rate policies.
    UpLimited,
    /// Limited by the scale-down rate policies.
    DownLimited,
    /// `selectPolicy: Disabled` forbids scaling up.
    UpDisabled,
    /// `selectPolicy: Disabled` forbids scaling down.
    DownDisabled,
}

/// A Percent scale-up limit as the HPA computes it, in float64 and rounded up so that a small count can still grow:
/// `ceil(start × (1 + p/100))` (`calculateScaleUpLimitWithScalingRules`). The float matters at the edges: 12 % up
/// from 25 is 28.000000000000004 in float64, so the HPA allows 29 where exact arithmetic says 28. queue-scaler
/// promises `behavior` means what it means in the HPA, so it repeats the HPA's rounding, error included.
fn percent_up(start: i64, percent: u32) -> i64 {
    (start as f64 * (1.0 + f64::from(percent) / 100.0)).ceil() as i64
}

/// A Percent scale-down limit as the HPA computes it: `int32(start × (1 − p/100))`, float64 truncated
/// (`calculateScaleDownLimitWithBehaviors`). 90 % down from 10 is 0.9999999999999998 there, so the HPA allows 0
/// where exact arithmetic says 1; see [`percent_up`] for why the error is kept.
fn percent_down(start: i64, percent: u32) -> i64 {
    (start as f64 * (1.0 - f64::from(percent) / 100.0)) as i64
}

/// The memory the behavior rules need: recent recommendations and recent scale changes.
#[derive(Debug, Clone, Default)]
pub struct BehaviorState {
    recommendations: VecDeque<(Instant, u32)>,
    scale_ups: VecDeque<(Instant, u32)>,
    scale_downs: VecDeque<(Instant, u32)>,
}

fn within(now: Instant, at: Instant, window: Duration) -> bool {
    now.saturating_duration_since(at) < window
}

impl BehaviorState {
    /// Starts the memory as if the current count had just been recommended, as the HPA does on first sight of a
    /// target: an agent that restarts does not scale down before a full scale-down window has passed.
    pub fn seeded(now: Instant, current: u32) -> BehaviorState {
        BehaviorState { recommendations: VecDeque::from([(now, current)]), ..BehaviorState::default() }
    }

    /// Starts the windows afresh from `current`, as [`BehaviorState::seeded`] does at start, keeping the record of
    /// past scale changes for the rate policies. After a gap in the decisions (a manual hold, a standby spell, an
    /// unreadable target) the recommendations remembered from before say nothing about the count found now.
    pub fn reseed(&mut self, now: Instant, current: u32) {
        self.recommendations = VecDeque::from([(now, current)]);
    }

    /// Brings `desired` within what the windows allow, then remembers `desired` as this tick's recommendation.
    pub fn stabilize(
        &mut self,
        now: Instant,
        current: u32,
        desired: u32,
        up: &Rules,
        down: &Rules,
    ) -> (u32, Option<BehaviorBound>) {
        let mut up_floor = desired;
        let mut down_ceiling = desired;
        for &(at, recommendation) in &self.recommendations {
            if within(now, at, up.window) {
                up_floor = up_floor.min(recommendation);
            }
            if within(now, at, down.window) {
                down_ceiling = down_ceiling.max(recommendation);
            }
        }
        let stabilized = current.max(up_floor).min(down_ceiling);
        let keep = up.window.max(down.window);
        while self.recommendations.front().is_some_and(|&(at, _)| !within(now, at, keep)) {
            self.recommendations.pop_front();
        }
        self.recommendations.push_back((now, desired));
        let bound = match stabilized.cmp(&desired) {
            std::cmp::Ordering::Less => Some(BehaviorBound::UpStabilized),
            std::cmp::Ordering::Greater => Some(BehaviorBound::DownStabilized),
            std::cmp::Ordering::Equal => None,
        };
        (stabilized, bound)
    }

    /// Brings `desired` within the rate policies.
    pub fn limit_rate(
        &self,
        now: Instant,
        current: u32,
        desired: u32,
        up: &Rules,
        down: &Rules,
    ) -> (u32, Option<BehaviorBound>) {
        use std::cmp::Ordering::*;
        match desired.cmp(&current) {
            Greater if up.select == SelectPolicy::Disabled => (current, Some(BehaviorBound::UpDisabled)),
            Less if down.select == SelectPolicy::Disabled => (current, Some(BehaviorBound::DownDisabled)),
            Greater => {
                let limit = self.limit(now, current, up, true).max(current);
                if desired > limit { (limit, Some(BehaviorBound::UpLimited)) } else { (desired, None) }
            }
            Less => {
                let limit = self.limit(now, current, down, false).min(current);
                if desired < limit { (limit, Some(BehaviorBound::DownLimited)) } else { (desired, None) }
            }
            Equal => (desired, None),
        }
    }

    /// The furthest the count may move in one direction now, combining the policies by `selectPolicy`.
    fn limit(&self, now: Instant, current: u32, rules: &Rules, upward: bool) -> u32 {
        let proposals = rules.policies.iter().map(|policy| {
            let period = Duration::from_secs(u64::from(policy.period_seconds));
            let changed = |events: &VecDeque<(Instant, u32)>| -> i64 {
                events.iter().filter(|(at, _)| within(now, *at, period)).map(|(_, n)| i64::from(*n)).sum()
            };
            let start = i64::from(current) - changed(&self.scale_ups) + changed(&self.scale_downs);
            let value = i64::from(policy.value);
            let proposed = match (policy.kind, upward) {
                (PolicyKind::Pods, true) => start + value,
                (PolicyKind::Pods, false) => start - value,
                (PolicyKind::Percent, true) => percent_up(start, policy.value),
                (PolicyKind::Percent, false) => percent_down(start, policy.value),
            };
            proposed.clamp(0, i64::from(u32::MAX)) as u32
        });
        let most_permissive = upward == (rules.select == SelectPolicy::Max);
        let chosen = if most_permissive { proposals.max() } else { proposals.min() };
        chosen.unwrap_or(current)
    }

    /// Remembers a change that was written, for the rate policies.
    pub fn record_scale(&mut self, now: Instant, from: u32, to: u32, up: &Rules, down: &Rules) {
        let (events, keep) = if to > from {
            (&mut self.scale_ups, up.longest_period())
        } else {
            (&mut self.scale_downs, down.longest_period())
        };
        while events.front().is_some_and(|&(at, _)| !within(now, at, keep)) {
            events.pop_front();
        }
        if to != from {
            events.push_back((now, from.abs_diff(to)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(window: u32, select: SelectPolicy, policies: &[(PolicyKind, u32, u32)]) -> Rules {
        Rules {
            window: Duration::from_secs(u64::from(window)),
            select,
            policies: policies
                .iter()
                .map(|&(kind, value, period_seconds)| ScalingPolicy { kind, value, period_seconds })
                .collect(),
        }
    }

    #[test]
    fn defaults_match_kubernetes() {
        let b = Behavior::default();
        assert_eq!(b.up(), rules(0, SelectPolicy::Max, &[(PolicyKind::Pods, 4, 15), (PolicyKind::Percent, 100, 15)]));
        assert_eq!(b.down(), rules(300, SelectPolicy::Max, &[(PolicyKind::Percent, 100, 15)]));
    }

    #[test]
    fn partial_rules_keep_the_other_defaults() {
        let b = Behavior {
            scale_down: Some(ScalingRules { stabilization_window_seconds: Some(60), ..ScalingRules::default() }),
            ..Behavior::default()
        };
        assert_eq!(b.down().window, Duration::from_secs(60));
        assert_eq!(b.down().policies, Behavior::default().down().policies);
    }

    #[test]
    fn default_scale_up_from_one_goes_to_five_then_nine() {
        let t0 = Instant::now();
        let (up, down) = (Behavior::default().up(), Behavior::default().down());
        let mut state = BehaviorState::seeded(t0, 1);
        assert_eq!(state.limit_rate(t0, 1, 7, &up, &down), (5, Some(BehaviorBound::UpLimited)));
        state.record_scale(t0, 1, 5, &up, &down);
        // Still inside the 15 s period that began at 1 replica: nothing more.
        let t10 = t0 + Duration::from_secs(10);
        assert_eq!(state.limit_rate(t10, 5, 7, &up, &down), (5, Some(BehaviorBound::UpLimited)));
        // One period later the start is 5: Pods allows 9, Percent 10; 7 is within.
        let t15 = t0 + Duration::from_secs(15);
        assert_eq!(state.limit_rate(t15, 5, 7, &up, &down), (7, None));
        assert_eq!(state.limit_rate(t15, 5, 30, &up, &down), (10, Some(BehaviorBound::UpLimited)));
    }

    #[test]
    fn select_min_takes_the_most_restrictive_policy() {
        let t0 = Instant::now();
        let up = rules(0, SelectPolicy::Min, &[(PolicyKind::Pods, 4, 15), (PolicyKind::Percent, 50, 15)]);
        let down = Behavior::default().down();
        let state = BehaviorState::default();
        // Pods: 14, Percent: ceil(10 * 1.5) = 15 → Min picks 14.
        assert_eq!(state.limit_rate(t0, 10, 40, &up, &down).0, 14);
        // Percent rounds up: from 1, 50 % still allows 2.
        assert_eq!(state.limit_rate(t0, 1, 40, &up, &down).0, 2);
    }

    #[test]
    fn scale_down_percent_rounds_down_and_counts_earlier_changes() {
        let t0 = Instant::now();
        let up = Behavior::default().up();
        let down = rules(0, SelectPolicy::Max, &[(PolicyKind::Percent, 50, 60)]);
        let mut state = BehaviorState::default();
        assert_eq!(state.limit_rate(t0, 9, 1, &up, &down).0, 4);
        state.record_scale(t0, 9, 4, &up, &down);
        // Within the same minute the period started at 9: floor(9 * 0.5) = 4, so no further step.
        let t30 = t0 + Duration::from_secs(30);
        assert_eq!(state.limit_rate(t30, 4, 1, &up, &down), (4, Some(BehaviorBound::DownLimited)));
        let t60 = t0 + Duration::from_secs(60);
        assert_eq!(state.limit_rate(t60, 4, 1, &up, &down).0, 2);
    }

    #[test]
    fn percent_limits_round_in_float64_as_the_hpa_does() {
        // Go: int32(float64(10) * (1 - 90.0/100)) is 0 and int32(math.Ceil(float64(25) * (1 + 12.0/100))) is 29;
        // exact arithmetic would say 1 and 28.
        assert_eq!(percent_down(10, 90), 0);
        assert_eq!(percent_up(25, 12), 29);
        assert_eq!(percent_down(9, 50), 4);
        assert_eq!(percent_up(1, 50), 2);
        assert_eq!(percent_down(7, 100), 0);
        let t0 = Instant::now();
        let up = rules(0, SelectPolicy::Max, &[(PolicyKind::Percent, 12, 15)]);
        let down = rules(0, SelectPolicy::Max, &[(PolicyKind::Percent, 90, 15)]);
        let state = BehaviorState::default();
        assert_eq!(state.limit_rate(t0, 25, 40, &up, &down), (29, Some(BehaviorBound::UpLimited)));
        assert_eq!(state.limit_rate(t0, 10, 0, &up, &down), (0, None));
    }

    #[test]
    fn disabled_forbids_the_direction() {
        let t0 = Instant::now();
        let up = rules(0, SelectPolicy::Disabled, &[]);
        let down = rules(0, SelectPolicy::Disabled, &[]);
        let state = BehaviorState::default();
        assert_eq!(state.limit_rate(t0, 3, 9, &up, &down), (3, Some(BehaviorBound::UpDisabled)));
        assert_eq!(state.limit_rate(t0, 3, 1, &up, &down), (3, Some(BehaviorBound::DownDisabled)));
    }

    #[test]
    fn scale_down_waits_for_the_whole_window_to_agree() {
        let t0 = Instant::now();
        let (up, down) = (Behavior::default().up(), Behavior::default().down());
        let mut state = BehaviorState::seeded(t0, 8);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(state.stabilize(at(5), 8, 2, &up, &down), (8, Some(BehaviorBound::DownStabilized)));
        assert_eq!(state.stabilize(at(200), 8, 3, &up, &down), (8, Some(BehaviorBound::DownStabilized)));
        // The seed (t0) has left the 300 s window, but 3 (at 200 s) is still in it.
        assert_eq!(state.stabilize(at(301), 8, 2, &up, &down), (3, Some(BehaviorBound::DownStabilized)));
        assert_eq!(state.stabilize(at(501), 3, 2, &up, &down), (2, None));
    }

    #[test]
    fn scale_up_window_uses_the_smallest_recent_recommendation() {
        let t0 = Instant::now();
        let up = rules(60, SelectPolicy::Max, &[(PolicyKind::Pods, 100, 15)]);
        let down = Behavior::default().down();
        let mut state = BehaviorState::default();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(state.stabilize(at(0), 2, 6, &up, &down), (6, None));
        assert_eq!(state.stabilize(at(10), 2, 3, &up, &down).0, 3);
        assert_eq!(state.stabilize(at(20), 2, 9, &up, &down), (3, Some(BehaviorBound::UpStabilized)));
        assert_eq!(state.stabilize(at(71), 2, 9, &up, &down), (9, None));
    }

    #[test]
    fn validation_names_the_policy_field() {
        let b = Behavior {
            scale_up: Some(ScalingRules {
                stabilization_window_seconds: Some(4000),
                policies: Some(vec![ScalingPolicy { kind: PolicyKind::Pods, value: 0, period_seconds: 0 }]),
                ..ScalingRules::default()
            }),
            scale_down: Some(ScalingRules { policies: Some(vec![]), ..ScalingRules::default() }),
        };
        let paths: Vec<String> = b.problems().into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "scaleUp.stabilizationWindowSeconds",
                "scaleUp.policies[0].value",
                "scaleUp.policies[0].periodSeconds",
                "scaleDown.policies"
            ]
        );
    }
}
