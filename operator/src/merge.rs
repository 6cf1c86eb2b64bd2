//! The runtime document as the union of every QueueConfig and the active Campaigns. Pure:
//! the caller lists the resources, this decides what the app should run.
//!
//! A QueueConfig no Campaign names is a standalone waiting room and is published. One that
//! Campaigns name is published while at least one of them is live (not Ended, not being
//! deleted): ending or deleting a campaign takes its queues out of the document. A deleted
//! campaign's queues are also *retired* (remembered by the caller), so they stay out once
//! the campaign object is gone, until a live campaign names them again or the QueueConfig is
//! re-created. Breakers and
//! TTLs come from the Prewarming/Active campaigns; when several set the same thing, the one
//! that started first wins (then by name), so the result does not depend on listing order.

use chrono::{DateTime, Utc};
use floodgate_crds::{
    runtime::{QueueSettings, RuntimeConfig},
    v1alpha1::{CampaignSpec, Phase, QueueConfigSpec},
};

use crate::phase::commands_resources;

pub struct QueueSource<'a> {
    /// metadata.name, the handle Campaigns use.
    pub name: &'a str,
    /// Retired by a deleted campaign (and not re-created since).
    pub retired: bool,
    pub spec: &'a QueueConfigSpec,
}

pub struct CampaignSource<'a> {
    pub name: &'a str,
    pub spec: &'a CampaignSpec,
    /// Start of the window in effect (`startsAt`, or a recurrence's current occurrence).
    pub started: Option<DateTime<Utc>>,
    pub phase: Phase,
    pub deleting: bool,
}

impl CampaignSource<'_> {
    fn live(&self) -> bool {
        !self.deleting && self.phase != Phase::Ended
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct Merged {
    /// Version 0: the store assigns the real one with compare-and-set.
    pub config: RuntimeConfig,
    /// QueueConfigs skipped because another one (earlier by name) already uses their queueId.
    pub duplicates: Vec<Duplicate>,
}

/// A QueueConfig left out of the document because another one publishes its queueId. The
/// document is keyed by queue id, so with several namespaces watched (`ns/name` handles) the
/// first handle in order wins, whatever order the resources were listed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duplicate {
    pub queue_id: String,
    /// The QueueConfig left out.
    pub loser: String,
    /// The one published instead.
    pub winner: String,
}

pub fn merge(queues: &[QueueSource<'_>], campaigns: &[CampaignSource<'_>]) -> Merged {
    let mut out = Merged::default();
    let mut queues: Vec<_> = queues.iter().collect();
    queues.sort_by_key(|q| q.name);
    let mut publishers = std::collections::BTreeMap::new();
    for q in queues {
        let claimants: Vec<_> = campaigns
            .iter()
            .filter(|c| c.spec.queues.iter().any(|n| n == q.name))
            .collect();
        let live_claim = claimants.iter().any(|c| c.live());
        if !live_claim && (!claimants.is_empty() || q.retired) {
            continue;
        }
        if let Some(winner) = publishers.get(&q.spec.queue_id) {
            out.duplicates.push(Duplicate {
                queue_id: q.spec.queue_id.clone(),
                loser: q.name.to_owned(),
                winner: String::from(*winner),
            });
            continue;
        }
        publishers.insert(q.spec.queue_id.clone(), q.name);
        out.config
            .queues
            .insert(q.spec.queue_id.clone(), q.spec.settings.clone());
    }

    let mut active: Vec<_> = campaigns
        .iter()
        .filter(|c| !c.deleting && commands_resources(c.phase))
        .collect();
    active.sort_by_key(|c| (c.started, c.name));
    let breakers = active
        .iter()
        .filter_map(|c| c.spec.circuit_breakers.as_ref());
    let cb = &mut out.config.circuit_breakers;
    if let Some(pg) = breakers.clone().find_map(|b| b.postgres.clone()) {
        cb.postgres = pg;
    }
    if let Some(r) = breakers.clone().find_map(|b| b.redis.clone()) {
        cb.redis = r;
    }
    if let Some(ttls) = active
        .iter()
        .find_map(|c| c.spec.redis.as_ref().and_then(|r| r.ttls.clone()))
    {
        out.config.ttls = ttls;
    }
    out
}

/// True when two documents say the same thing (versions aside), so an unchanged merge does
/// not bump the version and wake every app replica every 5 s.
pub fn same_content(a: &RuntimeConfig, b: &RuntimeConfig) -> bool {
    RuntimeConfig {
        version: 0,
        ..a.clone()
    } == RuntimeConfig {
        version: 0,
        ..b.clone()
    }
}

