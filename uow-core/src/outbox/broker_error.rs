//! The error of the broker publishers (features `rabbitmq` and `nats`).

use std::fmt;

/// Why a broker publisher could not connect, or could not publish a batch: what failed (with
/// the client library's message) and what to check. [`Relay`](super::Relay) reports it inside
/// [`Error::Publish`](crate::Error::Publish); it converts with `?` into `Box<dyn Error>`,
/// `Box<dyn Error + Send + Sync>` and [`PublishError`](super::PublishError).
///
/// ```
/// # #[cfg(feature = "rabbitmq")] fn main() -> Result<(), Box<dyn std::error::Error>> {
/// tokio::runtime::Runtime::new()?.block_on(async {
///     // Nothing listens on port 1.
///     let refused = uow::outbox::RabbitMqPublisher::connect("amqp://127.0.0.1:1/%2f", "").await;
///     let error: uow::outbox::BrokerError = refused.err().ok_or("connected to port 1?")?;
///     assert!(error.to_string().starts_with("cannot connect to RabbitMQ"), "{error}");
///     Ok(())
/// })
/// # }
/// # #[cfg(not(feature = "rabbitmq"))] fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerError {
    message: String,
}

impl BrokerError {
    pub(super) fn new(message: String) -> Self {
        BrokerError { message }
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BrokerError {}
