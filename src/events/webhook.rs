//! The webhook to the main API: a blocking `ureq` agent with connect and overall timeouts,
//! and the durable sink ("webhook") that posts every event of the outbox with it.

use std::time::Duration;

use super::outbox::WEBHOOK;
use super::sink::{Outgoing, Sink};
use super::{Report, Status};

/// Where and how the webhook posts events (`ATTENDANCE_WEBHOOK_URL`, ...).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The main API's URL events are posted to.
    pub url: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Bound on one delivery attempt, connect included.
    pub timeout: Duration,
}

/// Posts one event's body to the webhook, as the original service did.
pub struct WebhookSender {
    config: WebhookConfig,
    agent: ureq::Agent,
}

/// What is read of the main API's answer body at most.
const MAX_MESSAGE_BYTES: u64 = 64 * 1024;
/// What is passed on of it (to the realtime answer, the WebSocket feed and `/health`).
const MAX_MESSAGE_CHARS: usize = 512;

/// The main API's answer as it is passed on to clients of this box: at most
/// [`MAX_MESSAGE_CHARS`] characters, control characters (terminal escapes, newlines) turned into
/// spaces, the cut marked. Whatever the main API (or whoever answers at its address) sends.
pub fn sanitize_message(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        out.push_str("… (cut)");
    }
    out
}

impl WebhookSender {
    /// A sender for `config`.
    pub fn new(config: WebhookConfig) -> WebhookSender {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.timeout.min(Duration::from_secs(3))))
            .http_status_as_error(false)
            .build()
            .new_agent();
        WebhookSender { config, agent }
    }

    /// The bound on one attempt.
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
                    .map(|text| sanitize_message(&text))
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

/// The webhook as a durable sink: each event posted with its `event_id` as `Idempotency-Key`.
pub struct WebhookSink {
    sender: WebhookSender,
    retry_max: Duration,
}

impl WebhookSink {
    /// `retry_max`: the longest pause between two attempts while the main API fails.
    pub fn new(config: WebhookConfig, retry_max: Duration) -> WebhookSink {
        WebhookSink {
            sender: WebhookSender::new(config),
            retry_max,
        }
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &'static str {
        WEBHOOK
    }

    fn deliver(&mut self, event: &Outgoing<'_>) -> Report {
        self.sender.send(event.payload, event.event_id)
    }

    fn timeout(&self) -> Duration {
        self.sender.timeout()
    }

    fn retry_max(&self) -> Duration {
        self.retry_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_apis_answer_is_cut_and_cleaned_before_it_is_passed_on() {
        assert_eq!(sanitize_message(r#"{"stored":true}"#), r#"{"stored":true}"#);
        assert_eq!(sanitize_message("a\x1b[31mred\r\nb"), "a [31mred  b");
        let long = "é".repeat(10_000);
        let cut = sanitize_message(&long);
        assert_eq!(cut.chars().filter(|c| *c == 'é').count(), MAX_MESSAGE_CHARS);
        assert!(cut.ends_with("(cut)"));
    }
}