/// A queue's settings as published, for a QueueConfig's status.
pub fn published_settings<'a>(cfg: &'a RuntimeConfig, queue_id: &str) -> Option<&'a QueueSettings> {
    cfg.queues.get(queue_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use floodgate_crds::{BreakerState, Dur, v1alpha1::Campaign};

    fn campaign(queues: &[&str], starts: &str) -> CampaignSpec {
        let mut c: Campaign =
            serde_yaml::from_str(include_str!("../../crds/examples/campaign.yaml"))
                .expect("example");
        c.spec.queues = queues.iter().map(|s| (*s).to_owned()).collect();
        c.spec.schedule.starts_at = Some(starts.parse().expect("time"));
        c.spec
    }

    /// A campaign that is not being deleted and started at its `startsAt`.
    fn source<'a>(name: &'a str, spec: &'a CampaignSpec, phase: Phase) -> CampaignSource<'a> {
        CampaignSource {
            name,
            spec,
            started: spec.schedule.starts_at,
            phase,
            deleting: false,
        }
    }

    fn qc(id: &str, max: u32) -> QueueConfigSpec {
        QueueConfigSpec {
            queue_id: id.into(),
            settings: QueueSettings {
                max_active_users: max,
                ..Default::default()
            },
        }
    }

    #[test]
    fn standalone_and_live_queues_are_published_ended_ones_are_not() {
        let (a, b, c) = (qc("alone", 1), qc("live", 2), qc("over", 3));
        let (live, over) = (
            campaign(&["b"], "2026-12-24T10:00:00Z"),
            campaign(&["c"], "2026-12-24T10:00:00Z"),
        );
        let m = merge(
            &[
                QueueSource {
                    name: "a",
                    spec: &a,
                    retired: false,
                },
                QueueSource {
                    name: "b",
                    spec: &b,
                    retired: false,
                },
                QueueSource {
                    name: "c",
                    spec: &c,
                    retired: false,
                },
            ],
            &[
                source("l", &live, Phase::Active),
                source("o", &over, Phase::Ended),
            ],
        );
        assert_eq!(
            m.config.queues.keys().collect::<Vec<_>>(),
            ["alone", "live"]
        );
        assert_eq!(m.config.queues["live"].max_active_users, 2);
    }

    #[test]
    fn deleting_a_campaign_removes_its_queues() {
        let q = qc("concert-42", 500);
        let c = campaign(&["concert-42"], "2026-12-24T10:00:00Z");
        let qs = [QueueSource {
            name: "concert-42",
            spec: &q,
            retired: false,
        }];
        let live = merge(&qs, &[source("x", &c, Phase::Active)]);
        assert!(live.config.queues.contains_key("concert-42"));
        let gone = merge(
            &qs,
            &[CampaignSource {
                deleting: true,
                ..source("x", &c, Phase::Active)
            }],
        );
        assert!(gone.config.queues.is_empty());
        // Once the campaign object is gone, retirement keeps the queue out...
        let retired = [QueueSource {
            name: "concert-42",
            spec: &q,
            retired: true,
        }];
        assert!(merge(&retired, &[]).config.queues.is_empty());
        // ...until a live campaign names it again.
        let back = merge(&retired, &[source("y", &c, Phase::Prewarming)]);
        assert!(back.config.queues.contains_key("concert-42"));
    }

    #[test]
    fn earliest_active_campaign_wins_breakers_and_ttls_and_duplicates_are_reported() {
        let mut early = campaign(&[], "2026-12-24T09:00:00Z");
        let mut late = campaign(&[], "2026-12-24T10:00:00Z");
        early
            .circuit_breakers
            .as_mut()
            .expect("example has breakers")
            .postgres
            .as_mut()
            .expect("pg")
            .state = BreakerState::ForcedOpen;
        late.redis
            .as_mut()
            .expect("example has redis")
            .ttls
            .as_mut()
            .expect("ttls")
            .seat_hold = Dur::from_secs(60);
        early.redis = None;
        let (q1, q2) = (qc("same", 1), qc("same", 2));
        let m = merge(
            &[
                QueueSource {
                    name: "z",
                    spec: &q2,
                    retired: false,
                },
                QueueSource {
                    name: "a",
                    spec: &q1,
                    retired: false,
                },
            ],
            &[
                source("late", &late, Phase::Active),
                source("early", &early, Phase::Active),
            ],
        );
        assert_eq!(
            m.config.circuit_breakers.postgres.state,
            BreakerState::ForcedOpen
        );
        assert_eq!(
            m.config.ttls.seat_hold,
            Dur::from_secs(60),
            "only the late one sets ttls"
        );
        assert_eq!(m.config.queues["same"].max_active_users, 1);
        assert_eq!(
            m.duplicates,
            [Duplicate {
                queue_id: "same".into(),
                loser: "z".into(),
                winner: "a".into()
            }]
        );
        assert!(m.config.validate().is_ok());
    }

    /// Watching every namespace: two installs that both call their queue "tickets" cannot
    /// share the document (it is keyed by queue id). The first `namespace/name` wins in any
    /// listing order, and the other is reported naming the winner.
    #[test]
    fn a_queue_id_used_in_two_namespaces_is_published_once_deterministically() {
        let (a, b) = (qc("tickets", 100), qc("tickets", 200));
        let source = |name, spec| QueueSource {
            name,
            spec,
            retired: false,
        };
        let expected = Duplicate {
            queue_id: "tickets".into(),
            loser: "shop-b/tickets".into(),
            winner: "shop-a/tickets".into(),
        };
        for order in [
            [source("shop-a/tickets", &a), source("shop-b/tickets", &b)],
            [source("shop-b/tickets", &b), source("shop-a/tickets", &a)],
        ] {
            let m = merge(&order, &[]);
            assert_eq!(m.config.queues["tickets"].max_active_users, 100);
            assert_eq!(m.duplicates, std::slice::from_ref(&expected));
        }
    }

    #[test]
    fn versions_do_not_count_as_content() {
        let a = RuntimeConfig {
            version: 1,
            ..Default::default()
        };
        let b = RuntimeConfig {
            version: 9,
            ..Default::default()
        };
        assert!(same_content(&a, &b));
    }
}
