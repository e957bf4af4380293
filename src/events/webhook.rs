//! The webhook to the main API: a blocking `ureq` agent with connect and overall timeouts.

use std::time::Duration;

use super::{Report, Status};

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Bound on one delivery attempt, connect included.
    pub timeout: Duration,
}

pub struct WebhookSender {
    config: WebhookConfig,
    agent: ureq::Agent,
}

/// The main API's answer body is passed on in reports; keep it to a sane size.
const MAX_MESSAGE_BYTES: u64 = 64 * 1024;

impl WebhookSender {
    pub fn new(config: WebhookConfig) -> WebhookSender {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.timeout.min(Duration::from_secs(3))))
            .http_status_as_error(false)
            .build()
            .new_agent();
        WebhookSender { config, agent }
    }

    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// Posts `payload` with `event_id` as its `Idempotency-Key`; `sent` on 2xx, else `failed`
    /// with the status or the error.
    pub fn send(&self, payload: &str, event_id: &str) -> Report {
        let mut request = self
            .agent
            .post(&self.config.url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", event_id);
        if let Some(key) = &self.config.api_key {
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        match request.send(payload) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let message = response
                    .body_mut()
                    .with_config()
                    .limit(MAX_MESSAGE_BYTES)
                    .read_to_string()
                    .unwrap_or_else(|e| format!("(unreadable answer: {e})"));
                Report {
                    status: if (200..300).contains(&status) {
                        Status::Sent
                    } else {
                        Status::Failed
                    },
                    http_status: Some(status),
                    message: Some(message),
                }
            }
            Err(e) => Report {
                status: Status::Failed,
                http_status: None,
                message: Some(e.to_string()),
            },
        }
    }
}
