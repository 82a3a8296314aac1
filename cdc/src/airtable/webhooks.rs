//! The webhooks API: the base's hooks listed, created, refreshed, deleted, and their
//! payloads read from a cursor.

use super::{client::AirtableClient, retry::AirtableError, Lane};
use reqwest::Method;
use serde_json::{json, Value};

impl AirtableClient {
    fn webhooks_path(&self) -> String {
        format!("bases/{}/webhooks", self.config().base_id)
    }

    /// The base's webhooks (`{webhooks: [...]}`).
    pub async fn webhooks(&self, lane: Lane) -> Result<Value, AirtableError> {
        self.send(lane, "webhooks", Method::GET, &self.webhooks_path(), &[], None).await
    }

    /// Creates a webhook: `{id, macSecretBase64, expirationTime}`.
    pub async fn create_webhook(&self, lane: Lane, body: &Value) -> Result<Value, AirtableError> {
        self.send(lane, "webhooks", Method::POST, &self.webhooks_path(), &[], Some(body)).await
    }

    pub async fn delete_webhook(&self, lane: Lane, id: &str) -> Result<(), AirtableError> {
        let path = format!("{}/{id}", self.webhooks_path());
        self.send(lane, "webhooks", Method::DELETE, &path, &[], None).await.map(|_| ())
    }

    /// Extends the webhook's life by 7 days: `{expirationTime}`.
    pub async fn refresh_webhook(&self, lane: Lane, id: &str) -> Result<Value, AirtableError> {
        let path = format!("{}/{id}/refresh", self.webhooks_path());
        self.send(lane, "webhooks", Method::POST, &path, &[], None).await
    }

    pub async fn enable_notifications(&self, lane: Lane, id: &str) -> Result<(), AirtableError> {
        let path = format!("{}/{id}/enableNotifications", self.webhooks_path());
        self.send(lane, "webhooks", Method::POST, &path, &[], Some(&json!({ "enable": true })))
            .await
            .map(|_| ())
    }

    /// One page of payloads from `cursor`: `{cursor, mightHaveMore, payloads}`.
    pub async fn payloads(
        &self,
        lane: Lane,
        id: &str,
        cursor: u64,
    ) -> Result<Value, AirtableError> {
        let path = format!("{}/{id}/payloads", self.webhooks_path());
        let query =
            [("cursor".to_owned(), cursor.to_string()), ("limit".to_owned(), "50".to_owned())];
        self.send(lane, "payloads", Method::GET, &path, &query, None).await
    }
}
