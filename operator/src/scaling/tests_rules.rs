//! Property tests of the rules #15 added: HPA step policies and `selectPolicy`, per-direction
//! tolerance, the KPA windows, KEDA's fallback and the decision memory in the status.
