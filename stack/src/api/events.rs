//! The per-core event API: the fast way to build on the stack. An
//! application implements [`Handler`]; the core loop calls it on connection
//! events, on the core that owns the connection, with a [`Conn`] to read,
//! write, close and configure it there and then. HTTP and TLS run this way.
//!
//! No allocation per event or per connection: each connection's
//! application state (`Handler::Conn`) lives in a table sized once to the
//! shard's slots, found by the connection's slot index. Reading is
//! zero-copy ([`Conn::readable`] borrows the receive buffer, and
//! [`Conn::consume`] releases it); so is writing ([`Conn::send_with`] fills
//! the send buffer in place).
//!
//! Events for one connection come in this order within a pass: connected
//! (active opens), readable, writable, peer closed, closed. After
//! `closed` the state is handed back and the slot is reused.

use std::net::SocketAddrV4;

use crate::{
    runtime::App,
    tcp::{
        config::KeepAlive,
        connection::{Connection, Error, Events, State, Status},
        shard::{ConnectionHandle, Shard, ShardError},
    },
    time::Instant,
};

/// An application on the per-core event API. Every method runs on the
/// core's thread; none may block.
pub trait Handler {
    /// Per-connection application state.
    type Conn;

    /// Once per core, before any traffic: listen, connect.
    fn start(&mut self, core: &mut Core<'_, Self::Conn>);

    /// A passive open completed (the handshake is done); returns the new
    /// connection's state. Data may already be waiting: `readable` follows
    /// in the same pass.
    fn accepted(&mut self, conn: &mut Conn<'_>) -> Self::Conn;

    /// An active open completed.
    fn connected(&mut self, _state: &mut Self::Conn, _conn: &mut Conn<'_>) {}

    /// New bytes can be read ([`Conn::readable`], then [`Conn::consume`]).
    fn readable(&mut self, state: &mut Self::Conn, conn: &mut Conn<'_>);

    /// Send-buffer space opened up (after a short `send`).
    fn writable(&mut self, _state: &mut Self::Conn, _conn: &mut Conn<'_>) {}

    /// The peer sent FIN: nothing more will arrive. By default, our side
    /// closes too once its queued data is sent.
    fn peer_closed(&mut self, _state: &mut Self::Conn, conn: &mut Conn<'_>) {
        let _ = conn.shutdown_write();
    }

    /// The connection is gone: closed normally (`why` is `None`), reset,
    /// refused or timed out. Its state is handed back.
    fn closed(&mut self, _state: Self::Conn, _why: Option<Error>) {}

    /// Every pass of the core loop, after the events: timers, work that
    /// no event triggers.
    fn poll(&mut self, _core: &mut Core<'_, Self::Conn>) {}

    /// The core is stopping: stop accepting and close. By default every
    /// listener goes and every connection is closed gracefully; events keep
    /// coming until they are closed or the grace period ends.
    fn shutdown(&mut self, core: &mut Core<'_, Self::Conn>) {
        core.unlisten_all();
        core.close_all();
    }

    /// Whether the application is done and the core may stop (one-shot
    /// programs); servers never are.
    fn finished(&self) -> bool {
        false
    }
}

/// One connection, inside an event or through [`Core::conn`].
pub struct Conn<'a> {
    handle: ConnectionHandle,
    conn: &'a mut Connection,
    now: Instant,
}

impl Conn<'_> {
    pub fn handle(&self) -> ConnectionHandle {
        self.handle
    }

    pub fn local(&self) -> SocketAddrV4 {
        self.conn.local()
    }

    pub fn peer(&self) -> SocketAddrV4 {
        self.conn.remote()
    }

    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// STATUS (RFC 9293 §3.10.6).
    pub fn status(&self) -> Status {
        self.conn.status()
    }

    /// Why the connection ended abnormally, if it did.
    pub fn error(&self) -> Option<Error> {
        self.conn.error()
    }

    /// The unread bytes, as up to two borrowed slices (the buffer wraps).
    pub fn readable(&self) -> (&[u8], &[u8]) {
        self.conn.readable()
    }

    /// Marks `n` bytes read; the window reopens.
    pub fn consume(&mut self, n: usize) -> usize {
        self.conn.consume(n)
    }

    /// Copies unread bytes into `out`; see [`Connection::recv`].
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        self.conn.recv(out)
    }

    /// Queues as much of `data` as fits; returns how much ([`Handler::writable`]
    /// says when more fits).
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.conn.send(data)
    }

    /// Writes straight into the send buffer: `write` fills a contiguous
    /// free run and returns how many bytes it wrote.
    pub fn send_with(&mut self, write: impl FnOnce(&mut [u8]) -> usize) -> Result<usize, Error> {
        self.conn.send_with(write)
    }

    /// Free space in the send buffer.
    pub fn send_capacity(&self) -> usize {
        self.conn.send_capacity()
    }

    /// Bytes sent (queued) and not yet acknowledged by the peer: what a
    /// client that stopped reading holds up.
    pub fn send_queued(&self) -> usize {
        self.conn.send_queued()
    }

    /// CLOSE as RFC 9293 has it: a FIN follows the queued data; reading
    /// goes on until the peer's FIN.
    pub fn shutdown_write(&mut self) -> Result<(), Error> {
        self.conn.close()
    }

    /// Done with the connection: FIN after the queued data, and nothing
    /// more is read (unread or later data gets a RST, RFC 1122
    /// §4.2.2.13; FIN-WAIT-2 is bounded).
    pub fn close(&mut self) -> Result<(), Error> {
        self.conn.close_orphan()
    }

    /// ABORT: queued data is dropped and the peer gets a RST.
    pub fn abort(&mut self) {
        self.conn.abort();
    }

    /// Nagle's algorithm (RFC 9293 §3.7.4); off suits request/response.
    pub fn set_nagle(&mut self, on: bool) {
        self.conn.set_nagle(on);
    }

    pub fn set_keepalive(&mut self, keepalive: Option<KeepAlive>) {
        self.conn.set_keepalive(keepalive, self.now);
    }

    /// The core's time for this pass.
    pub fn now(&self) -> Instant {
        self.now
    }
}

/// A connection's table entry.
struct Entry<S> {
    handle: ConnectionHandle,
    state: S,
    /// An active open whose `connected` has not been delivered yet.
    connecting: bool,
}

/// Per-connection states, indexed by slot.
struct Table<S> {
    entries: Vec<Option<Entry<S>>>,
    live: usize,
    /// States of connections the shard ended without a CLOSED event (a new
    /// SYN took over a 4-tuple in TIME-WAIT, and the slot was reused):
    /// handed to `closed` on the next pass, so the application always sees
    /// the end of what it accepted.
    ended: Vec<S>,
}

impl<S> Table<S> {
    fn get(&mut self, h: ConnectionHandle) -> Option<&mut Entry<S>> {
        self.entries
            .get_mut(h.index())?
            .as_mut()
            .filter(|e| e.handle == h)
    }

    fn insert(&mut self, handle: ConnectionHandle, state: S, connecting: bool) {
        let slot = &mut self.entries[handle.index()];
        let stale = slot.replace(Entry {
            handle,
            state,
            connecting,
        });
        match stale {
            Some(old) => self.ended.push(old.state),
            None => self.live += 1,
        }
    }

    fn remove(&mut self, h: ConnectionHandle) -> Option<S> {
        let slot = self.entries.get_mut(h.index())?;
        if slot.as_ref().is_some_and(|e| e.handle == h) {
            self.live -= 1;
            slot.take().map(|e| e.state)
        } else {
            None
        }
    }
}

/// The core, for `start`, `poll` and `shutdown`: listen, connect, and reach
/// any connection by handle.
pub struct Core<'a, S> {
    shard: &'a mut Shard,
    table: &'a mut Table<S>,
    now: Instant,
}

impl<S> Core<'_, S> {
    pub fn now(&self) -> Instant {
        self.now
    }

