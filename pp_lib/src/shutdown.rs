//! A shutdown signal shared by the tasks of one process.
//!
//! [`Shutdown::new`] gives a [`ShutdownTrigger`] (kept by whoever watches SIGINT/SIGTERM) and a
//! [`Shutdown`] that every task clones: tasks check [`Shutdown::is_requested`] between units of
//! work and `select!` on [`Shutdown::requested`] while they wait.

use tokio::sync::watch;

/// Pulls the trigger: every [`Shutdown`] made with it sees the request.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    /// Asks every task to stop. Calling it again does nothing more.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// A task's view of the shutdown request.
#[derive(Debug, Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (ShutdownTrigger(sender), Shutdown { receiver })
    }

    /// True once shutdown has been asked for.
    pub fn is_requested(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Resolves when shutdown is asked for (at once if it already was). A trigger dropped without
    /// being pulled counts as a request: nobody is left to ask for it.
    pub async fn requested(&self) {
        let mut receiver = self.receiver.clone();
        // An error means the trigger is gone, which is treated as a request.
        let _ = receiver.wait_for(|requested| *requested).await;
    }

    /// Sleeps for `duration`, or less if shutdown is asked for. True when the full time passed.
    pub async fn sleep(&self, duration: std::time::Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.requested() => false,
        }
    }
}

/// A shutdown signal pulled by SIGINT (Ctrl-C) or SIGTERM. A second signal ends the process at
/// once (exit code 130), for an operator who does not want to wait for in-flight work.
/// Call it inside a tokio runtime.
pub fn on_signals() -> Shutdown {
    let (trigger, shutdown) = Shutdown::new();
    tokio::spawn(async move {
        let name = signal().await;
        log::info!("{name} received: finishing the work in flight (a second signal stops at once)");
        trigger.trigger();
        let name = signal().await;
        log::warn!("{name} received again: stopping now");
        std::process::exit(130);
    });
    shutdown
}

/// Resolves on the next SIGINT or SIGTERM, with the signal's name.
pub async fn signal() -> &'static str {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            log::error!("cannot listen for SIGINT: {error}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                log::error!("cannot listen for SIGTERM: {error}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => "SIGINT",
        () = terminate => "SIGTERM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_request() {
        let (trigger, shutdown) = Shutdown::new();
        let other = shutdown.clone();
        assert!(!shutdown.is_requested());
        let waiter = tokio::spawn(async move { other.requested().await });
        trigger.trigger();
        waiter.await.expect("the waiter finishes");
        assert!(shutdown.is_requested());
        assert!(!shutdown.sleep(std::time::Duration::from_secs(60)).await);
    }

    #[tokio::test]
    async fn an_unpulled_trigger_stays_pending() {
        let (_trigger, shutdown) = Shutdown::new();
        assert!(shutdown.sleep(std::time::Duration::from_millis(10)).await);
        assert!(!shutdown.is_requested());
    }
}
