//! Process signals and the shutdown fan-out used inside a service.

use tokio::sync::watch;

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// A cloneable "shutdown has started" flag for a service's background tasks.
#[derive(Clone, Debug)]
pub struct Stopping(watch::Receiver<bool>);

/// The sending half: call [`StopHandle::stop`] once.
#[derive(Debug)]
pub struct StopHandle(watch::Sender<bool>);

pub fn stop_channel() -> (StopHandle, Stopping) {
    let (tx, rx) = watch::channel(false);
    (StopHandle(tx), Stopping(rx))
}

impl StopHandle {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl Stopping {
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has started (or the handle was dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }
}
