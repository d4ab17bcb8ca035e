//! A real rsyslog (Debian `rsyslog`, `rsyslog-gnutls` for TLS) on 127.0.0.1 for a test:
//! `imtcp` (octet-counted framing, RFC 6587) in plain TCP or TLS, every message written to
//! a file as `HOSTNAME|APP-NAME|PROCID|STRUCTURED-DATA|MSG`, one line each, by rsyslog's
//! own RFC 5424 parser. It can be stopped and started again on the same port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::eventually_within;
use crate::servers::free_port;

/// One received message, as rsyslog parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// HOSTNAME.
    pub hostname: String,
    /// APP-NAME.
    pub app_name: String,
    /// PROCID.
    pub procid: String,
    /// Structured data (`-` when none).
    pub structured: String,
    /// MSG without its trailing newline.
    pub msg: String,
}

/// A running rsyslogd.
#[derive(Debug)]
pub struct Rsyslog {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its directory (config, output, certificates).
    pub dir: PathBuf,
    tls: bool,
    /// TLS that also demands a client certificate the CA signed.
    mutual: bool,
    child: Option<Child>,
}

fn binary() -> PathBuf {
    let p = PathBuf::from("/usr/sbin/rsyslogd");
    assert!(
        p.exists(),
        "rsyslogd is not installed; run `apt-get install -y rsyslog rsyslog-gnutls` (.ci/run does)"
    );
    p
}

impl Rsyslog {
    /// Plain TCP.
    pub async fn start(dir: &Path) -> Rsyslog {
        Rsyslog::start_in(dir, false, false).await
    }

    /// TLS with a certificate for 127.0.0.1 from `hydrant certs` (its CA is
    /// [`Rsyslog::ca`]).
    pub async fn start_tls(dir: &Path) -> Rsyslog {
        Rsyslog::start_in(dir, true, false).await
    }

    /// TLS that refuses clients without a certificate of its CA (`x509/certvalid`); the
    /// CA also signed `certs/client.pem` and `certs/client-key.pem`.
    pub async fn start_mutual_tls(dir: &Path) -> Rsyslog {
        Rsyslog::start_in(dir, true, true).await
    }

    async fn start_in(dir: &Path, tls: bool, mutual: bool) -> Rsyslog {
        std::fs::create_dir_all(dir).expect("rsyslog dir");
        if tls {
            hydrant::certs::generate_all(
                &dir.join("certs"),
                &["syslog".to_owned(), "client".to_owned()],
            )
            .expect("certificates for rsyslog");
        }
        let mut r = Rsyslog {
            addr: free_port(),
            dir: dir.to_owned(),
            tls,
            mutual,
            child: None,
        };
        r.resume().await;
        r
    }

    /// The CA that signed a TLS rsyslog's certificate (PEM).
    pub fn ca(&self) -> String {
        std::fs::read_to_string(self.dir.join("certs/ca.pem")).expect("rsyslog CA")
    }

    fn config(&self) -> String {
        let d = self.dir.display();
        let (global_tls, module) = if self.tls {
            (
                format!(
                    " DefaultNetstreamDriverCAFile=\"{d}/certs/ca.pem\" DefaultNetstreamDriverCertFile=\"{d}/certs/syslog.pem\" DefaultNetstreamDriverKeyFile=\"{d}/certs/syslog-key.pem\""
                ),
                if self.mutual {
                    "module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"x509/certvalid\")"
                } else {
                    "module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")"
                },
            )
        } else {
            (String::new(), "module(load=\"imtcp\")")
        };
        format!(
            "global(workDirectory=\"{d}\"{global_tls})\n{module}\n\
             input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n\
             template(name=\"fields\" type=\"string\" string=\"%HOSTNAME%|%APP-NAME%|%PROCID%|%STRUCTURED-DATA%|%msg:::drop-last-lf%\\n\")\n\
             action(type=\"omfile\" file=\"{d}/out.log\" template=\"fields\")\n",
            port = self.addr.port()
        )
    }

    /// Starts it (again) on its port and waits until it accepts connections.
    pub async fn resume(&mut self) {
        let conf = self.dir.join("rsyslog.conf");
        std::fs::write(&conf, self.config()).expect("rsyslog.conf");
        let log = std::fs::File::create(self.dir.join("rsyslogd.stderr")).expect("stderr file");
        let child = Command::new(binary())
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        let addr = self.addr;
        eventually_within(
            "rsyslog listening",
            Duration::from_secs(20),
            || async move { tokio::net::TcpStream::connect(addr).await.is_ok() },
        )
        .await;
    }

    /// Stops it (`kill -9`: no goodbye to its clients).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every message it has written so far.
    pub fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(self.dir.join("out.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut parts = line.splitn(5, '|');
                Some(Received {
                    hostname: parts.next()?.to_owned(),
                    app_name: parts.next()?.to_owned(),
                    procid: parts.next()?.to_owned(),
                    structured: parts.next()?.to_owned(),
                    msg: parts.next()?.to_owned(),
                })
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}
