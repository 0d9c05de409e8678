//! A service in a runtime of its own, as if it were its own process: [`Process::stop`] is the
//! graceful shutdown SIGTERM triggers (the service drains), [`Process::kill`] is SIGKILL (its
//! runtime is dropped with every task in it, so open connections are cut mid-request). A
//! service on the test's runtime cannot be killed that way: the server spawns a task per
//! connection, which aborting the service's own task leaves running.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context;
use braid_core::server::Listeners;
use tokio::sync::oneshot;

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

pub struct Process {
    pub name: &'static str,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    kill: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<anyhow::Result<()>>>,
}

impl Process {
    /// Starts `run` on ephemeral ports in a new two-thread runtime on its own thread.
    pub async fn spawn<F, Fut>(name: &'static str, run: F) -> anyhow::Result<Self>
    where
        F: FnOnce(Listeners, Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (kill, kill_rx) = oneshot::channel::<()>();
        let (done_tx, done) = oneshot::channel();
        let (addrs_tx, addrs) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name(name)
            .build()
            .context("runtime")?;
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let outcome = runtime.block_on(async move {
                    let listeners = Listeners::ephemeral().await?;
                    let _ = addrs_tx.send((listeners.grpc_addr()?, listeners.admin_addr()?));
                    let shutdown: Shutdown = Box::pin(async move {
                        let _ = stop_rx.await;
                    });
                    tokio::select! {
                        result = run(listeners, shutdown) => result,
                        _ = kill_rx => Err(anyhow::anyhow!("killed")),
                    }
                });
                // Killed or stopped, the runtime goes with every task still in it.
                runtime.shutdown_background();
                let _ = done_tx.send(outcome);
            })
            .context("thread")?;
        let (grpc, admin) = addrs.await.context("the process did not bind its ports")?;
        Ok(Self {
            name,
            grpc,
            admin,
            stop: Some(stop),
            kill: Some(kill),
            done: Some(done),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Graceful shutdown (SIGTERM); returns the service's own result.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.wait().await
    }

    /// Kill (SIGKILL): every task of the service is dropped at once, in-flight requests too.
    pub async fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        let _ = self.wait().await;
    }

    async fn wait(&mut self) -> anyhow::Result<()> {
        match self.done.take() {
            Some(done) => tokio::time::timeout(std::time::Duration::from_secs(30), done)
                .await
                .context("did not end within 30 s")?
                .context("its thread died")?,
            None => Ok(()),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}
