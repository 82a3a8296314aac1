//! The logical replication source: pgoutput decoding, typed events, and the stream that
//! hands committed changes to a destination and confirms what it acknowledged.

mod decoder;
mod diagnose;
mod event;
pub mod pgoutput;
mod stream;
pub mod value;

pub use decoder::{Decoder, EventError};
pub use event::{pg_time, Column, Event, Lsn, Op, Relation, Row, RowChange};
pub use stream::{Stream, StreamConfig, StreamError, StreamHealth};
pub use value::Value;
