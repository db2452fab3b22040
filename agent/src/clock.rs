//! The agent's clock and its pauses, passed in rather than read: the daemon's wake-ups
//! during the watch and the wait for PHP's opcode cache go through it, so tests run them
//! at once with a clock they move themselves.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use jiff::Timestamp;

/// What time it is, and a pause.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system's clock and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock for tests: it stands still until a pause moves it on by the pause's length, and
/// it remembers every pause.
#[derive(Debug)]
pub struct TestClock {
    now: std::sync::Mutex<Timestamp>,
    pub pauses: std::sync::Mutex<Vec<Duration>>,
}

impl TestClock {
    pub fn new(now: Timestamp) -> TestClock {
        TestClock { now: std::sync::Mutex::new(now), pauses: std::sync::Mutex::new(Vec::new()) }
    }
    /// The pauses taken so far.
    pub fn pauses(&self) -> Vec<Duration> {
        self.pauses.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        self.now.lock().map(|n| *n).unwrap_or(Timestamp::UNIX_EPOCH)
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        if let Ok(mut now) = self.now.lock() {
            *now = now.checked_add(d).unwrap_or(*now);
        }
        if let Ok(mut p) = self.pauses.lock() {
            p.push(d);
        }
        Box::pin(std::future::ready(()))
    }
}
