//! TCP (RFC 9293): the sans-IO engine. Segments and `now` in; segments,
//! application events and the next deadline out.

pub mod assembler;
pub mod buffer;
pub mod config;
pub mod congestion;
pub mod connection;
pub mod isn;
pub mod plpmtud;
pub mod rtt;
pub mod sack;
pub mod shard;
pub mod syncookie;