    /// OPEN, passive: connections to `port` are accepted and reported by
    /// [`Handler::accepted`].
    pub fn listen(&mut self, port: u16) -> Result<(), ShardError> {
        self.shard.listen(port)
    }

    /// Stops listening on `port`; connections not yet accepted are reset.
    pub fn unlisten(&mut self, port: u16) {
        self.shard.unlisten(port);
    }

    pub fn unlisten_all(&mut self) {
        loop {
            let Some(port) = self.shard.listening().next() else {
                break;
            };
            self.shard.unlisten(port);
        }
    }

    /// OPEN, active: a SYN to `remote` goes out in this pass;
    /// [`Handler::connected`] follows, or [`Handler::closed`] with
    /// "connection refused" or a timeout.
    pub fn connect(
        &mut self,
        remote: SocketAddrV4,
        state: S,
    ) -> Result<ConnectionHandle, ShardError> {
        let h = self.shard.connect(remote, None, self.now)?;
        self.table.insert(h, state, true);
        Ok(h)
    }

    /// A connection and its state, outside an event.
    pub fn conn(&mut self, h: ConnectionHandle) -> Option<(&mut S, Conn<'_>)> {
        let entry = self.table.get(h)?;
        let conn = self.shard.get_mut(h)?;
        Some((
            &mut entry.state,
            Conn {
                handle: h,
                conn,
                now: self.now,
            },
        ))
    }

