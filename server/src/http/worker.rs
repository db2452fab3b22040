//! The repository thread: every repository operation of the server (the metadata refresh,
//! auto-halts, fix-request links, the dashboard's view of the bundles) runs here, one at a
//! time, on a small runtime of its own.
//!
//! Opening the repository takes its writer lock, a blocking `flock`, and tough's filesystem
//! reads use the runtime's blocking pool. Run from the request handlers, hundreds of them
//! could fill that pool while waiting for the lock, so that the holder never finished (the
//! server wedged for good). Here the lock is only ever waited for by this one thread, the
//! operations queue up in order, and the workers that answer requests never block on it.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A handle on the repository thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct RepoWorker {
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for RepoWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoWorker").finish_non_exhaustive()
    }
}

impl RepoWorker {
    /// Start the thread. Fails only when the system refuses a thread or a runtime.
    pub(crate) fn start() -> std::io::Result<RepoWorker> {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(4).build()?;
        std::thread::Builder::new().name("palier-repo".into()).spawn(move || {
            runtime.block_on(async move {
                while let Some(job) = queue.recv().await {
                    // A task of its own, awaited: one at a time, and a panic ends that
                    // operation only (its caller sees `None`), not the thread.
                    if let Err(e) = tokio::spawn(job()).await {
                        tracing::error!(error = %e, "a repository operation panicked");
                    }
                }
            });
        })?;
        Ok(RepoWorker { jobs })
    }

    /// Run `work` on the repository thread after the operations queued before it; its result.
    /// `None` when the operation panicked (or the thread could not be reached).
    pub(crate) async fn run<T, F, Fut>(&self, work: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let _ = tx.send(work().await);
            })
        });
        self.jobs.send(job).ok()?;
        rx.await.ok()
    }
}
