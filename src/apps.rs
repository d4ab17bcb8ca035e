//! `hydrant push | scale | apps | delete`: a client of the scheduler API (the Cloud
//! Controller v3 subset served by `hydrant cell`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Default scheduler URL.
pub const DEFAULT_SCHEDULER: &str = "http://127.0.0.1:9022";

/// Errors talking to the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer.
    #[error(
        "cannot reach the scheduler at {url} ({source}); is `hydrant cell` running? (set --scheduler or HYDRANT_SCHEDULER)"
    )]
    Unreachable {
        /// Where we tried.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The API refused the request.
    #[error("{title} ({status}): {detail}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Cloud Controller error title.
        title: String,
        /// What was wrong.
        detail: String,
    },
    /// No app by that name or guid.
    #[error("app '{0}' not found")]
    NotFound(String),
    /// The app exists already.
    #[error(
        "app '{0}' already exists (use `hydrant scale` to change its instances, or `hydrant delete` first)"
    )]
    Exists(String),
    /// A malformed size such as `--memory 12X`.
    #[error("invalid size {0:?} (use e.g. 256M, 1G)")]
    Size(String),
}

/// Parses `256M`, `1G`, `512MB`, `1024` (megabytes) into megabytes.
pub fn parse_megabytes(s: &str) -> Result<u64, Error> {
    let t = s.trim().to_ascii_uppercase();
    let t = t.strip_suffix('B').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('G') => (&t[..t.len() - 1], 1024),
        Some('M') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n * mult),
        _ => Err(Error::Size(s.to_owned())),
    }
}

/// A scheduler API client.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:9022`).
    pub fn new(base: &str, token: Option<String>) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Error> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|source| Error::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|source| Error::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let err = &value["errors"][0];
        Err(Error::Api {
            status: status.as_u16(),
            title: err["title"].as_str().unwrap_or("error").to_owned(),
            detail: err["detail"]
                .as_str()
                .map_or_else(|| text.clone(), str::to_owned),
        })
    }

    /// Every app.
    pub async fn apps(&self) -> Result<Vec<Value>, Error> {
        let v = self.call(reqwest::Method::GET, "/v3/apps", None).await?;
        Ok(v["resources"].as_array().cloned().unwrap_or_default())
    }

    /// The app with this name or guid.
    pub async fn find(&self, name_or_guid: &str) -> Result<Value, Error> {
        self.apps()
            .await?
            .into_iter()
            .find(|a| a["name"] == name_or_guid || a["guid"] == name_or_guid)
            .ok_or_else(|| Error::NotFound(name_or_guid.to_owned()))
    }

    /// Creates an app.
    pub async fn push(
        &self,
        name: &str,
        command: &str,
        instances: u32,
        memory_mb: u64,
        disk_mb: u64,
        env: &BTreeMap<String, String>,
    ) -> Result<Value, Error> {
        if self.find(name).await.is_ok() {
            return Err(Error::Exists(name.to_owned()));
        }
        let body = json!({
            "name": name, "command": command, "instances": instances,
            "memory_in_mb": memory_mb, "disk_in_mb": disk_mb, "env": env,
        });
        self.call(reqwest::Method::POST, "/v3/apps", Some(body))
            .await
    }

    /// Sets the instance count.
    pub async fn scale(&self, name_or_guid: &str, instances: i64) -> Result<Value, Error> {
        let guid = self.find(name_or_guid).await?["guid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let path = format!("/v3/apps/{guid}/processes/web/actions/scale");
        self.call(
            reqwest::Method::POST,
            &path,
            Some(json!({ "instances": instances })),
        )
        .await
    }

    /// Deletes an app.
    pub async fn delete(&self, name_or_guid: &str) -> Result<(), Error> {
        let guid = self.find(name_or_guid).await?["guid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.call(reqwest::Method::DELETE, &format!("/v3/apps/{guid}"), None)
            .await
            .map(drop)
    }

    /// Per-instance stats of an app.
    pub async fn stats(&self, guid: &str) -> Result<Vec<Value>, Error> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/v3/apps/{guid}/processes/web/stats"),
                None,
            )
            .await?;
        Ok(v["resources"].as_array().cloned().unwrap_or_default())
    }

    /// The `hydrant apps` table.
    pub async fn table(&self) -> Result<String, Error> {
        let mut rows = vec![[
            "name".to_owned(),
            "state".into(),
            "instances".into(),
            "cpu".into(),
            "memory".into(),
            "guid".into(),
        ]];
        for app in self.apps().await? {
            let guid = app["guid"].as_str().unwrap_or_default();
            let stats = self.stats(guid).await?;
            let running = stats.iter().filter(|s| s["state"] == "RUNNING").count();
            let cpu: f64 = stats
                .iter()
                .filter_map(|s| s["usage"]["cpu"].as_f64())
                .sum();
            let mem: u64 = stats
                .iter()
                .filter_map(|s| s["usage"]["mem"].as_u64())
                .sum();
            rows.push([
                app["name"].as_str().unwrap_or_default().to_owned(),
                app["state"].as_str().unwrap_or_default().to_lowercase(),
                format!("{running}/{}", app["instances"]),
                format!("{:.1}%", cpu * 100.0),
                format!("{:.1}M", mem as f64 / (1024.0 * 1024.0)),
                guid.to_owned(),
            ]);
        }
        let widths: Vec<usize> = (0..6)
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for r in &rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:<w$}"))
                .collect();
            out.push_str(cells.join("   ").trim_end());
            out.push('\n');
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_megabytes("256M").unwrap(), 256);
        assert_eq!(parse_megabytes("1G").unwrap(), 1024);
        assert_eq!(parse_megabytes("512mb").unwrap(), 512);
        assert_eq!(parse_megabytes("64").unwrap(), 64);
        assert!(parse_megabytes("12X").is_err());
        assert!(parse_megabytes("0M").is_err());
    }
}
