//! Crash points: the places between the agent's durable steps (each write, flush, rename and removal of a host
//! file or the ledger, each restart request and health check) where the crash-consistency campaign
//! (`tests/integration/campaigns/crash_consistency.rs`) kills the agent with SIGKILL, to show that a crash at any
//! of them leaves every file whole and that the next agent converges.
//!
//! Compiled in only with the `crash-points` feature, which the operator's own builds never enable: without it
//! [`reached`] does nothing. With it, `RKTNETES_CRASH_AT=N` makes the agent kill itself at the N-th point it
//! reaches, after naming the point on standard error (`crash point N: POINT SUBJECT`).

use std::path::Path;

/// The environment variable naming the point (counted from 1) at which the agent dies.
#[cfg(feature = "crash-points")]
const CRASH_AT: &str = "RKTNETES_CRASH_AT";

/// The agent reached `point` (about `subject`, a path or a unit); dies here if this is the chosen one.
#[cfg(feature = "crash-points")]
pub fn reached(point: &str, subject: &Path) {
    use std::{
        io::Write,
        sync::{
            OnceLock,
            atomic::{AtomicU64, Ordering},
        },
    };
    static CHOSEN: OnceLock<Option<u64>> = OnceLock::new();
    static REACHED: AtomicU64 = AtomicU64::new(0);
    let chosen = *CHOSEN.get_or_init(|| std::env::var(CRASH_AT).ok()?.parse().ok());
    let count = REACHED.fetch_add(1, Ordering::SeqCst) + 1;
    if chosen == Some(count) {
        // Standard error is unbuffered: the line is out before the signal.
        let _ = writeln!(
            std::io::stderr(),
            "crash point {count}: {point} {}",
            subject.display()
        );
        // SAFETY: kill(2) on our own pid has no memory effects; SIGKILL cannot be caught, so nothing runs after.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// The agent reached `point`; without the `crash-points` feature, nothing happens.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn reached(_point: &str, _subject: &Path) {}
