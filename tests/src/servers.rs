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

/// A slow service: a TCP proxy to `upstream` that holds every chunk the upstream sends for
/// `delay` before passing it on (each answer arrives `delay` late; as many can be in flight as
/// without it). Point a client's endpoint at [`SlowProxy::endpoint`]. Stops on drop.
pub struct SlowProxy {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SlowProxy {
    pub async fn start(upstream: SocketAddr, delay: Duration) -> anyhow::Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                    let requests = async {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    };
                    let answers = async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n @ 1..) = server_read.read(&mut buf).await {
                            let arrived = tokio::time::Instant::now();
                            if tx.send((arrived, buf[..n].to_vec())).is_err() {
                                break;
                            }
                        }
                    };
                    let late = async move {
                        while let Some((arrived, bytes)) = rx.recv().await {
                            tokio::time::sleep_until(arrived + delay).await;
                            if client_write.write_all(&bytes).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::join!(requests, answers, late);
                });
            }
        });
        Ok(Self { addr, task })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
