//! kstatus conditions: `Ready` always, `Reconciling` and `Stalled` only while true, a transition time that
//! moves only when a condition's status changes, and `observedGeneration` on each.

use paddock_api::status::{READY, RECONCILING, STALLED};
use paddock_api::{Condition, ConditionStatus};

/// A condition to set, without its timestamps.
#[derive(Clone, Debug, PartialEq)]
pub struct Want {
    pub type_: &'static str,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

impl Want {
    pub fn ready(reason: &str, message: impl Into<String>) -> Want {
        Want { type_: READY, status: ConditionStatus::True, reason: reason.into(), message: message.into() }
    }
    pub fn not_ready(reason: &str, message: impl Into<String>) -> Want {
        Want { type_: READY, status: ConditionStatus::False, reason: reason.into(), message: message.into() }
    }
    pub fn reconciling(reason: &str, message: impl Into<String>) -> Want {
        Want { type_: RECONCILING, status: ConditionStatus::True, reason: reason.into(), message: message.into() }
    }
    pub fn stalled(reason: &str, message: impl Into<String>) -> Want {
        Want { type_: STALLED, status: ConditionStatus::True, reason: reason.into(), message: message.into() }
    }
}

/// The new condition list: exactly `wanted`, keeping each old `lastTransitionTime` whose status did not
/// change, so that an unchanged object gets an identical status (and no write).
pub fn merge(old: &[Condition], wanted: Vec<Want>, generation: Option<i64>) -> Vec<Condition> {
    let now = now();
    wanted
        .into_iter()
        .map(|w| {
            let since = old
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == w.status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: w.type_.to_owned(),
                status: w.status,
                reason: w.reason,
                message: w.message,
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect()
}

/// The current time as RFC 3339, to the second (as `metav1.Time`).
pub fn now() -> String {
    use k8s_openapi::jiff::Timestamp;
    let secs = Timestamp::now().as_second();
    Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH).to_string()
}

/// The current time as RFC 3339 with sub-second precision, for `paddock.dev/requestedAt` (two requests in
/// one second must still differ).
pub fn now_precise() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Condition `type_` of a list, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let first = merge(&[], vec![Want::not_ready("ValidationFailed", "bad")], Some(1));
        let mut old = first.clone();
        old[0].last_transition_time = "2020-01-01T00:00:00Z".into();
        let same = merge(&old, vec![Want::not_ready("ValidationFailed", "still bad")], Some(2));
        assert_eq!(same[0].last_transition_time, "2020-01-01T00:00:00Z");
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge(&old, vec![Want::ready("Succeeded", "ok")], Some(2));
        assert_ne!(flipped[0].last_transition_time, "2020-01-01T00:00:00Z");
        // Stalled is listed only while true: a merge without it drops it.
        let with_stalled = merge(&[], vec![Want::not_ready("X", ""), Want::stalled("X", "")], None);
        assert_eq!(merge(&with_stalled, vec![Want::ready("Y", "")], None).len(), 1);
    }
}
