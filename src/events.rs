//! Events, recorded one way by the controller (about RktNodeConfigs) and the agent (about its Node): through kube's
//! events API, the reporter named after the component and its replica or node. Events are best effort: a lost one
//! is the caller's to count or log, never retried into a write storm.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, Recorder, Reporter},
};
use tokio::sync::Mutex;

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
///
/// kube's [`Recorder`] counts an Event again (its `series`) when one with the same type, reason and object was
/// recorded in the last minutes, whatever its note: a second `Applied` would only raise the first one's count and
/// its note (what was applied) would be lost. So each (reason, object) has its recorder for as long as the note
/// stays the same, and a new note gets a new recorder, hence a new Event; the same note again is counted.
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
    /// The recorder of the last note of each reason and object.
    recorders: Mutex<HashMap<(String, String), (String, Recorder)>>,
    /// What the component was doing, in the Event's `action`.
    action: &'static str,
}

impl EventPublisher {
    /// A publisher for `component` (its field manager's name) running as `instance`, whose Events say `action`.
    pub fn new(client: Client, component: &str, instance: &str, action: &'static str) -> Self {
        Self {
            client,
            reporter: Reporter {
                controller: component.to_owned(),
                instance: Some(instance.to_owned()),
            },
            recorders: Mutex::default(),
            action,
        }
    }

    /// Records `notice` about `regarding`.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        notice: Notice,
    ) -> Result<(), kube::Error> {
        let object = format!(
            "{}/{}/{}",
            regarding.kind.as_deref().unwrap_or_default(),
            regarding.namespace.as_deref().unwrap_or_default(),
            regarding.name.as_deref().unwrap_or_default()
        );
        let mut recorders = self.recorders.lock().await;
        let (note, recorder) = recorders
            .entry((notice.reason.clone(), object))
            .or_insert_with(|| (notice.note.clone(), self.recorder()));
        if *note != notice.note {
            *note = notice.note.clone();
            *recorder = self.recorder();
        }
        let event = Event {
            type_: notice.type_,
            reason: notice.reason,
            note: Some(notice.note),
            action: self.action.to_owned(),
            secondary: None,
        };
        recorder.publish(&event, regarding).await
    }

    fn recorder(&self) -> Recorder {
        Recorder::new(self.client.clone(), self.reporter.clone())
    }
}
