//! The Convex mirror: the module under convex-test, and the daemon end to end on the emulator.

mod daemon;
mod module;
mod stream;
