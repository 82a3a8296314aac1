//! SQL, one function per query, generic over the executor: the handler decides whether it
//! runs on the pool or inside its transaction. Every user-owned query takes the caller's id.
//! The two hottest reads also run pipelined on shared connections ([`pipeline`]).

pub mod auth;
pub mod pipeline;
pub mod programs;
pub mod reference;
pub mod rewards;
pub mod usage;
