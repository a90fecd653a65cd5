//! Interface look-ups: name → ifindex, receive-queue count.
//!
//! Both work in the calling *thread's* network namespace (they go through sockets and ioctls),
//! unlike `/sys/class/net`, which shows the namespace sysfs was mounted in. The sysfs count is
//! only a fallback for drivers without `ETHTOOL_GCHANNELS`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::{last_err, XskError};

/// Longest interface name (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Check that `ifname` can be a Linux interface name and return it as a C string.
pub(crate) fn check_ifname(ifname: &str) -> Result<CString, XskError> {
    let bad = || XskError::BadInterfaceName { ifname: ifname.to_string() };
    if ifname.is_empty()
        || ifname.len() > IFNAME_MAX
        || ifname == "."
        || ifname == ".."
        || ifname.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
    {
        return Err(bad());
    }
    CString::new(ifname).map_err(|_| bad())
}

/// The interface index of `ifname` in the calling thread's network namespace.
pub fn ifindex(ifname: &str) -> Result<u32, XskError> {
    let c = check_ifname(ifname)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(XskError::NoSuchInterface { ifname: ifname.to_string() });
    }
    Ok(idx)
}

/// `struct ethtool_channels` (linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// `struct ifreq` with the `ifr_data` member of its union (40 bytes on 64-bit Linux).
#[repr(C)]
struct IfReqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// A throw-away socket for interface ioctls.
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last_err());
    }
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Receive-queue count from ETHTOOL_GCHANNELS (rx-only plus combined channels).
fn channels(ifname: &str) -> io::Result<u32> {
    let sock = ioctl_socket()?;
    let mut ch = EthtoolChannels { cmd: ETHTOOL_GCHANNELS, ..Default::default() };
    let mut req =
        IfReqData { name: [0; libc::IFNAMSIZ], data: (&mut ch as *mut EthtoolChannels).cast(), _pad: [0; 16] };
    let n = ifname.len().min(IFNAME_MAX);
    req.name[..n].copy_from_slice(&ifname.as_bytes()[..n]);
    // SAFETY: SIOCETHTOOL reads `req` (a correctly laid out ifreq with a NUL-terminated name) and
    // writes through `req.data` into `ch`, an ethtool_channels that lives across the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req as *mut IfReqData) };
    if rc < 0 {
        return Err(last_err());
    }
    Ok(ch.rx_count + ch.combined_count)
}

/// Count `rx-*` entries in `/sys/class/net/IF/queues` (host namespace view).
fn sysfs_rx_queues(ifname: &str) -> Option<u32> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{ifname}/queues")).ok()?;
    let n = dir.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count();
    u32::try_from(n).ok().filter(|&n| n > 0)
}

/// Number of receive queues of `ifname` (the XSKMAP needs one entry per queue).
///
/// Asks the driver (ETHTOOL_GCHANNELS); when it does not answer, counts the `rx-*` queues in
/// sysfs; when neither works, assumes one queue.
pub fn rx_queue_count(ifname: &str) -> Result<u32, XskError> {
    ifindex(ifname)?;
    match channels(ifname) {
        Ok(n) if n > 0 => Ok(n),
        _ => Ok(sysfs_rx_queues(ifname).unwrap_or(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        for bad in ["", "a/b", "a:b", "a b", "sixteen-chars-xx", ".", ".."] {
            assert!(matches!(check_ifname(bad), Err(XskError::BadInterfaceName { .. })), "{bad:?}");
        }
        for good in ["lo", "eth0", "fifteen-chars-x", "veth-a.100"] {
            assert!(check_ifname(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn missing_interface_is_reported_by_name() {
        let err = ifindex("xskt-nonesuch").unwrap_err();
        assert!(matches!(err, XskError::NoSuchInterface { .. }));
        assert!(err.to_string().contains("xskt-nonesuch"), "{err}");
        assert!(rx_queue_count("xskt-nonesuch").is_err());
    }

    #[test]
    fn loopback_has_a_queue() {
        assert_eq!(ifindex("lo").unwrap(), 1);
        assert!(rx_queue_count("lo").unwrap() >= 1);
    }
}
