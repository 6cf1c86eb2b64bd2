//! Reads Campaign and QueueConfig manifests from a folder (`*.yaml`, `*.yml`, several
//! documents per file allowed), and tells when anything in it changed.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::SystemTime,
};

use floodgate_crds::v1alpha1::{Campaign, QueueConfig};
use serde::Deserialize;

#[derive(Clone, Debug, Default)]
pub struct Manifests {
    pub campaigns: Vec<Campaign>,
    pub queue_configs: Vec<QueueConfig>,
    /// Files that could not be read, with why (reported, not fatal: the rest still runs).
    pub problems: Vec<String>,
}

/// The folder's YAML files with their modification times; equal fingerprints mean nothing
/// changed (cheaper than parsing every second).
pub fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, Option<SystemTime>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .map(|p| {
            let mtime = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
            (p, mtime)
        })
        .collect()
}

pub fn load(dir: &Path) -> Manifests {
    let mut out = Manifests::default();
    for path in fingerprint(dir).into_keys() {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                out.problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value = match serde_yaml::Value::deserialize(doc) {
                Ok(serde_yaml::Value::Null) => continue,
                Ok(v) => v,
                Err(e) => {
                    out.problems
                        .push(format!("{} document {}: {e}", path.display(), i + 1));
                    continue;
                }
            };
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or("")
                .to_owned();
            let parsed = match kind.as_str() {
                "Campaign" => serde_yaml::from_value::<Campaign>(value).map(|mut c| {
                    default_namespace(&mut c.metadata);
                    out.campaigns.push(c);
                }),
                "QueueConfig" => serde_yaml::from_value::<QueueConfig>(value).map(|mut q| {
                    default_namespace(&mut q.metadata);
                    out.queue_configs.push(q);
                }),
                // Other manifests (Deployments, Services...) may share the folder.
                _ => Ok(()),
            };
            if let Err(e) = parsed {
                out.problems.push(format!(
                    "{} document {} ({kind}): {e}",
                    path.display(),
                    i + 1
                ));
            }
        }
    }
    out
}

/// The data of the Secret `namespace/name` among the folder's manifests (`data` base64,
/// `stringData` text, as the API server merges them), `None` when no manifest defines it.
pub fn secret(
    dir: &Path,
    namespace: &str,
    name: &str,
) -> Option<crate::observe::credentials::SecretData> {
    use k8s_openapi::api::core::v1::Secret;
    let docs = fingerprint(dir)
        .into_keys()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .collect::<Vec<_>>();
    docs.iter()
        .flat_map(|text| serde_yaml::Deserializer::from_str(text))
        .filter_map(|doc| serde_yaml::Value::deserialize(doc).ok())
        .filter(|v| v.get("kind").and_then(|k| k.as_str()) == Some("Secret"))
        .filter_map(|v| serde_yaml::from_value::<Secret>(v).ok())
        .find(|s| {
            s.metadata.name.as_deref() == Some(name)
                && s.metadata.namespace.as_deref().unwrap_or("default") == namespace
        })
        .map(|s| {
            let mut data: crate::observe::credentials::SecretData = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in s.string_data.unwrap_or_default() {
                data.insert(k, v.into_bytes());
            }
            data
        })
}

fn default_namespace(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    if meta.namespace.is_none() {
        meta.namespace = Some("default".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_both_kinds_skips_others_and_reports_bad_documents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/examples");
        let both = format!(
            "{}\n---\n{}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: x}}\n",
            std::fs::read_to_string(examples.join("campaign.yaml")).expect("example"),
            std::fs::read_to_string(examples.join("queueconfig.yaml")).expect("example"),
        );
        std::fs::write(dir.path().join("event.yaml"), both).expect("write");
        std::fs::write(
            dir.path().join("broken.yml"),
            "kind: QueueConfig\nspec: 3\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        let m = load(dir.path());
        assert_eq!(m.campaigns.len(), 1);
        assert_eq!(m.queue_configs.len(), 1);
        assert_eq!(
            m.campaigns[0].metadata.namespace.as_deref(),
            Some("default")
        );
        assert_eq!(m.problems.len(), 1, "{:?}", m.problems);
        assert_eq!(fingerprint(dir.path()).len(), 2);
    }
}
