//! Notices changes in the directories of the managed files (and in net.d, where a foreign file may shadow ours)
//! through inotify, so a file edited by hand is repaired at once and nothing is polled.

use std::{collections::BTreeSet, io, path::PathBuf, time::Duration};

use futures::StreamExt;
use inotify::{EventStream, Inotify, WatchMask};

pub struct DriftWatch {
    events: EventStream<[u8; 4096]>,
    watched: BTreeSet<PathBuf>,
}

impl DriftWatch {
    pub fn new() -> io::Result<Self> {
        let events = Inotify::init()?.into_event_stream([0; 4096])?;
        Ok(Self {
            events,
            watched: BTreeSet::new(),
        })
    }

    /// Watches each of `directories` that exists and is not watched yet.
    pub fn watch(&mut self, directories: Vec<PathBuf>) -> io::Result<()> {
        let mask = WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::ATTRIB;
        for directory in directories {
            if self.watched.contains(&directory) || !directory.is_dir() {
                continue;
            }
            self.events.watches().add(&directory, mask)?;
            self.watched.insert(directory);
        }
        Ok(())
    }

    /// Waits for a change, then lets a burst of changes (an editor's save, our own writes) settle.
    pub async fn changed(&mut self) -> io::Result<()> {
        match self.events.next().await {
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error),
            None => return std::future::pending().await,
        }
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(100), self.events.next()).await
        {
            event?;
        }
        Ok(())
    }
}
