//! Config status writes, paced: a status that only moves a rollout's counts along is written at most once per
//! [`STATUS_INTERVAL`] for each config, and held meanwhile (a later pass writes the newest); a status that says
//! something new (a condition's status or reason, the generation or rendering observed) is written at once. At
//! 5,000 nodes a rollout would otherwise write a config's status on nearly every pass.

use std::{collections::HashMap, sync::Arc};

use tokio::time::{Duration, Instant};

use crate::api::{RktNodeConfig, RktNodeConfigStatus};

/// The least time between two progress-only status writes of one config.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(2);

/// When each config's status was last written.
#[derive(Debug, Default)]
pub struct StatusPacing {
    written: HashMap<String, Instant>,
}

/// The statuses to write now, and when the earliest held one is due.
#[derive(Debug, Default)]
pub struct Paced {
    pub now: Vec<(String, RktNodeConfigStatus)>,
    pub due: Option<Instant>,
}

impl StatusPacing {
    /// Splits the statuses a pass wants written; those written now are recorded as written at `now`.
    pub fn pace(
        &mut self,
        statuses: Vec<(String, RktNodeConfigStatus)>,
        configs: &[Arc<RktNodeConfig>],
        now: Instant,
    ) -> Paced {
        let mut paced = Paced::default();
        for (name, status) in statuses {
            let shown = configs
                .iter()
                .find(|config| config.metadata.name.as_deref() == Some(name.as_str()))
                .and_then(|config| config.status.as_ref());
            let next = self.written.get(&name).map(|last| *last + STATUS_INTERVAL);
            match next {
                Some(next)
                    if next > now && shown.is_some_and(|shown| only_progress(shown, &status)) =>
                {
                    paced.due = Some(paced.due.map_or(next, |due| due.min(next)));
                }
                _ => {
                    self.written.insert(name.clone(), now);
                    paced.now.push((name, status));
                }
            }
        }
        paced
    }
}

/// Whether `new` differs from `shown` in counts and condition messages only.
fn only_progress(shown: &RktNodeConfigStatus, new: &RktNodeConfigStatus) -> bool {
    let gist = |status: &RktNodeConfigStatus| {
        let mut conditions: Vec<(String, String, String)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect();
        conditions.sort();
        (
            status.observed_generation,
            status.config_hash.clone(),
            conditions,
        )
    };
    gist(shown) == gist(new)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;

    fn status(ready: i32, progressing: &str) -> RktNodeConfigStatus {
        RktNodeConfigStatus {
            observed_generation: Some(2),
            config_hash: Some("h".to_owned()),
            matched_nodes: 10,
            ready_nodes: ready,
            conditions: vec![Condition {
                type_: "Progressing".to_owned(),
                status: progressing.to_owned(),
                reason: "Rolling".to_owned(),
                message: format!("{ready} of 10 ready"),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
            ..RktNodeConfigStatus::default()
        }
    }

    fn config(shown: RktNodeConfigStatus) -> Arc<RktNodeConfig> {
        let spec = serde_json::json!({"rkt": {"version": "1.30.0"}});
        let mut config = RktNodeConfig::new("c", serde_json::from_value(spec).expect("a spec"));
        config.status = Some(shown);
        Arc::new(config)
    }

    #[test]
    fn progress_is_written_at_most_once_an_interval_and_news_at_once() {
        let mut pacing = StatusPacing::default();
        let start = Instant::now();
        let first = pacing.pace(
            vec![("c".into(), status(1, "True"))],
            &[config(status(0, "True"))],
            start,
        );
        assert_eq!((first.now.len(), first.due), (1, None));
        let soon = start + Duration::from_millis(500);
        let held = pacing.pace(
            vec![("c".into(), status(2, "True"))],
            &[config(status(1, "True"))],
            soon,
        );
        assert!(held.now.is_empty());
        assert_eq!(held.due, Some(start + STATUS_INTERVAL));
        let news = pacing.pace(
            vec![("c".into(), status(10, "False"))],
            &[config(status(1, "True"))],
            soon,
        );
        assert_eq!(news.now.len(), 1);
        let later = soon + STATUS_INTERVAL;
        let due = pacing.pace(
            vec![("c".into(), status(3, "False"))],
            &[config(status(10, "False"))],
            later,
        );
        assert_eq!(due.now.len(), 1);
    }
}
