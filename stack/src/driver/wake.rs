//! Waking a core that sleeps in [`Device::wait`](super::Device::wait) from
//! another thread: a user call or a command for the core must not wait for
//! the next frame or timer (up to 50 ms in adaptive mode).
//!
//! [`WakeFd`] is an eventfd the AF_XDP driver polls beside its socket;
//! devices without a file descriptor wake through their own means. Either
//! way, other threads hold a [`Waker`].

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::Arc,
};

/// Something that wakes one core.
pub trait Wake: Send + Sync {
    fn wake(&self);
}

/// A cloneable handle that wakes one core; cheap to call when it is awake.
#[derive(Clone)]
pub struct Waker(Arc<dyn Wake>);

impl Waker {
    pub fn new(wake: Arc<dyn Wake>) -> Self {
        Waker(wake)
    }

    /// A waker that does nothing, for devices that never sleep.
    pub fn noop() -> Self {
        struct Noop;
        impl Wake for Noop {
            fn wake(&self) {}
        }
        Waker(Arc::new(Noop))
    }

    pub fn wake(&self) {
        self.0.wake();
    }
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waker")
    }
}

/// A non-blocking eventfd: `wake` makes it readable, `clear` drains it.
#[derive(Debug)]
pub struct WakeFd {
    fd: OwnedFd,
}

impl WakeFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a non-negative return is a new
        // descriptor that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own (checked above).
        Ok(WakeFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Empties the counter, so the next poll sleeps again.
    pub fn clear(&self) {
        let mut value = 0u64;
        // SAFETY: reads 8 bytes into a live, aligned u64; the descriptor is
        // ours and non-blocking (EAGAIN when already clear is fine).
        unsafe {
            libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8);
        }
    }
}

impl Wake for WakeFd {
    fn wake(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live u64 to our descriptor; a full
        // counter (EAGAIN) already means "wake".
        unsafe {
            libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }
}

impl AsRawFd for WakeFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn wake_makes_readable_and_clear_resets() {
        let w = Arc::new(WakeFd::new().unwrap());
        assert!(!readable(w.as_raw_fd()));
        let waker = Waker::new(w.clone());
        waker.wake();
        waker.wake();
        assert!(readable(w.as_raw_fd()));
        w.clear();
        assert!(!readable(w.as_raw_fd()));
    }
}
