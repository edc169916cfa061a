//! bypass-stack: the userspace TCP/IP stack of bypass.
//!
//! Sans-IO at the core: [`iface::Interface`] takes frames and `now` and
//! writes answers into a [`driver::TxSink`]; it never reads a clock or touches
//! a socket. [`driver`] moves frames (AF_XDP, or an in-memory link with seeded
//! faults for tests) and [`runtime`] runs one pinned loop per receive queue.

#![deny(unsafe_code)]

pub mod api;
pub mod arp;
pub mod counters;
pub mod driver;
pub mod hold;
pub mod host;
pub mod icmp;
pub mod iface;
pub mod ipv4;
pub mod launch;
pub mod runtime;
pub mod tcp;
pub mod testkit;
pub mod time;
pub mod wire;
