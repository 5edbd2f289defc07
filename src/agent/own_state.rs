//! The watch of the agent's own RktNodeState, folded into what the agent acts on.

use futures::StreamExt;
use kube::runtime::watcher;

use crate::api::RktNodeState;

/// What the watch of the agent's own RktNodeState says.
pub enum StateEvent {
    Present(Box<RktNodeState>),
    Gone,
    Synced,
}

pub trait OwnStateStream {
    fn touched_objects_and_deletions(
        self,
    ) -> impl futures::Stream<Item = Result<StateEvent, watcher::Error>>;
}

impl<S> OwnStateStream for S
where
    S: futures::Stream<Item = Result<watcher::Event<RktNodeState>, watcher::Error>>,
{
    /// Folds the watch into "the state is this", "there is none" and "the list is complete": a relist without
    /// the object means it was deleted while the watch was down.
    fn touched_objects_and_deletions(
        self,
    ) -> impl futures::Stream<Item = Result<StateEvent, watcher::Error>> {
        let mut seen_in_list = false;
        let mut listed = false;
        self.filter_map(move |event| {
            let mapped = match event {
                Ok(watcher::Event::Apply(state)) => Some(Ok(StateEvent::Present(Box::new(state)))),
                Ok(watcher::Event::Delete(_)) => Some(Ok(StateEvent::Gone)),
                Ok(watcher::Event::Init) => {
                    if listed {
                        super::metrics::METRICS.watch_restarts.inc();
                    }
                    listed = true;
                    seen_in_list = false;
                    None
                }
                Ok(watcher::Event::InitApply(state)) => {
                    seen_in_list = true;
                    Some(Ok(StateEvent::Present(Box::new(state))))
                }
                Ok(watcher::Event::InitDone) => Some(Ok(if seen_in_list {
                    StateEvent::Synced
                } else {
                    StateEvent::Gone
                })),
                Err(error) => {
                    super::metrics::METRICS.watch_restarts.inc();
                    Some(Err(error))
                }
            };
            futures::future::ready(mapped)
        })
    }
}
