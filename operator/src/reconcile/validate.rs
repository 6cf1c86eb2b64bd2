//! Validate: the checks the API server's schema already makes plus the cross-field ones
//! (also CEL rules there), repeated here because the local runner has no API server and an
//! invalid spec must stop the pipeline before anything is acted on.

use floodgate_crds::{
    runtime::{CircuitBreakers, RuntimeConfig, is_valid_queue_id},
    v1alpha1::{CampaignSpec, QueueConfigSpec, ScalingSpec, Schedule, Target},
};

pub fn campaign(spec: &CampaignSpec) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let s = &spec.scaling;
    target(&spec.target, &mut problems);
    schedule(&spec.schedule, &mut problems);
    if let Some(r) = &spec.restore.ramp_down
        && (r.pods.is_some() == r.percent.is_some() || r.period_seconds < 1)
    {
        problems.push(
            "restore.rampDown takes exactly one of pods and percent, and periodSeconds >= 1".into(),
        );
    }
    scaling(s, &mut problems);
    for q in &spec.queues {
        if !is_valid_queue_id(q) {
            problems.push(format!("queues: {q:?} is not a QueueConfig name"));
        }
    }
    if let Some(m) = spec.redis.as_ref().and_then(|r| r.maxmemory.as_deref()) {
        let digits = m.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &m[digits.len()..];
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || !["", "b", "kb", "mb", "gb"].contains(&unit)
        {
            problems.push(format!(
                "redis.maxmemory {m:?} must be a byte count with an optional kb/mb/gb unit"
            ));
        }
    }
    trigger_problems(spec, &mut problems);
    // Breakers and TTLs are checked by the same code the app uses to accept the document.
    let mut doc = RuntimeConfig::default();
    if let Some(b) = &spec.circuit_breakers {
        doc.circuit_breakers = CircuitBreakers {
            postgres: b.postgres.clone().unwrap_or_default(),
            redis: b.redis.clone().unwrap_or_default(),
        };
    }
    if let Some(t) = spec.redis.as_ref().and_then(|r| r.ttls.clone()) {
        doc.ttls = t;
    }
    if let Err(e) = doc.validate() {
        problems.push(e.to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The scaling fields' ranges and cross-field rules (CEL at the API server).
fn scaling(s: &ScalingSpec, problems: &mut Vec<String>) {
    if s.min_replicas < 1 || s.max_replicas < 1 {
        problems.push("scaling.minReplicas and maxReplicas must be at least 1".into());
    }
    if s.min_replicas > s.max_replicas {
        problems.push(format!(
            "scaling.minReplicas {} exceeds maxReplicas {}",
            s.min_replicas, s.max_replicas
        ));
    }
    for (name, v) in [
        ("fallbackReplicas", s.fallback_replicas),
        ("fallback.replicas", s.fallback.as_ref().map(|f| f.replicas)),
        ("latencyMaxReplicas", s.latency_max_replicas),
    ] {
        if let Some(v) = v
            && !(s.min_replicas..=s.max_replicas).contains(&v)
        {
            problems.push(format!(
                "scaling.{name} {v} is outside [minReplicas, maxReplicas]"
            ));
        }
    }
    if s.waiting_per_replica < 1 {
        problems.push("scaling.waitingPerReplica must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&s.tolerance) {
        problems.push("scaling.tolerance must be within [0, 1]".into());
    }
    if s.p95_target.as_millis() == 0 {
        problems.push("scaling.p95Target must be positive".into());
    }
    if s.panic.threshold <= 1.0 {
        problems.push("scaling.panic.threshold must be above 1".into());
    }
    problems.extend(crate::scaling::spec_problems(s));
}

/// The CEL rules of `scaling.triggers` and the authRefs.
fn trigger_problems(spec: &CampaignSpec, problems: &mut Vec<String>) {
    let s = &spec.scaling;
    for (i, t) in s.triggers.iter().enumerate() {
        let at = format!("scaling.triggers[{i}] ({})", t.name);
        if s.triggers.iter().filter(|u| u.name == t.name).count() > 1 {
            problems.push(format!("{at}: trigger names must be unique"));
        }
        if t.prometheus.is_some() == t.redis_stream.is_some() {
            problems.push(format!(
                "{at}: needs exactly one of prometheus or redisStream"
            ));
        }
        if let Some(p) = &t.prometheus
            && !(p.threshold > 0.0 && p.threshold.is_finite())
        {
            problems.push(format!("{at}: threshold must be above 0"));
        }
        if let Some(r) = &t.redis_stream
            && r.pending_entries_count.is_some() == r.lag_count.is_some()
        {
            problems.push(format!(
                "{at}: needs exactly one of pendingEntriesCount or lagCount"
            ));
        }
    }
    let prom_refs = s
        .metrics
        .prometheus
        .iter()
        .filter_map(|p| p.auth_ref.as_ref());
    let trigger_refs = s
        .triggers
        .iter()
        .filter_map(|t| t.prometheus.as_ref()?.auth_ref.as_ref());
    for a in prom_refs.chain(trigger_refs) {
        if a.bearer_token_key.is_some() && a.username_key.is_some() {
            problems.push(format!(
                "authRef {}: use bearerTokenKey or usernameKey/passwordKey, not both",
                a.secret_name
            ));
        }
    }
}

fn target(t: &Target, problems: &mut Vec<String>) {
    match (&t.deployment, &t.scale_target_ref) {
        (Some(d), None) if !d.is_empty() => {}
        (None, Some(r)) => {
            let known = matches!(
                (r.api_version.as_str(), r.kind.as_str()),
                ("apps/v1", "Deployment" | "StatefulSet") | ("argoproj.io/v1alpha1", "Rollout")
            );
            if !known {
                problems.push(format!(
                    "target.scaleTargetRef {} {} is not one the operator scales (apps/v1 \
                     Deployment or StatefulSet, argoproj.io/v1alpha1 Rollout)",
                    r.api_version, r.kind
                ));
            }
            if r.name.is_empty() {
                problems.push("target.scaleTargetRef.name must be set".into());
            }
        }
        _ => problems.push("set exactly one of target.deployment and target.scaleTargetRef".into()),
    }
}

fn schedule(s: &Schedule, problems: &mut Vec<String>) {
    match (s.starts_at, s.ends_at, &s.recurrence) {
        (Some(a), Some(b), None) if b <= a => {
            problems.push("schedule.endsAt must be after startsAt".into());
        }
        (Some(_), Some(_), None) => {}
        (None, None, Some(_)) => {
            if let Err(e) = crate::window::window_at(s, chrono::Utc::now()) {
                problems.push(e);
            }
        }
        _ => problems
            .push("schedule: set either startsAt and endsAt, or recurrence, not both".into()),
    }
}

pub fn queue_config(spec: &QueueConfigSpec) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if !is_valid_queue_id(&spec.queue_id) {
        problems.push(format!(
            "queueId {:?} must be 1-63 characters of a-z, 0-9 and '-'",
            spec.queue_id
        ));
    }
    spec.settings.collect_problems("spec", &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floodgate_crds::v1alpha1::Campaign;

    fn example() -> CampaignSpec {
        let c: Campaign =
            serde_yaml::from_str(include_str!("../../../crds/examples/campaign.yaml"))
                .expect("example");
        c.spec
    }

    #[test]
    fn the_example_is_valid() {
        assert_eq!(campaign(&example()), Ok(()));
        let c: Campaign = serde_yaml::from_str(include_str!(
            "../../../crds/examples/campaign-behavior.yaml"
        ))
        .expect("behavior example");
        assert_eq!(campaign(&c.spec), Ok(()));
    }

    #[test]
    fn two_spellings_of_one_scaling_setting_are_refused() {
        let c: Campaign = serde_yaml::from_str(include_str!(
            "../../../crds/examples/invalid/campaign-cel-bad.yaml"
        ))
        .expect("cel-bad example");
        let problems = campaign(&c.spec).expect_err("invalid").join("\n");
        for needle in [
            "scaleUp: maxStep and policies",
            "scaleDown: stabilization and stabilizationWindowSeconds",
            "fallbackReplicas and fallback",
        ] {
            assert!(problems.contains(needle), "{needle} missing in {problems}");
        }
    }

    #[test]
    fn cross_field_rules_are_enforced_without_an_api_server() {
        let mut s = example();
        s.scaling.min_replicas = 50;
        s.schedule.ends_at = s.schedule.starts_at;
        s.target.scale_target_ref = Some(floodgate_crds::v1alpha1::ScaleTargetRef {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "x".into(),
        });
        s.redis.as_mut().expect("redis").maxmemory = Some("lots".into());
        let problems = campaign(&s).expect_err("invalid").join("\n");
        for needle in [
            "minReplicas 50 exceeds",
            "endsAt must be after",
            "fallbackReplicas 4 is outside",
            "redis.maxmemory",
            "set exactly one of target.deployment and target.scaleTargetRef",
        ] {
            assert!(problems.contains(needle), "{needle} missing in {problems}");
        }
    }

    #[test]
    fn trigger_rules_are_enforced_without_an_api_server() {
        let ok: Campaign = serde_yaml::from_str(include_str!(
            "../../../crds/examples/campaign-triggers.yaml"
        ))
        .expect("example");
        assert_eq!(campaign(&ok.spec), Ok(()));
        let bad: Campaign = serde_yaml::from_str(include_str!(
            "../../../crds/examples/invalid/campaign-triggers-bad.yaml"
        ))
        .expect("structurally valid");
        let problems = campaign(&bad.spec).expect_err("invalid").join("\n");
        for needle in [
            "triggers[0] (twice): trigger names must be unique",
            "triggers[0] (twice): needs exactly one of prometheus or redisStream",
            "triggers[0] (twice): threshold must be above 0",
            "triggers[1] (twice): needs exactly one of pendingEntriesCount or lagCount",
            "authRef p: use bearerTokenKey or usernameKey/passwordKey, not both",
        ] {
            assert!(problems.contains(needle), "{needle} missing in {problems}");
        }
    }

    #[test]
    fn queue_config_checks_the_id_and_the_settings() {
        let mut q = QueueConfigSpec {
            queue_id: "Bad_Id".into(),
            settings: Default::default(),
        };
        q.settings.admit_per_minute = 0;
        let problems = queue_config(&q).expect_err("invalid").join("\n");
        assert!(
            problems.contains("queueId") && problems.contains("admitPerMinute"),
            "{problems}"
        );
    }
}
