//! First-come-first-served coupon drop (the coupon report): many distinct users hammer one
//! campaign; afterwards the run checks that no more coupons were issued than the cap and
//! that no user got two.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::Invariant;
use super::api::{email_for, login_as, number_at};
use crate::metrics::{Metrics, TagSet};
use crate::vu::Vu;

pub fn setup(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        // There is no public campaign list; the campaign comes from whoever created it.
        if vu.param("campaign_id").is_none() {
            anyhow::bail!("coupon-drop needs --param campaign_id=ID (from POST /coupon-campaigns)");
        }
        Ok(())
    })
}

/// One fresh user per iteration (a new vuser each time, as with nGrinder's many users);
/// `--param reuse_users=true` keeps one user per VU instead.
pub fn issue(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let reuse = vu.param("reuse_users").as_deref() == Some("true");
        if vu.state.access_token.is_none() || !reuse {
            let slot = format!("c{}-{}", vu.id, if reuse { 0 } else { vu.iteration });
            let email = email_for(vu, &slot);
            login_as(vu, &email).await?;
        }
        let id = vu.param("campaign_id").unwrap_or_default();
        let r = vu
            .post(format!("/api/v1/coupon-campaigns/{id}/issue"))
            .name("coupon-issue")
            .expect(&[201, 409, 410])
            .send()
            .await;
        vu.check(
            "issue answered 201/409/410",
            matches!(r.status, 201 | 409 | 410),
        );
        if r.status == 201 {
            // Remember who got one, to prove nobody got two.
            let email = vu.state.email.clone().unwrap_or_default();
            vu.ctx().record_fact("coupon_user", email);
        }
        Ok(())
    })
}

pub fn verify<'a>(vu: &'a mut Vu, m: &'a Metrics) -> BoxFuture<'a, anyhow::Result<Vec<Invariant>>> {
    Box::pin(async move {
        let filter = TagSet::from([
            ("name".into(), "coupon-issue".into()),
            ("status".into(), "201".into()),
        ]);
        let granted = m.requests_matching(&filter).reqs as i64;
        let id = vu.param("campaign_id").unwrap_or_default();
        // The campaign's own view: its cap and the server's count of issued coupons.
        let r = vu
            .get(format!("/api/v1/coupon-campaigns/{id}"))
            .name("verify-campaign")
            .anonymous()
            .send()
            .await;
        let v = r.value();
        let cap = vu
            .param("coupon_cap")
            .and_then(|c| c.parse::<i64>().ok())
            .or_else(|| number_at(&v, "/total_quantity"));
        let issued = number_at(&v, "/issued");
        let mut out = Vec::new();
        match cap {
            Some(cap) => {
                out.push(Invariant::new(
                    "201s <= cap",
                    granted <= cap,
                    format!("{granted} coupons granted to this run, cap {cap}"),
                ));
                if let Some(issued) = issued {
                    out.push(Invariant::new(
                        "issued <= cap",
                        issued <= cap,
                        format!("server counts {issued} issued, cap {cap}"),
                    ));
                }
            }
            None => out.push(Invariant::new(
                "issued <= cap",
                false,
                format!(
                    "campaign {id} unreadable (status {}): cap unknown",
                    r.status
                ),
            )),
        }
        let mut per_user: BTreeMap<String, u64> = BTreeMap::new();
        for email in vu.ctx().facts("coupon_user") {
            *per_user.entry(email).or_default() += 1;
        }
        let twice = per_user.values().filter(|n| **n > 1).count();
        out.push(Invariant::new(
            "one coupon per user",
            twice == 0,
            format!("{twice} users got more than one"),
        ));
        Ok(out)
    })
}
