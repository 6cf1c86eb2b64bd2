//! Redis keys of one campaign, all under the hash tag `{cp:<id>}` so the issue script touches
//! a single cluster slot.

use crate::platform::redis::Redis;

pub const GROUP: &str = "persist";

pub struct CampaignKeys {
    pub meta: String,
    pub holders: String,
    pub stream: String,
}

impl CampaignKeys {
    pub fn new(redis: &Redis, campaign: i64) -> Self {
        let prefix = redis.prefix();
        Self {
            meta: format!("{prefix}{{cp:{campaign}}}:meta"),
            holders: format!("{prefix}{{cp:{campaign}}}:holders"),
            stream: format!("{prefix}{{cp:{campaign}}}:stream"),
        }
    }
}
