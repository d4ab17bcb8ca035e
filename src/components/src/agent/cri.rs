//! Kubernetes container logs, as the kubelet writes them on every node:
//! `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<N>.log`, one line per write in the
//! CRI format `<RFC 3339 time> <stdout|stderr> <P|F> <text>`, where `P` marks a part of a
//! longer line that continues on the next one.
//!
//! An agent given `--cri-logs DIR` tails every such file and sends each line as a log
//! envelope, so `hydrant logs` and the log cache work for pods as for cell apps:
//! - source id `<namespace>/<workload>` (the pod name without the hashes or ordinal a
//!   Deployment, DaemonSet or StatefulSet adds), instance id the pod name;
//! - tags `namespace`, `pod`, `pod_uid`, `container`, and `source_type` `POD`;
//! - the line's own time, and OUT or ERR from its stream; parts joined into one line.
//!
//! Files present when the agent starts are read from their end (a restarted agent does
//! not send a pod's whole history again); files that appear later from their start. A
//! rotated file (the kubelet renames `0.log` and starts a new one) is read to its end
//! before the new one.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hydrant_proto::envelope;
use hydrant_proto::raw::RawEnvelope;
use tokio_util::sync::CancellationToken;

use crate::inbound::Sink;

/// How often the directory is looked at for new lines and files.
pub const POLL: Duration = Duration::from_millis(250);

/// Longest line kept while its parts arrive; the rest of a longer one is cut.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Longest stretch of a file without a newline that is held; a longer one (not what the
/// kubelet writes) is dropped up to its next newline.
pub const MAX_RAW_LINE_BYTES: usize = 1024 * 1024;

/// One CRI log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// Nanoseconds since the epoch.
    pub time: i64,
    /// Written to stderr.
    pub err: bool,
    /// A part (`P`) of a line that continues on the next one.
    pub partial: bool,
    /// The text, without the newline.
    pub text: &'a str,
}

/// Parses `<time> <stream> <tag> <text>`; `None` for anything else.
pub fn parse(line: &str) -> Option<Line<'_>> {
    let mut it = line.splitn(4, ' ');
    let (time, stream, tag) = (it.next()?, it.next()?, it.next()?);
    let text = it.next().unwrap_or("");
    let time = chrono::DateTime::parse_from_rfc3339(time)
        .ok()?
        .timestamp_nanos_opt()?;
    let err = match stream {
        "stdout" => false,
        "stderr" => true,
        _ => return None,
    };
    let partial = match tag.split(':').next() {
        Some("P") => true,
        Some("F") => false,
        _ => return None,
    };
    Some(Line {
        time,
        err,
        partial,
        text,
    })
}

/// Where a container's log file belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Pod uid.
    pub uid: String,
    /// Container name.
    pub container: String,
}

/// The container of `file` (`<root>/<namespace>_<pod>_<uid>/<container>/<N>.log`).
pub fn container(root: &Path, file: &Path) -> Option<Container> {
    let rel = file.strip_prefix(root).ok()?;
    let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
    let [pod_dir, container, name] = parts[..] else {
        return None;
    };
    let number = name.strip_suffix(".log")?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut it = pod_dir.splitn(3, '_');
    let (namespace, pod, uid) = (it.next()?, it.next()?, it.next()?);
    Some(Container {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        uid: uid.to_owned(),
        container: container.to_owned(),
    })
}

/// The workload a pod belongs to, from its name: `web-7d4b9c8f6-x2k4p` (Deployment) and
/// `node-agent-x2k4p` (DaemonSet) → `web`, `node-agent`; `db-0` (StatefulSet) → `db`; a
/// bare pod keeps its name.
pub fn workload(pod: &str) -> &str {
    // Kubernetes' random suffixes and template hashes use this alphabet (no vowels).
    let hashy = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
    };
    let Some((head, last)) = pod.rsplit_once('-') else {
        return pod;
    };
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return head;
    }
    if last.len() != 5 || !hashy(last) {
        return pod;
    }
    match head.rsplit_once('-') {
        Some((deploy, rs)) if (9..=10).contains(&rs.len()) && hashy(rs) => deploy,
        _ => head,
    }
}

