//! A `ScalingSpec` in plain numbers: legacy spellings (`maxStep`, `stabilization`,
//! `fallbackReplicas`) translated into the HPA/KEDA ones, defaults resolved.

use floodgate_crds::v1alpha1::{
    DEFAULT_FAILURE_THRESHOLD, FallbackBehavior, PolicyType, ScalingRules, ScalingSpec,
    SelectPolicy, default_scale_down, default_scale_up,
};

/// One HPA step policy: `value` pods or percent within any `period_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepPolicy {
    pub kind: StepKind,
    pub value: u32,
    pub period_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    Pods,
    Percent,
}

/// HPA `selectPolicy`: the largest change, the smallest, or none in this direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

/// The limits on moving in one direction (HPA `behavior.scaleUp/Down`).
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub stabilization_ms: u64,
    /// This direction's tolerance band around 1.0 (HPA 1.33).
    pub tolerance: f64,
    pub policies: Vec<StepPolicy>,
    pub select: Select,
}

impl Rules {
    /// The legacy `maxStep {pods, percent, period}`: two policies sharing one period, Max.
    pub fn max_step(stabilization_ms: u64, pods: u32, percent: u32, period_ms: u64) -> Self {
        let policy = |kind, value| StepPolicy {
            kind,
            value,
            period_ms,
        };
        Self {
            stabilization_ms,
            tolerance: 0.1,
            policies: vec![
                policy(StepKind::Pods, pods),
                policy(StepKind::Percent, percent),
            ],
            select: Select::Max,
        }
    }

    /// The longest period of this direction's policies.
    pub fn longest_period_ms(&self) -> u64 {
        self.policies.iter().map(|p| p.period_ms).max().unwrap_or(0)
    }
}

/// KEDA `fallback`, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fallback {
    pub replicas: u32,
    pub failure_threshold: u32,
    pub behavior: FallbackBehavior,
}

impl Fallback {
    /// KEDA's four behaviours.
    pub fn target(&self, current: u32) -> u32 {
        match self.behavior {
            FallbackBehavior::Static => self.replicas,
            FallbackBehavior::CurrentReplicas => current,
            FallbackBehavior::CurrentReplicasIfHigher => current.max(self.replicas),
            FallbackBehavior::CurrentReplicasIfLower => current.min(self.replicas),
        }
    }
}

/// A `ScalingSpec` in plain numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub min: u32,
    pub max: u32,
    pub waiting_per_replica: u64,
    pub p95_target_ms: f64,
    pub up: Rules,
    pub down: Rules,
    /// KPA panic window: averages the signals to detect a burst.
    pub panic_window_ms: u64,
    /// KPA stable window: averages the signals to recommend; panic lasts this long after
    /// the last burst.
    pub stable_window_ms: u64,
    pub panic_threshold: f64,
    /// What to run when every signal fails; `None` means "stay where you are".
    pub fallback: Option<Fallback>,
    /// Most replicas latency may ask for beyond what the queue justifies.
    pub latency_max: u32,
}

