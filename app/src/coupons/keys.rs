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
        Self {
            meta: redis.key(&format!("{{cp:{campaign}}}:meta")),
            holders: redis.key(&format!("{{cp:{campaign}}}:holders")),
            stream: redis.key(&format!("{{cp:{campaign}}}:stream")),
        }
    }
}