/// One tailed file: its open handle (kept across a rename), what is read of it, and a line
/// whose parts are still arriving.
#[derive(Debug)]
struct Tail {
    file: std::fs::File,
    inode: u64,
    offset: u64,
    /// Bytes after the last newline.
    rest: Vec<u8>,
    /// Dropping an overlong raw line up to its newline.
    skipping: bool,
    /// Parts of a line so far.
    partial: String,
    container: Container,
}

impl Tail {
    fn open(path: &Path, container: Container, from_end: bool) -> std::io::Result<Tail> {
        let mut file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        let offset = if from_end { meta.len() } else { 0 };
        file.seek(SeekFrom::Start(offset))?;
        Ok(Tail {
            file,
            inode: meta.ino(),
            offset,
            rest: Vec::new(),
            skipping: false,
            partial: String::new(),
            container,
        })
    }

    /// Reads what was appended; returns the complete lines' envelopes.
    fn read(&mut self, out: &mut Vec<RawEnvelope>) {
        let mut buf = Vec::new();
        if self.file.read_to_end(&mut buf).is_err() {
            return;
        }
        self.offset += buf.len() as u64;
        self.take(&buf, out);
    }

    /// Takes bytes read from the file; returns the complete lines' envelopes.
    fn take(&mut self, mut buf: &[u8], out: &mut Vec<RawEnvelope>) {
        if self.skipping {
            let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                return;
            };
            buf = &buf[nl + 1..];
            self.skipping = false;
        }
        self.rest.extend_from_slice(buf);
        let Some(end) = self.rest.iter().rposition(|&b| b == b'\n') else {
            if self.rest.len() > MAX_RAW_LINE_BYTES {
                tracing::warn!(pod = %self.container.pod, "pod logs: a line longer than {MAX_RAW_LINE_BYTES} bytes is dropped");
                self.rest.clear();
                self.skipping = true;
            }
            return;
        };
        let complete: Vec<u8> = self.rest.drain(..=end).collect();
        for raw in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let text = String::from_utf8_lossy(raw);
            let Some(line) = parse(&text) else { continue };
            if self.partial.len() + line.text.len() <= MAX_LINE_BYTES {
                self.partial.push_str(line.text);
            }
            if line.partial {
                continue;
            }
            let whole = std::mem::take(&mut self.partial);
            out.push(self.envelope(line.time, line.err, whole));
        }
    }

    fn envelope(&self, time: i64, err: bool, text: String) -> RawEnvelope {
        let c = &self.container;
        let source = format!("{}/{}", c.namespace, workload(&c.pod));
        let mut e = envelope::log(source, text.into_bytes(), err);
        e.timestamp = time;
        e.instance_id = c.pod.clone();
        for (k, v) in [
            ("namespace", &c.namespace),
            ("pod", &c.pod),
            ("pod_uid", &c.uid),
            ("container", &c.container),
        ] {
            e.tags.insert(k.into(), v.clone());
        }
        e.tags.insert("source_type".into(), "POD".into());
        RawEnvelope::from_envelope(&e)
    }
}

/// Every `<N>.log` file under `root`, two levels down.
fn log_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let dirs = |p: &Path| {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    for pod in dirs(root).into_iter().filter(|p| p.is_dir()) {
        for container in dirs(&pod).into_iter().filter(|p| p.is_dir()) {
            out.extend(dirs(&container).into_iter().filter(|f| {
                f.extension().is_some_and(|e| e == "log") && self::container(root, f).is_some()
            }));
        }
    }
    out
}

