//! Interface lookup and removal of XDP programs that an earlier run (or
//! another tool) attached through netlink and left behind.
//!
//! A bpf_link attachment (what aya makes on kernels >= 5.9) dies with the
//! process that holds it, so a killed bypass leaves nothing. A netlink
//! attachment (older kernels, `ip link set xdp`, xdp-loader in legacy mode)
//! outlives its process and makes our attach fail with EBUSY; this module
//! clears it. The kernel refuses (EBUSY) to detach a live bpf_link this way,
//! which is what we want: we never take over another live process's program.

// libbpf FFI below, each call with a SAFETY note.
#![allow(unsafe_code)]

use std::{fs, io};

/// The interface's index, read from sysfs; None when it does not exist.
pub(crate) fn ifindex(iface: &str) -> Option<u32> {
    if iface.is_empty() || iface.contains('/') || iface.starts_with('.') {
        return None;
    }
    fs::read_to_string(format!("/sys/class/net/{iface}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Ids of the XDP programs attached to `ifindex`, in any mode.
pub(crate) fn attached_program_ids(ifindex: u32) -> Vec<u32> {
    let modes = [
        libbpf_sys::XDP_FLAGS_SKB_MODE,
        libbpf_sys::XDP_FLAGS_DRV_MODE,
        libbpf_sys::XDP_FLAGS_HW_MODE,
    ];
    let mut ids = Vec::new();
    for flags in modes {
        let mut id: u32 = 0;
        // SAFETY: `id` is a valid, writable u32 for the duration of the call.
        let rc = unsafe { libbpf_sys::bpf_xdp_query_id(ifindex as i32, flags as i32, &mut id) };
        if rc == 0 && id != 0 && !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Detaches netlink-attached XDP programs in every mode from `ifindex`.
pub(crate) fn detach_netlink(ifindex: u32) -> io::Result<()> {
    let modes = [
        libbpf_sys::XDP_FLAGS_SKB_MODE,
        libbpf_sys::XDP_FLAGS_DRV_MODE,
        libbpf_sys::XDP_FLAGS_HW_MODE,
    ];
    for flags in modes {
        // SAFETY: plain FFI call with integer arguments; a null opts pointer
        // is documented by libbpf as "no options".
        let rc = unsafe { libbpf_sys::bpf_xdp_detach(ifindex as i32, flags, std::ptr::null()) };
        // libbpf returns a negative errno. Hardware mode is refused by most
        // drivers (EINVAL/EOPNOTSUPP) when nothing is offloaded: not an error.
        if rc < 0 {
            let err = io::Error::from_raw_os_error(-rc);
            match -rc {
                libc::EINVAL | libc::EOPNOTSUPP | libc::ENOENT => {}
                _ => return Err(err),
            }
        }
    }
    Ok(())
}
