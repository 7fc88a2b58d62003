//! A service's background work: periodic jobs tied to the lifetime of what they work on,
//! and long-running tasks, all stopped together at shutdown.
//!
//! A periodic job holds only a weak reference to its owner, so dropping the owner (a test's
//! state, say) ends the job; [`Background::stop`] ends them all, letting a run in progress
//! finish within a grace period.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a periodic job wants next.
pub type Next = ControlFlow<(), Duration>;

#[derive(Default)]
pub struct Background {
    cancel: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Background {
    pub fn new() -> Self {
        Self::default()
    }

    /// Run `work` on `owner` at once and then every `period`, until the owner is dropped,
    /// the work answers `Break`, or [`Self::stop`].
    pub fn every<T, F, Fut>(
        &mut self,
        name: &'static str,
        period: Duration,
        owner: &Arc<T>,
        work: F,
    ) where
        T: Send + Sync + 'static,
        F: FnMut(Arc<T>) -> Fut + Send + 'static,
        Fut: Future<Output = ControlFlow<()>> + Send + 'static,
    {
        let mut work = work;
        self.repeat(name, owner, move |owner| {
            let run = work(owner);
            async move { run.await.map_continue(|()| period) }
        });
    }

    /// Run `work` on `owner` at once, and again the pause each run asks for after that run
    /// started (at once if it took longer), until the owner is dropped, the work answers
    /// `Break`, or [`Self::stop`].
    pub fn repeat<T, F, Fut>(&mut self, name: &'static str, owner: &Arc<T>, mut work: F)
    where
        T: Send + Sync + 'static,
        F: FnMut(Arc<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Next> + Send + 'static,
    {
        let owner: Weak<T> = Arc::downgrade(owner);
        let cancel = self.cancel.clone();
        let task = tokio::spawn(async move {
            loop {
                let started = tokio::time::Instant::now();
                // A run in progress is not interrupted: it ends within the grace period.
                let Some(target) = owner.upgrade() else { break };
                let ControlFlow::Continue(pause) = work(target).await else {
                    break;
                };
                // At a steady rate: the pause counts from the run's start, so a slow run is
                // followed at once by the next (never two at a time).
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep_until(started + pause) => {}
                }
            }
            tracing::debug!(task = name, "background task ended");
        });
        self.tasks.push((name, task));
    }

    /// Run a long-lived task (a subscription, say) until it returns or [`Self::stop`], which
    /// drops it where it waits.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = task => {}
            }
            tracing::debug!(task = name, "background task ended");
        });
        self.tasks.push((name, task));
    }

    /// Stop every task: none starts another run, runs in progress get `grace` to finish,
    /// and what is still running then is aborted.
    pub async fn stop(self, grace: Duration) {
        self.cancel.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        for (name, mut task) in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(
                    task = name,
                    "background task still running at shutdown; aborted"
                );
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting(bg: &mut Background, owner: &Arc<AtomicUsize>, period: Duration) {
        bg.every("count", period, owner, |n| async move {
            n.fetch_add(1, Ordering::SeqCst);
            ControlFlow::Continue(())
        });
    }

    #[tokio::test(start_paused = true)]
    async fn runs_at_once_then_every_period_until_stopped() {
        let runs = Arc::new(AtomicUsize::new(0));
        let mut bg = Background::new();
        counting(&mut bg, &runs, Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        bg.stop(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "no run after stop");
    }

    #[tokio::test(start_paused = true)]
    async fn the_period_counts_from_the_start_of_each_run() {
        let runs = Arc::new(AtomicUsize::new(0));
        let mut bg = Background::new();
        bg.every("slow", Duration::from_secs(1), &runs, |n| async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            n.fetch_add(1, Ordering::SeqCst);
            ControlFlow::Continue(())
        });
        tokio::time::sleep(Duration::from_millis(10_100)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            10,
            "one run a second, not one per 1.6 s"
        );
        bg.stop(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn ends_when_the_owner_is_dropped_or_the_work_breaks() {
        let runs = Arc::new(AtomicUsize::new(0));
        let mut bg = Background::new();
        counting(&mut bg, &runs, Duration::from_secs(1));
        let weak = Arc::downgrade(&runs);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        drop(runs);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            weak.upgrade().is_none(),
            "the task holds no strong reference between runs"
        );
        assert!(bg.tasks.iter().all(|(_, t)| t.is_finished()));

        let once = Arc::new(AtomicUsize::new(0));
        bg.every("once", Duration::from_secs(1), &once, |n| async move {
            n.fetch_add(1, Ordering::SeqCst);
            ControlFlow::Break(())
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(once.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_lets_a_run_finish_within_the_grace_and_aborts_past_it() {
        let finished = Arc::new(AtomicUsize::new(0));
        let mut bg = Background::new();
        bg.every("slow", Duration::from_secs(60), &finished, |n| async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            n.fetch_add(1, Ordering::SeqCst);
            ControlFlow::Continue(())
        });
        bg.spawn("forever", std::future::pending());
        tokio::time::sleep(Duration::from_millis(500)).await;
        bg.stop(Duration::from_secs(5)).await;
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the run in progress completed"
        );

        let mut bg = Background::new();
        bg.every(
            "stuck",
            Duration::from_secs(60),
            &finished,
            |n| async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                n.fetch_add(1, Ordering::SeqCst);
                ControlFlow::Continue(())
            },
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = tokio::time::Instant::now();
        bg.stop(Duration::from_secs(5)).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5),
            "stopped at the grace"
        );
        tokio::time::sleep(Duration::from_secs(7200)).await;
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the stuck run was aborted"
        );
    }
}
