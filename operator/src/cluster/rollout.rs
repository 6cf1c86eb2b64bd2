//! An Argo Rollout (argoproj.io/v1alpha1), as much of it as the operator reads: its scale
//! subresource and its pod selector. A typed resource (not `DynamicObject` with discovery)
//! keeps each API call visible to the chart's RBAC test, and needs no discovery rights.

use std::{borrow::Cow, collections::BTreeMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::NamespaceResourceScope;
use serde::{Deserialize, Serialize};

pub const ROLLOUT_API_VERSION: &str = "argoproj.io/v1alpha1";

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Rollout {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: serde_json::Value,
}

impl Rollout {
    /// `spec.selector.matchLabels`.
    pub fn match_labels(&self) -> Option<BTreeMap<String, String>> {
        serde_json::from_value(self.spec.pointer("/selector/matchLabels")?.clone()).ok()
    }
}

impl kube::Resource for Rollout {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Rollout".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "argoproj.io".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1alpha1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "rollouts".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