    /// Calls `f` for every live connection (at shutdown, or for a sweep:
    /// it visits the whole table).
    pub fn for_each(&mut self, mut f: impl FnMut(&mut S, &mut Conn<'_>)) {
        for entry in self.table.entries.iter_mut().flatten() {
            if let Some(conn) = self.shard.get_mut(entry.handle) {
                f(
                    &mut entry.state,
                    &mut Conn {
                        handle: entry.handle,
                        conn,
                        now: self.now,
                    },
                );
            }
        }
    }

    /// CLOSE on every connection, accepted or not.
    pub fn close_all(&mut self) {
        self.shard.close_all();
    }

    /// Connections the application holds.
    pub fn live(&self) -> usize {
        self.table.live
    }

    /// Every connection of the shard, the application's and those not yet
    /// accepted or in TIME-WAIT.
    pub fn connection_count(&self) -> usize {
        self.shard.connection_count()
    }
}

/// Runs a [`Handler`] as a core's [`App`].
pub struct EventApp<H: Handler> {
    handler: H,
    table: Table<H::Conn>,
}

impl<H: Handler> EventApp<H> {
    pub fn new(handler: H) -> Self {
        EventApp {
            handler,
            table: Table {
                entries: Vec::new(),
                live: 0,
                ended: Vec::new(),
            },
        }
    }

    pub fn handler(&self) -> &H {
        &self.handler
    }

    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Connections the application holds.
    pub fn live(&self) -> usize {
        self.table.live
    }

    fn core<'a>(
        shard: &'a mut Shard,
        table: &'a mut Table<H::Conn>,
        now: Instant,
    ) -> Core<'a, H::Conn> {
        Core { shard, table, now }
    }

    /// Accepts what the listeners have and delivers every pending event.
    fn deliver(&mut self, shard: &mut Shard, now: Instant) {
        let EventApp { handler, table } = self;
        for state in table.ended.drain(..) {
            handler.closed(state, None);
        }
        for i in 0.. {
            let Some(port) = shard.listening().nth(i) else {
                break;
            };
            while let Some(h) = shard.accept(port) {
                let Some(conn) = shard.get_mut(h) else {
                    continue;
                };
                let state = handler.accepted(&mut Conn {
                    handle: h,
                    conn,
                    now,
                });
                table.insert(h, state, false);
            }
        }
        shard.take_events(|h, conn, events| {
            let Some(entry) = table.get(h) else {
                return;
            };
            let mut c = Conn {
                handle: h,
                conn,
                now,
            };
            if entry.connecting
                && (events.contains(Events::CONNECTED) || c.state().is_synchronized())
            {
                entry.connecting = false;
                handler.connected(&mut entry.state, &mut c);
            }
            if events.contains(Events::READABLE) {
                handler.readable(&mut entry.state, &mut c);
            }
            if events.contains(Events::WRITABLE) && c.state().is_synchronized() {
                handler.writable(&mut entry.state, &mut c);
            }
            if events.contains(Events::PEER_CLOSED) {
                handler.peer_closed(&mut entry.state, &mut c);
            }
            if events.contains(Events::CLOSED) || c.state() == State::Closed {
                let why = c.error();
                if let Some(state) = table.remove(h) {
                    handler.closed(state, why);
                }
            }
        });
    }
}

impl<H: Handler> App for EventApp<H> {
    fn start(&mut self, shard: &mut Shard, now: Instant) {
        self.table.entries = (0..shard.capacity()).map(|_| None).collect();
        let EventApp { handler, table } = self;
        handler.start(&mut Self::core(shard, table, now));
    }

    fn poll(&mut self, shard: &mut Shard, now: Instant) {
        self.deliver(shard, now);
        let EventApp { handler, table } = self;
        handler.poll(&mut Self::core(shard, table, now));
    }

    fn shutdown(&mut self, shard: &mut Shard, now: Instant) {
        let EventApp { handler, table } = self;
        handler.shutdown(&mut Self::core(shard, table, now));
    }

    fn finished(&self) -> bool {
        self.handler.finished()
    }
}
