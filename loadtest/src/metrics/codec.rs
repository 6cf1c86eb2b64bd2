//! How metrics travel between shards: histograms as base64 of hdrhistogram's V2
//! serialization, and tag-keyed maps as lists (JSON object keys must be strings).

/// Histograms travel as base64 of hdrhistogram's V2 serialization, readable by HdrHistogram
/// tools in any language.
pub mod hist_b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use hdrhistogram::Histogram;
    use hdrhistogram::serialization::{Deserializer as HDeser, Serializer as _, V2Serializer};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn encode(h: &Histogram<u64>) -> Result<String, String> {
        let mut buf = Vec::new();
        V2Serializer::new()
            .serialize(h, &mut buf)
            .map_err(|e| format!("{e:?}"))?;
        Ok(STANDARD.encode(buf))
    }

    pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
        let bytes = STANDARD.decode(text).map_err(|e| e.to_string())?;
        let mut h: Histogram<u64> = HDeser::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("{e:?}"))?;
        h.auto(true);
        Ok(h)
    }

    pub fn serialize<S: Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(h).map_err(serde::ser::Error::custom)?)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        decode(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Maps keyed by tag sets serialize as lists, since JSON keys must be strings.
pub(super) mod req_list {
    use crate::metrics::{ReqStats, TagSet};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize)]
    struct Entry {
        tags: TagSet,
        #[serde(flatten)]
        stats: ReqStats,
    }

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<TagSet, ReqStats>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let v: Vec<Entry> = m
            .iter()
            .map(|(t, r)| Entry {
                tags: t.clone(),
                stats: r.clone(),
            })
            .collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<TagSet, ReqStats>, D::Error> {
        Ok(Vec::<Entry>::deserialize(d)?
            .into_iter()
            .map(|e| (e.tags, e.stats))
            .collect())
    }
}

pub(super) mod check_list {
    use crate::metrics::{PassFail, TagSet};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize)]
    struct Entry {
        tags: TagSet,
        passes: u64,
        fails: u64,
    }

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<TagSet, PassFail>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let v: Vec<Entry> = m
            .iter()
            .map(|(t, p)| Entry {
                tags: t.clone(),
                passes: p.passes,
                fails: p.fails,
            })
            .collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<TagSet, PassFail>, D::Error> {
        Ok(Vec::<Entry>::deserialize(d)?
            .into_iter()
            .map(|e| {
                (
                    e.tags,
                    PassFail {
                        passes: e.passes,
                        fails: e.fails,
                    },
                )
            })
            .collect())
    }
}
