//! What the demo does through Herald's API, as a merchant's backend would: one small
//! client, one function per step.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// Herald's API at `base`, with a bearer token.
pub struct Api {
    base: String,
    token: String,
    client: awc::Client,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            client: awc::Client::builder()
                .timeout(Duration::from_secs(10))
                .finish(),
        }
    }

    /// A call that must answer `want`; its JSON body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> anyhow::Result<Value> {
        let method: awc::http::Method = method.parse()?;
        let request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        let mut response = match body {
            Some(body) => request.send_json(&body).await,
            None => request.send().await,
        }
        .map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))?;
        let status = response.status().as_u16();
        let bytes = response.body().await.unwrap_or_default();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status != want {
            bail!("{method} {path} answered {status}: {value}");
        }
        Ok(value)
    }

    /// An application of its own for this run (a demo run again keeps the last one's).
    pub async fn create_application(&self, uid: &str) -> anyhow::Result<String> {
        let app = self
            .call(
                "POST",
                "/api/v1/app",
                Some(json!({"name": "Demo shop", "uid": uid})),
                201,
            )
            .await?;
        id_of(&app)
    }

    /// The event types, made once (a second run finds them).
    pub async fn create_event_type(&self, name: &str, description: &str) -> anyhow::Result<()> {
        let body = json!({"name": name, "description": description});
        match self
            .call("POST", "/api/v1/event-type", Some(body), 201)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("answered 409") => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn create_endpoint(
        &self,
        app: &str,
        url: &str,
        secret: &str,
    ) -> anyhow::Result<String> {
        let body = json!({"url": url, "secret": secret, "description": "herald demo"});
        let endpoint = self
            .call(
                "POST",
                &format!("/api/v1/app/{app}/endpoint"),
                Some(body),
                201,
            )
            .await?;
        id_of(&endpoint)
    }

    pub async fn send(
        &self,
        app: &str,
        event_type: &str,
        payload: Value,
    ) -> anyhow::Result<String> {
        let body = json!({"eventType": event_type, "payload": payload});
        let message = self
            .call("POST", &format!("/api/v1/app/{app}/msg"), Some(body), 202)
            .await?;
        id_of(&message)
    }

    /// The endpoint's circuit: `open`, `half-open` or `closed`.
    pub async fn circuit(&self, app: &str, endpoint: &str) -> anyhow::Result<String> {
        let out = self
            .call(
                "GET",
                &format!("/api/v1/app/{app}/endpoint/{endpoint}/circuit"),
                None,
                200,
            )
            .await?;
        Ok(out["state"].as_str().unwrap_or("closed").to_string())
    }

    /// The application's dead letters.
    pub async fn dead_letters(&self, app: &str) -> anyhow::Result<Vec<Value>> {
        let page = self
            .call(
                "GET",
                &format!("/api/v1/dead-letter?app_id={app}"),
                None,
                200,
            )
            .await?;
        Ok(page["data"].as_array().cloned().unwrap_or_default())
    }
}

fn id_of(value: &Value) -> anyhow::Result<String> {
    value["id"]
        .as_str()
        .map(String::from)
        .with_context(|| format!("no id in {value}"))
}

/// The curl command that replays dead letter `id`.
pub fn replay_command(base: &str, token: &str, id: &str) -> String {
    format!(
        "curl -sS -X POST -H 'Authorization: Bearer {token}' {base}/api/v1/dead-letter/{id}/replay"
    )
}

/// The curl command that replays every dead letter of `app`.
pub fn replay_all_command(base: &str, token: &str, app: &str) -> String {
    format!(
        "curl -sS -X POST -H 'Authorization: Bearer {token}' -H 'content-type: application/json' \
         -d '{{\"appId\": \"{app}\"}}' {base}/api/v1/dead-letter/replay"
    )
}
