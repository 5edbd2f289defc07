//! The one way the tests wait for the cluster, a node or a process to get somewhere.

use std::{
    fmt::Display,
    time::{Duration, Instant},
};

/// How often [`eventually`] tries.
const POLL: Duration = Duration::from_millis(200);

/// What one try of [`eventually`] found: the value waited for, or not yet (`None`, or an `Err` saying what the try
/// saw instead, which the timeout's message repeats).
pub trait Attempt {
    type Value;
    fn found(self) -> Result<Self::Value, Option<String>>;
}

impl<T> Attempt for Option<T> {
    type Value = T;
    fn found(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Attempt for Result<T, E> {
    type Value = T;
    fn found(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

/// Tries `attempt` every 200 ms until it finds its value, and returns it; after `timeout`, panics saying what was
/// awaited (`what`, as in "waiting until {what}") and what the last try saw.
pub async fn eventually<A: Attempt>(
    what: &str,
    timeout: Duration,
    mut attempt: impl AsyncFnMut() -> A,
) -> A::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match attempt().await.found() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            match seen {
                Some(seen) => panic!(
                    "timed out after {} s waiting until {what}; the last try saw: {seen}",
                    timeout.as_secs_f32()
                ),
                None => panic!(
                    "timed out after {} s waiting until {what}",
                    timeout.as_secs_f32()
                ),
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
