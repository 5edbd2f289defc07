//! The one way conditions are written, on RktNodeConfigs, RktNodeStates and Nodes alike: a condition keeps its
//! `lastTransitionTime` while its status stays the same, so rewriting an unchanged condition changes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition as a decision makes it, before it is timestamped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl ConditionUpdate {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }

    fn status_text(&self) -> &'static str {
        if self.status { "True" } else { "False" }
    }
}

/// Builds the new condition list from `updates`, keeping each condition's `lastTransitionTime` from `previous`
/// when its status did not change, and stamping `now` otherwise. The result is in the order of `updates`.
pub fn merge_conditions(
    previous: &[Condition],
    updates: &[ConditionUpdate],
    observed_generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    updates
        .iter()
        .map(|update| {
            let status = update.status_text().to_owned();
            let last_transition_time = previous
                .iter()
                .find(|condition| condition.type_ == update.type_ && condition.status == status)
                .map_or_else(
                    || now.clone(),
                    |condition| condition.last_transition_time.clone(),
                );
            Condition {
                type_: update.type_.to_owned(),
                status,
                reason: update.reason.to_owned(),
                message: update.message.clone(),
                observed_generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The conditions whose status differs from `previous` (or that are new): the transitions worth an Event.
pub fn transitions<'a>(previous: &[Condition], current: &'a [Condition]) -> Vec<&'a Condition> {
    current
        .iter()
        .filter(|condition| {
            !previous
                .iter()
                .any(|old| old.type_ == condition.type_ && old.status == condition.status)
        })
        .collect()
}

/// Names at most `limit` items, then how many more there are: `a, b, c and 7 more`.
pub fn name_some(items: &[impl AsRef<str>], limit: usize) -> String {
    let shown: Vec<&str> = items.iter().take(limit).map(AsRef::as_ref).collect();
    match items.len().saturating_sub(limit) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn an_unchanged_status_keeps_its_transition_time() {
        let first = merge_conditions(
            &[],
            &[ConditionUpdate::new(
                "Ready",
                true,
                "AllNodesReady",
                "3 of 3",
            )],
            Some(1),
            &time(100),
        );
        let second = merge_conditions(
            &first,
            &[ConditionUpdate::new(
                "Ready",
                true,
                "AllNodesReady",
                "4 of 4",
            )],
            Some(2),
            &time(200),
        );
        assert_eq!(second[0].last_transition_time, time(100));
        assert_eq!(second[0].message, "4 of 4");
        assert!(transitions(&first, &second).is_empty());
        let third = merge_conditions(
            &second,
            &[ConditionUpdate::new(
                "Ready",
                false,
                "NodesNotReady",
                "1 of 4",
            )],
            Some(2),
            &time(300),
        );
        assert_eq!(third[0].last_transition_time, time(300));
        assert_eq!(transitions(&second, &third).len(), 1);
    }

    #[test]
    fn long_lists_are_shortened() {
        assert_eq!(name_some(&["a", "b"], 3), "a, b");
        assert_eq!(name_some(&["a", "b", "c", "d"], 2), "a, b and 2 more");
    }
}
