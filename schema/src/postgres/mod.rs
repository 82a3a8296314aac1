//! The Postgres runtime shared by the API and the daemon:
//! pool creation from the environment contract, transactions that retry serialization
//! failures and deadlocks, database errors mapped to stable kinds, migrations, readiness,
//! and a LISTEN that survives its connection.

mod config;
mod error;
mod health;
mod listen;
pub mod migrate;
mod pool;
mod transaction;

pub use config::{ConfigError, PgConfig, SslMode, UrlParts};
pub use error::{DbError, DbErrorKind};
pub use health::{readiness, Readiness};
pub use listen::{listen_forever, listen_forever_from};
pub use pool::{connect, record_pool_metrics, timed};
pub use transaction::{with_transaction, Isolation, RetryPolicy, Retryable, TxFuture};

/// The pool type every data function runs on.
pub type PgPool = sqlx::PgPool;
