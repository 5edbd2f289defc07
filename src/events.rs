//! Events, recorded one way by the controller (about RktNodeConfigs) and the agent (about its Node): through kube's
//! events API, the reporter named after the component and its replica or node. Events are best effort: a lost one
//! is the caller's to count or log, never retried into a write storm.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, Recorder, Reporter},
};

pub use kube::runtime::events::EventType;

/// What to record about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub type_: EventType,
    /// A short UpperCamelCase reason, such as `Applied`.
    pub reason: String,
    /// What happened, for a person.
    pub note: String,
}

impl Notice {
    pub fn normal(reason: &str, note: String) -> Self {
        Self {
            type_: EventType::Normal,
            reason: reason.to_owned(),
            note,
        }
    }

    pub fn warning(reason: &str, note: String) -> Self {
        Self {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note,
        }
    }
}

/// Records Events for one component instance.
pub struct EventPublisher {
    recorder: Recorder,
    /// What the component was doing, in the Event's `action`.
    action: &'static str,
}

impl EventPublisher {
    /// A publisher for `component` (its field manager's name) running as `instance`, whose Events say `action`.
    pub fn new(client: Client, component: &str, instance: &str, action: &'static str) -> Self {
        Self {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: component.to_owned(),
                    instance: Some(instance.to_owned()),
                },
            ),
            action,
        }
    }

    /// Records `notice` about `regarding`.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        notice: Notice,
    ) -> Result<(), kube::Error> {
        let event = Event {
            type_: notice.type_,
            reason: notice.reason,
            note: Some(notice.note),
            action: self.action.to_owned(),
            secondary: None,
        };
        self.recorder.publish(&event, regarding).await
    }
}
