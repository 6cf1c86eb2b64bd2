//! The CustomResourceDefinitions as the API server receives them. `floodgate-operator crd`
//! prints them and `crds/*.yaml` is their committed copy (a test fails when it drifts).

use floodgate_crds::v1alpha1::{Campaign, QueueConfig};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD with the file name it is committed under in `crds/`.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("campaign.yaml", Campaign::crd()),
        ("queueconfig.yaml", QueueConfig::crd()),
    ]
}

/// One CRD as YAML, exactly as committed.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(crd)
}

/// All CRDs as one multi-document YAML stream, for `kubectl apply -f -`.
pub fn render_all() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for (_, crd) in all() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn crds_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds")
    }

    /// The committed YAML is what `kubectl apply -f crds/` installs; regenerate it with
    /// `cargo run -p floodgate-operator -- crd --out-dir crds` when the types change.
    #[test]
    fn committed_crds_match_the_types() {
        for (file, crd) in all() {
            let committed = std::fs::read_to_string(crds_dir().join(file))
                .unwrap_or_else(|e| panic!("crds/{file} missing: {e}"));
            let generated = to_yaml(&crd).expect("serializable");
            assert!(
                committed == generated,
                "crds/{file} is stale: run `cargo run -p floodgate-operator -- crd --out-dir crds`"
            );
        }
    }

    #[test]
    fn crd_command_prints_both_as_one_stream() {
        let all = render_all().expect("yaml");
        let docs: Vec<CustomResourceDefinition> = serde_yaml::Deserializer::from_str(&all)
            .map(|d| serde::Deserialize::deserialize(d).expect("a CRD"))
            .collect();
        let names: Vec<_> = docs
            .iter()
            .map(|c| c.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            ["campaigns.floodgate.dev", "queueconfigs.floodgate.dev"]
        );
    }

    #[test]
    fn committed_crds_parse_back_into_k8s_openapi() {
        for (file, _) in all() {
            let text = std::fs::read_to_string(crds_dir().join(file)).expect("committed");
            let crd: CustomResourceDefinition = serde_yaml::from_str(&text).expect("a CRD");
            assert_eq!(crd.spec.group, "floodgate.dev");
            assert_eq!(
                crd.spec.names.categories.as_deref(),
                Some(&["floodgate".to_owned()][..])
            );
            let version = &crd.spec.versions[0];
            assert!(
                version
                    .subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some()
            );
            let columns: Vec<&str> = version
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| c.name.as_str())
                .collect();
            if crd.spec.names.kind == "Campaign" {
                // KEDA's Ready / Active / Fallback / Paused, and Conflict, from conditions
                assert_eq!(
                    columns,
                    [
                        "Phase", "Ready", "Active", "Fallback", "Paused", "Conflict", "Desired",
                        "Current", "Waiting", "P95", "Workload", "Age"
                    ]
                );
            } else {
                assert_eq!(columns.len(), 6, "{columns:?}");
            }
        }
    }

    fn schema_json(crd: &CustomResourceDefinition) -> serde_json::Value {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref());
        serde_json::to_value(schema).expect("json")
    }

    #[test]
    fn campaign_schema_carries_cel_rules_short_name_and_duration_pattern() {
        let (_, crd) = &all()[0];
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["camp".to_owned()][..])
        );
        let json = schema_json(crd).to_string();
        assert!(
            json.contains("self.minReplicas <= self.maxReplicas"),
            "{json}"
        );
        assert!(json.contains("self.endsAt > self.startsAt"), "{json}");
        assert!(
            json.contains(
                floodgate_crds::duration::DURATION_PATTERN
                    .replace('\\', "\\\\")
                    .as_str()
            )
        );
    }

    #[test]
    fn queueconfig_schema_flattens_settings_and_checks_open_close() {
        let (_, crd) = &all()[1];
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["qc".to_owned()][..])
        );
        let schema = schema_json(crd);
        let spec = &schema["properties"]["spec"];
        for field in [
            "queueId",
            "maxActiveUsers",
            "admitPerMinute",
            "sessionTtl",
            "opensAt",
            "paused",
        ] {
            assert!(
                spec["properties"][field].is_object(),
                "spec.{field} missing: {spec}"
            );
            assert!(
                spec["properties"][field]["description"].is_string(),
                "spec.{field} undocumented"
            );
        }
        assert!(spec.to_string().contains("self.closesAt > self.opensAt"));
    }

    /// The examples are what the README tells users to apply; they must also be what the
    /// operator can read (the schema check is in operator/tests/validate_examples.py).
    #[test]
    fn examples_deserialize_into_the_types() {
        use floodgate_crds::v1alpha1::{Campaign, QueueConfig};
        let dir = crds_dir().join("examples");
        let c: Campaign = serde_yaml::from_str(
            &std::fs::read_to_string(dir.join("campaign.yaml")).expect("example"),
        )
        .expect("campaign example");
        assert_eq!(c.spec.scaling.max_replicas, 40);
        assert_eq!(c.spec.queues, vec!["concert-42".to_owned()]);
        let q: QueueConfig = serde_yaml::from_str(
            &std::fs::read_to_string(dir.join("queueconfig.yaml")).expect("example"),
        )
        .expect("queueconfig example");
        assert_eq!(q.spec.settings.max_active_users, 500);
    }
}
