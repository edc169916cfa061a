//! Per-stack TCP settings, with the defaults a production server wants and
//! the RFC or Linux source of each.

use std::time::Duration;

use super::congestion::Algorithm;

/// Keepalive probing (RFC 9293 §3.8.4, RFC 1122 §4.2.3.6): off unless asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// Idle time before the first probe (RFC 1122: at least two hours by
    /// default; applications may ask for less).
    pub idle: Duration,
    /// Between unanswered probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub probes: u32,
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive {
            idle: Duration::from_secs(7200),
            interval: Duration::from_secs(75),
            probes: 9,
        }
    }
}

/// TCP settings shared by every connection of a stack.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpConfig {
    /// The MSS we announce: the largest segment we can receive (MTU - 40).
    pub mss: u16,
    /// Send buffer per connection, bytes.
    pub send_buffer: usize,
    /// Receive buffer per connection, bytes (the window we can offer).
    pub recv_buffer: usize,
    /// Offer window scaling (RFC 7323 §2).
    pub window_scaling: bool,
    /// Offer timestamps (RFC 7323 §3): RTT measurement and PAWS.
    pub timestamps: bool,
    /// Offer SACK (RFC 2018) and use it for loss recovery (RFC 6675).
    pub sack: bool,
    /// Congestion control (RFC 9438 CUBIC by default, or NewReno).
    pub congestion: Algorithm,
    /// RTO before the first RTT sample (RFC 6298 §2.1: 1 s).
    pub initial_rto: Duration,
    /// Lower bound on the RTO. RFC 6298 §2.4 says 1 s; Linux and most
    /// production stacks use 200 ms, which is the default here.
    pub min_rto: Duration,
    /// Upper bound on the RTO (RFC 6298 §2.5 allows >= 60 s; Linux: 120 s).
    pub max_rto: Duration,
    /// SYN retransmissions before an active open fails (Linux tcp_syn_retries).
    pub syn_retries: u32,
    /// SYN-ACK retransmissions before a half-open connection is dropped
    /// (Linux tcp_synack_retries).
    pub synack_retries: u32,
    /// Retransmissions of data before the connection is aborted (RFC 1122
    /// §4.2.3.5 R2; Linux tcp_retries2 = 15).
    pub max_retransmits: u32,
    /// Time in TIME-WAIT: 2 MSL (RFC 9293 §3.4.2; MSL = 30 s as Linux).
    pub time_wait: Duration,
    /// How long an orphaned connection may sit in FIN-WAIT-2 waiting for
    /// the peer's FIN (Linux tcp_fin_timeout). None: forever.
    pub fin_wait_2_timeout: Option<Duration>,
    /// Delayed ACK timeout (RFC 9293 §3.8.6.3 / RFC 1122: under 500 ms; an
    /// ACK at least every second full-sized segment). 40 ms as Linux.
    pub delayed_ack: Duration,
    /// Nagle's algorithm (RFC 9293 §3.7.4) by default; off for HTTP.
    pub nagle: bool,
    pub keepalive: Option<KeepAlive>,
    /// Abort a connection whose sent data stays unacknowledged this long
    /// (RFC 5482 user timeout; RFC 9293 §3.8.3 R2 by time).
    pub user_timeout: Option<Duration>,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            mss: 1460,
            send_buffer: 256 * 1024,
            recv_buffer: 256 * 1024,
            window_scaling: true,
            timestamps: true,
            sack: true,
            congestion: Algorithm::default(),
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            // 7 retries with a 1 s initial RTO keep a SYN going for 255 s:
            // RFC 9293 MUST-23 asks at least 3 minutes (Linux's 6 give 127 s).
            syn_retries: 7,
            synack_retries: 5,
            max_retransmits: 15,
            time_wait: Duration::from_secs(60),
            fin_wait_2_timeout: Some(Duration::from_secs(60)),
            delayed_ack: Duration::from_millis(40),
            nagle: false,
            keepalive: None,
            user_timeout: None,
        }
    }
}

impl TcpConfig {
    /// The window scale we offer: the smallest shift that lets the whole
    /// receive buffer be advertised (RFC 7323 §2.3), at most 14.
    pub fn recv_window_scale(&self) -> u8 {
        let mut shift = 0u8;
        while shift < 14 && (self.recv_buffer >> shift) > u16::MAX as usize {
            shift += 1;
        }
        shift
    }
}
