//! Two ways to build on the stack:
//!
//! - [`events`]: the per-core event API. The application runs on the cores,
//!   beside TCP, and is called on connection events; no locks, no copies, no
//!   allocation per event. The HTTP server is built on it.
//! - [`user`]: the RFC 793 user interface (OPEN, SEND, RECEIVE, STATUS,
//!   CLOSE, ABORT) for ordinary threads. Calls reach the owning core through
//!   lock-free queues; results come back by completion or callback.

pub mod events;
pub mod user;
