//! Hosts for tests: network namespaces, each with one veth link to a bridge in the test's
//! own namespace (so the test reaches every host), and `hydrant` processes started inside
//! them. Everything is created by the test and removed when the [`Hosts`] drop; a link can
//! be cut and restored as a cable pulled at the switch would be.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::guard::Proc;
use crate::hydrant_bin;

/// `count` hosts on one private /24, reachable from the test through a bridge.
#[derive(Debug)]
pub(crate) struct Hosts {
    names: Vec<String>,
    links: Vec<String>,
    bridge: String,
    subnet: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Hosts {
    /// Creates the namespaces, links and addresses, or says why it cannot (not root, no
    /// `ip`, namespaces not permitted). Names carry the test process id, so concurrent
    /// runs do not meet.
    pub(crate) fn create(count: usize) -> Result<Hosts, String> {
        let pid = std::process::id();
        let tag = pid % 100_000;
        let mut hosts = Hosts {
            names: Vec::new(),
            links: Vec::new(),
            bridge: format!("hybr{tag}"),
            subnet: format!("10.213.{}", pid % 250),
        };
        ip(&["link", "add", &hosts.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}.254/24", hosts.subnet),
            "dev",
            &hosts.bridge,
        ])?;
        ip(&["link", "set", &hosts.bridge, "up"])?;
        for i in 0..count {
            let name = format!("hydrant-{tag}-h{i}");
            ip(&["netns", "add", &name])?;
            hosts.names.push(name.clone());
            let outside = format!("hy{tag}h{i}");
            let inside = format!("hy{tag}i{i}");
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            hosts.links.push(outside.clone());
            ip(&["link", "set", &inside, "netns", &name])?;
            ip(&["link", "set", &outside, "master", &hosts.bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            let n = name.as_str();
            ip(&["-n", n, "link", "set", "lo", "up"])?;
            ip(&["-n", n, "link", "set", &inside, "name", "eth0"])?;
            ip(&[
                "-n",
                n,
                "addr",
                "add",
                &format!("{}/24", hosts.addr(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", n, "link", "set", "eth0", "up"])?;
        }
        Ok(hosts)
    }

    /// Host `i`'s address.
    pub(crate) fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    /// Pulls host `i`'s cable: its port on the bridge goes down, so nothing reaches it or
    /// leaves it, and no peer is told (no reset, no ICMP).
    pub(crate) fn cut(&self, i: usize) {
        ip(&["link", "set", &self.links[i], "down"]).expect("cut a link");
    }

    /// Plugs host `i`'s cable back in.
    pub(crate) fn restore(&self, i: usize) {
        ip(&["link", "set", &self.links[i], "up"]).expect("restore a link");
    }

    /// Starts `hydrant ARGS` on host `i`, its output in `log`.
    pub(crate) fn spawn(&self, i: usize, args: &[String], log: &Path) -> Proc {
        let out = std::fs::File::create(log).expect("create a process log");
        let err = out.try_clone().expect("clone the log handle");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.names[i]])
            .arg(hydrant_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start hydrant in a namespace");
        Proc::new(child)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace takes its end of the veth pair, and the pair with it.
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
        for link in &self.links {
            let _ = ip(&["link", "del", link]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
