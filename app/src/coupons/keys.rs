//! Redis keys of one campaign, all under the hash tag `{cp:<id>}` so each script touches a
//! single cluster slot.

use crate::platform::{ids::CampaignId, redis::Redis};

pub struct CampaignKeys {
    pub meta: String,
    pub holders: String,
    /// Grants accepted by Redis and not settled yet: user -> accepted at (ms).
    pub pending: String,
}

impl CampaignKeys {
    pub fn new(redis: &Redis, campaign: CampaignId) -> Self {
        let prefix = redis.prefix();
        Self {
            meta: format!("{prefix}{{cp:{campaign}}}:meta"),
            holders: format!("{prefix}{{cp:{campaign}}}:holders"),
            pending: format!("{prefix}{{cp:{campaign}}}:pending"),
        }
    }
}
