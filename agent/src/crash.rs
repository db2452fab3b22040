//! Crash points: every step that changes the site or the agent's state is named, and the
//! crash-point test (`tests/crash_points.rs`) kills the real binary at each of them.
//!
//! The binary arms them once at start from the environment (`PALIER_CRASH_AT=name` kills
//! at the first hit of `name`, `name:N` at its N-th hit); the library never reads the
//! environment itself. A kill is `SIGKILL` sent to the agent's own process: nothing
//! unwinds, no destructor runs, no buffer is flushed, exactly as when the machine or the
//! OOM killer stops the agent. `PALIER_CRASH_TRACE=FILE` appends the name of every point
//! reached to `FILE`, so the test learns which points a scenario passes through.
//!
//! The points stay compiled into release builds: the test drives the binary that ships,
//! and an unarmed point costs one load of a `OnceLock` that was set to `None`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// What the environment asked for.
#[derive(Debug, Default)]
struct Armed {
    /// Kill at the `n`-th hit of this point (1-based).
    at: Option<(String, u32)>,
    /// Record every point reached here.
    trace: Option<PathBuf>,
}

static ARMED: OnceLock<Armed> = OnceLock::new();
static HITS: AtomicU32 = AtomicU32::new(0);

/// Arm the crash points from `PALIER_CRASH_AT` and `PALIER_CRASH_TRACE` (values as read
/// by the binary at start; `None` when unset). A second call changes nothing.
pub fn arm(at: Option<String>, trace: Option<PathBuf>) {
    let at = at.filter(|s| !s.is_empty()).map(|s| match s.rsplit_once(':') {
        Some((name, n)) if n.parse::<u32>().is_ok_and(|n| n > 0) => (name.to_owned(), n.parse().unwrap_or(1)),
        _ => (s, 1),
    });
    let _ = ARMED.set(Armed { at, trace });
}

/// Crash point `name`: dies here when armed for it, else does nothing.
pub fn point(name: &str) {
    let Some(armed) = ARMED.get() else { return };
    if let Some(trace) = &armed.trace
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(trace)
    {
        let _ = f.write_all(format!("{name}\n").as_bytes());
    }
    if let Some((want, n)) = &armed.at
        && want == name
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; this is never reached.
        std::process::abort();
    }
}
