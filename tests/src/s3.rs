//! An S3-compatible server for tests: moto's server mode (PyPI `moto[server]`, installed by
//! `.ci/run` into `/opt/hydrant-s3`), started on 127.0.0.1 and killed when dropped; and a
//! loopback TCP proxy in front of it that can cut connections in the middle of a request,
//! as a lost network does during an upload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::servers::free_port;
use crate::{eventually_within, http_get};

/// Where `.ci/run` installs moto.
pub const MOTO: &str = "/opt/hydrant-s3/bin/moto_server";

/// A running moto S3 server.
#[derive(Debug)]
pub struct S3 {
    /// Its address.
    pub addr: SocketAddr,
    child: Child,
}

impl S3 {
    /// Starts moto and waits until it answers.
    pub async fn start() -> S3 {
        let bin = PathBuf::from(MOTO);
        assert!(
            bin.exists(),
            "{MOTO} is missing; run `python3 -m venv /opt/hydrant-s3 && /opt/hydrant-s3/bin/pip install 'moto[server]==5.1.18'` (.ci/run does)"
        );
        let addr = free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let s3 = S3 { addr, child };
        eventually_within("moto ready", Duration::from_secs(60), || async {
            http_get(addr, "/").await.is_ok()
        })
        .await;
        s3
    }

    /// Creates a bucket (S3 `CreateBucket`: `PUT /<bucket>`).
    pub async fn create_bucket(&self, bucket: &str) {
        let url = format!("http://{}/{bucket}", self.addr);
        let r = hydrant_runtime::https::plain_client()
            .put(&url)
            .send()
            .await
            .expect("create bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on 127.0.0.1 to `to`. While cutting, every connection is closed once it has
/// carried [`Proxy::CUT_AFTER`] bytes from the client: a request whose body is longer is
/// cut in the middle.
#[derive(Debug)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    cutting: Arc<AtomicBool>,
    /// Connections cut so far.
    pub cut: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Bytes a connection may carry from the client while cutting.
    pub const CUT_AFTER: u64 = 2048;

    /// Starts forwarding to `to`.
    pub async fn start(to: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let cutting = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicU64::new(0));
        let (c, n) = (Arc::clone(&cutting), Arc::clone(&cut));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (c, n) = (Arc::clone(&c), Arc::clone(&n));
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(to).await {
                        pipe(client, server, c, n).await;
                    }
                });
            }
        });
        Proxy {
            addr,
            cutting,
            cut,
            task,
        }
    }

    /// Starts or stops cutting.
    pub fn cutting(&self, on: bool) {
        self.cutting.store(on, Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(client: TcpStream, server: TcpStream, cutting: Arc<AtomicBool>, cut: Arc<AtomicU64>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent = 0u64;
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    // The client is done sending; its answer may still be on the way.
                    let _ = sw.shutdown().await;
                    return std::future::pending::<()>().await;
                }
                Ok(n) => n,
            };
            if cutting.load(Relaxed) && sent + n as u64 > Proxy::CUT_AFTER {
                let keep = Proxy::CUT_AFTER.saturating_sub(sent) as usize;
                let _ = sw.write_all(&buf[..keep]).await;
                cut.fetch_add(1, Relaxed);
                return; // both halves drop: the connection is gone mid-request
            }
            sent += n as u64;
            if sw.write_all(&buf[..n]).await.is_err() {
                return std::future::pending::<()>().await;
            }
        }
    };
    let down = async {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    };
    // Whichever side ends first ends the connection.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}