fn n(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn rules(r: &ScalingRules, default: &ScalingRules, shared_tolerance: f64) -> Rules {
    let stabilization_ms = match (r.stabilization, r.stabilization_window_seconds) {
        (Some(d), _) => d.as_millis(),
        (None, Some(s)) => u64::from(n(s)) * 1000,
        (None, None) => default.stabilization.map_or(0, |d| d.as_millis()),
    };
    let policies = match (&r.policies, &r.max_step) {
        (Some(ps), _) => ps
            .iter()
            .map(|p| StepPolicy {
                kind: match p.type_ {
                    PolicyType::Pods => StepKind::Pods,
                    PolicyType::Percent => StepKind::Percent,
                },
                value: n(p.value),
                period_ms: u64::from(n(p.period_seconds)) * 1000,
            })
            .collect(),
        (None, step) => {
            let s = step.as_ref().or(default.max_step.as_ref());
            s.map_or_else(Vec::new, |s| {
                Rules::max_step(0, n(s.pods), n(s.percent), s.period.as_millis()).policies
            })
        }
    };
    Rules {
        stabilization_ms,
        tolerance: r.tolerance.unwrap_or(shared_tolerance).clamp(0.0, 1.0),
        policies,
        select: match r.select_policy.unwrap_or(SelectPolicy::Max) {
            SelectPolicy::Max => Select::Max,
            SelectPolicy::Min => Select::Min,
            SelectPolicy::Disabled => Select::Disabled,
        },
    }
}

impl Policy {
    pub fn from_spec(s: &ScalingSpec) -> Self {
        let min = n(s.min_replicas);
        let max = n(s.max_replicas).max(min);
        let tolerance = s.tolerance.clamp(0.0, 1.0);
        let legacy = s.fallback_replicas.map(|r| Fallback {
            replicas: n(r),
            failure_threshold: n(DEFAULT_FAILURE_THRESHOLD),
            behavior: FallbackBehavior::Static,
        });
        let fallback = s.fallback.as_ref().map(|f| Fallback {
            replicas: n(f.replicas),
            failure_threshold: n(f.failure_threshold).max(1),
            behavior: f.behavior,
        });
        Self {
            min,
            max,
            waiting_per_replica: u64::try_from(s.waiting_per_replica).unwrap_or(1).max(1),
            p95_target_ms: s.p95_target.as_millis().max(1) as f64,
            up: rules(&s.scale_up, &default_scale_up(), tolerance),
            down: rules(&s.scale_down, &default_scale_down(), tolerance),
            panic_window_ms: s.panic.window.as_millis(),
            stable_window_ms: s.panic.stable_window_or_default().as_millis(),
            panic_threshold: s.panic.threshold,
            fallback: fallback.or(legacy),
            latency_max: s
                .latency_max_replicas
                .map(n)
                .unwrap_or(min.saturating_mul(2))
                .clamp(min, max),
        }
    }

    /// The longest period any step policy looks back over.
    pub fn longest_period_ms(&self) -> u64 {
        self.up
            .longest_period_ms()
            .max(self.down.longest_period_ms())
    }
}

/// The scaling spec's cross-field rules (also CEL rules at the API server), for a runner
/// without one: each problem as a sentence naming the field.
pub fn spec_problems(s: &ScalingSpec) -> Vec<String> {
    let mut problems = Vec::new();
    for (dir, r) in [("scaleUp", &s.scale_up), ("scaleDown", &s.scale_down)] {
        if r.max_step.is_some() && r.policies.is_some() {
            problems.push(format!(
                "scaling.{dir}: maxStep and policies are two spellings of the step limits: use one"
            ));
        }
        if r.stabilization.is_some() && r.stabilization_window_seconds.is_some() {
            problems.push(format!(
                "scaling.{dir}: stabilization and stabilizationWindowSeconds are two spellings of the window: use one"
            ));
        }
        if let Some(m) = &r.max_step
            && (m.pods < 1 || m.percent < 1 || m.period.as_millis() == 0)
        {
            problems.push(format!(
                "scaling.{dir}.maxStep needs pods >= 1, percent >= 1 and a positive period"
            ));
        }
        match &r.policies {
            Some(ps) if ps.is_empty() => {
                problems.push(format!("scaling.{dir}.policies needs at least one policy"));
            }
            Some(ps)
                if ps
                    .iter()
                    .any(|p| p.value < 1 || !(1..=1800).contains(&p.period_seconds)) =>
            {
                problems.push(format!(
                    "scaling.{dir}.policies need value >= 1 and periodSeconds within [1, 1800]"
                ));
            }
            _ => {}
        }
        if r.tolerance.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
            problems.push(format!("scaling.{dir}.tolerance must be within [0, 1]"));
        }
    }
    if s.fallback_replicas.is_some() && s.fallback.is_some() {
        problems.push(
            "scaling: fallbackReplicas and fallback are two spellings of the fallback: use one"
                .into(),
        );
    }
    if s.fallback.as_ref().is_some_and(|f| f.failure_threshold < 1) {
        problems.push("scaling.fallback.failureThreshold must be at least 1".into());
    }
    if let Some(stable) = s.panic.stable_window
        && s.panic.window >= stable
    {
        problems.push(format!(
            "scaling.panic.window {} must be shorter than stableWindow {stable}",
            s.panic.window
        ));
    }
    problems
}
