//! Stand-in servers a test starts next to the stack: a throwaway `redis-server`, and a hung
//! service that accepts connections and never answers.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;

use crate::{accepting, free_port};

/// A throwaway `redis-server` on a free port, without persistence; killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: std::process::Child,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context(
                "starting redis-server (`make setup` installs it: apt-get install redis-server)",
            )?;
        let server = Self { port, child };
        accepting("redis-server", port, Duration::from_secs(10)).await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hung service: its socket accepts connections (and reads what is sent) but nothing ever
/// answers, as when a process is wedged. Bind it on a stopped service's address to hang that
/// leg for its clients. Stops on drop.
pub struct HungServer {
    pub addr: SocketAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl HungServer {
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut readers = tokio::task::JoinSet::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                readers.spawn(async move {
                    let mut sink = [0u8; 4096];
                    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
        Ok(Self {
            addr,
            accepted,
            task,
        })
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for HungServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