/// Tails every container log under `root` into `sink` until `stop`.
pub async fn serve<S: Sink>(root: PathBuf, sink: Arc<S>, stop: CancellationToken) {
    let mut tails: HashMap<PathBuf, Tail> = HashMap::new();
    let mut first = true;
    loop {
        let mut out = Vec::new();
        let files = log_files(&root);
        for path in &files {
            let inode = std::fs::metadata(path).map(|m| m.ino()).ok();
            // Rotated: the old file (renamed, still open) is read to its end first.
            if let Some(t) = tails.get_mut(path)
                && inode.is_some_and(|i| i != t.inode)
            {
                t.read(&mut out);
                tails.remove(path);
            }
            if !tails.contains_key(path)
                && let Some(c) = container(&root, path)
                && let Ok(t) = Tail::open(path, c, first)
            {
                tails.insert(path.clone(), t);
            }
            if let Some(t) = tails.get_mut(path) {
                t.read(&mut out);
            }
        }
        // Files gone (a deleted pod): forget them.
        tails.retain(|p, _| files.contains(p));
        first = false;
        if !out.is_empty() {
            sink.accept(out);
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let l = parse("2016-10-06T00:17:09.669794202Z stdout F hello world").unwrap();
        assert_eq!(l.time, 1_475_713_029_669_794_202);
        assert_eq!((l.err, l.partial, l.text), (false, false, "hello world"));
        let l = parse("2016-10-06T00:17:09.669794202+02:00 stderr P part").unwrap();
        assert_eq!(l.time, 1_475_705_829_669_794_202);
        assert_eq!((l.err, l.partial, l.text), (true, true, "part"));
        assert_eq!(parse("2016-10-06T00:17:09Z stdout F").unwrap().text, "");
        for bad in [
            "",
            "hello",
            "2016-10-06T00:17:09Z stdin F x",
            "x stdout F y",
            "2016-10-06T00:17:09Z stdout X y",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    /// A file that never writes a newline is not held in memory: the overlong line is
    /// dropped up to its newline and the next lines read as usual.
    #[test]
    fn an_endless_line_is_dropped_not_held() {
        let dir = std::env::temp_dir().join(format!("hydrant-cri-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0.log");
        std::fs::write(&path, b"").unwrap();
        let c = Container {
            namespace: "ns".into(),
            pod: "p".into(),
            uid: "u".into(),
            container: "c".into(),
        };
        let mut t = Tail::open(&path, c, false).unwrap();
        let mut out = Vec::new();
        let chunk = vec![b'x'; 600 * 1024];
        for _ in 0..3 {
            t.take(&chunk, &mut out);
        }
        assert!(t.rest.len() <= MAX_RAW_LINE_BYTES && t.skipping);
        t.take(b"xxx\n2016-10-06T00:17:09Z stdout F after\n", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].decode().message,
            envelope::log("", "after", false).message
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn paths_and_workloads() {
        let root = Path::new("/var/log/pods");
        let c = container(
            root,
            Path::new("/var/log/pods/shop_web-7d4b9c8f6-x2k4p_6a1e/app/0.log"),
        )
        .unwrap();
        assert_eq!(
            (
                c.namespace.as_str(),
                c.pod.as_str(),
                c.uid.as_str(),
                c.container.as_str()
            ),
            ("shop", "web-7d4b9c8f6-x2k4p", "6a1e", "app")
        );
        assert_eq!(
            container(
                root,
                Path::new("/var/log/pods/shop_web_1/app/0.log.20240101-000000")
            ),
            None
        );
        assert_eq!(
            container(root, Path::new("/var/log/pods/shop_web_1/0.log")),
            None
        );
        assert_eq!(workload("web-7d4b9c8f6-x2k4p"), "web");
        assert_eq!(workload("node-agent-x2k4p"), "node-agent");
        assert_eq!(workload("db-0"), "db");
        assert_eq!(workload("debug"), "debug");
        assert_eq!(workload("my-tool"), "my-tool");
    }
}
