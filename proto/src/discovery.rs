//! Finding every doppler behind one DNS name (a Kubernetes headless Service, bosh-dns): an
//! address given as `name:port` whose name is not an IP literal is resolved now and every
//! [`Discovery::refresh`], and the clients ([`crate::ingress`], the nozzles' subscriptions)
//! keep one connection per address it resolves to. An address that appears is used at the
//! next refresh, one that disappears is let go; a failed lookup keeps the last answer.
//!
//! Lookups go to the system's resolvers (`/etc/resolv.conf`, `/etc/hosts`), or to
//! [`Discovery::dns_server`] when set.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioAsyncResolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Default time between two lookups of a name.
pub const REFRESH: Duration = Duration::from_secs(10);

/// How names are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discovery {
    /// The DNS server to ask (default: the system's).
    pub dns_server: Option<SocketAddr>,
    /// Time between two lookups.
    pub refresh: Duration,
}

impl Default for Discovery {
    fn default() -> Discovery {
        Discovery {
            dns_server: None,
            refresh: REFRESH,
        }
    }
}

/// The DNS name and port of `target` when it names hosts rather than one address
/// (`dopplers.hydrant.svc:8082`); `None` for `127.0.0.1:8082`, `[::1]:8082` or a URL.
pub fn dns_name(target: &str) -> Option<(String, u16)> {
    if target.contains("://") || target.parse::<SocketAddr>().is_ok() {
        return None;
    }
    let (host, port) = target.rsplit_once(':')?;
    let port = port.parse().ok()?;
    if host.is_empty() || host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
        return None;
    }
    Some((host.to_owned(), port))
}

/// Resolves names to every address they have.
#[derive(Debug, Clone)]
pub struct Resolver {
    inner: TokioAsyncResolver,
}

impl Resolver {
    /// A resolver asking `d.dns_server`, or the system's resolvers.
    pub fn new(d: &Discovery) -> Result<Resolver, String> {
        let inner = match d.dns_server {
            Some(server) => {
                let servers =
                    NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
                let mut opts = ResolverOpts::default();
                // Answers change (a doppler added or gone): never serve a stale one.
                opts.cache_size = 0;
                TokioAsyncResolver::tokio(ResolverConfig::from_parts(None, vec![], servers), opts)
            }
            None => TokioAsyncResolver::tokio_from_system_conf()
                .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?,
        };
        Ok(Resolver { inner })
    }

    /// Every address of `host`, with `port`.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<BTreeSet<SocketAddr>, String> {
        let ips = self
            .inner
            .lookup_ip(host)
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        Ok(ips.iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}

/// Resolves `host:port` now and every `refresh` until `cancel`, publishing each answer
/// that differs from the last. A failed lookup (logged) keeps the last answer.
pub fn watch(
    resolver: Arc<Resolver>,
    host: String,
    port: u16,
    refresh: Duration,
    cancel: CancellationToken,
) -> watch::Receiver<BTreeSet<SocketAddr>> {
    let (tx, rx) = watch::channel(BTreeSet::new());
    tokio::spawn(async move {
        loop {
            match resolver.resolve(&host, port).await {
                Ok(addrs) => {
                    tx.send_if_modified(|last| {
                        let changed = *last != addrs;
                        if changed {
                            tracing::info!(name = %host, addresses = ?addrs, "dopplers resolved");
                            *last = addrs;
                        }
                        changed
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "doppler lookup failed; keeping the last answer")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(refresh) => {}
                () = cancel.cancelled() => return,
                () = tx.closed() => return,
            }
        }
    });
    rx
}

/// What runs for each address a name resolves to (an ingress client's workers, a nozzle's
/// subscription), each under a token of its own.
#[derive(Debug)]
pub struct PerAddress<T> {
    running: BTreeMap<SocketAddr, (CancellationToken, T)>,
}

impl<T> Default for PerAddress<T> {
    fn default() -> Self {
        PerAddress {
            running: BTreeMap::new(),
        }
    }
}

impl<T> PerAddress<T> {
    /// Brings what runs to `current`: what runs for an address that is gone is cancelled;
    /// for a new one `start` gets a child token of `parent`. An address `start` refuses is
    /// logged (as `what`) and tried again at the next update.
    pub fn update<E: std::fmt::Display>(
        &mut self,
        current: &BTreeSet<SocketAddr>,
        parent: &CancellationToken,
        what: &str,
        mut start: impl FnMut(SocketAddr, CancellationToken) -> Result<T, E>,
    ) {
        self.running.retain(|addr, (stop, _)| {
            let keep = current.contains(addr);
            if !keep {
                tracing::info!(%addr, "{what}: a doppler address is gone; its connection stops");
                stop.cancel();
            }
            keep
        });
        for &addr in current {
            if self.running.contains_key(&addr) {
                continue;
            }
            let stop = parent.child_token();
            match start(addr, stop.clone()) {
                Ok(t) => {
                    self.running.insert(addr, (stop, t));
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "{what}: cannot use a resolved address")
                }
            }
        }
    }

    /// What runs, address by address.
    pub fn into_values(self) -> impl Iterator<Item = T> {
        self.running.into_values().map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_literals() {
        assert_eq!(
            dns_name("dopplers.hydrant.svc:8082"),
            Some(("dopplers.hydrant.svc".into(), 8082))
        );
        assert_eq!(dns_name("localhost:8082"), Some(("localhost".into(), 8082)));
        for literal in [
            "127.0.0.1:8082",
            "[::1]:8082",
            "https://d:8082",
            "d",
            "d:x",
            ":8082",
        ] {
            assert_eq!(dns_name(literal), None, "{literal}");
        }
    }
}
