//! Status building blocks shared by every kind, following kstatus: `Ready` is always present,
//! `Reconciling` and `Stalled` only while they are true, and `observedGeneration` says which spec the
//! status describes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition type present on every object once a controller has seen it.
pub const READY: &str = "Ready";
/// Condition type present only while the controller is working towards the desired state.
pub const RECONCILING: &str = "Reconciling";
/// Condition type present only while progress is blocked on something the user must fix.
pub const STALLED: &str = "Stalled";

/// The truth value of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One aspect of an object's state, in the shape of the Kubernetes `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: `Ready`, `Reconciling` or `Stalled`, or a kind-specific type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A CamelCase word for the cause, e.g. `ValidationFailed`.
    pub reason: String,
    /// A sentence for humans that explains the condition.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
