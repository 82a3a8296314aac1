//! SQL, one function per query, generic over the executor: the handler decides whether it
//! runs on the pool or inside its transaction. Every user-owned query takes the caller's id.

pub mod auth;
pub mod programs;
pub mod reference;
pub mod rewards;
pub mod usage;
