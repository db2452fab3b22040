//! Two pieces of blocking work at once, on a scoped thread, for steps whose cost is waiting
//! on the disk (a rollback's records, written while the carry reads the tree left).

/// `a` here and `b` on a thread of its own, at once; both results. When no thread can be
/// started (a process at its limit), `b` runs here after `a`: never a panic for that. A
/// panic in `b` is carried on here, as if `b` had run here.
pub(crate) fn both<A, B: Send>(a: impl FnOnce() -> A, b: &(dyn Fn() -> B + Sync)) -> (A, B) {
    std::thread::scope(|s| {
        let other = std::thread::Builder::new().name("palier-both".into()).spawn_scoped(s, b).ok();
        let a = a();
        let b = match other {
            Some(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            None => b(),
        };
        (a, b)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_run_at_once() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let tx = std::sync::Mutex::new(tx);
        // `a` waits for `b`: run one after the other, they would never end.
        let (a, b) = super::both(|| rx.recv_timeout(std::time::Duration::from_secs(30)).is_ok(), &|| tx.lock().map(|t| t.send(()).is_ok()).unwrap_or(false));
        assert!(a && b);
    }
}
