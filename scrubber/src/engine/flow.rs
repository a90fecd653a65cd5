//! The canonical identity of a TCP connection as the scrubber sees it.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A connection's 4-tuple, oriented the same way for both directions: `client` is the peer on
/// the ext (internet) side, `server` the protected address on the int side. A frame arriving on
/// ext has `src = client`; a frame arriving on int has `dst = client`.
///
/// Addresses are held in 16 bytes; IPv4 addresses occupy the first four bytes and the other
/// twelve are zero (`v6 == false`), so that no IPv4 key can equal an IPv6 key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct FlowKey {
    pub client_ip: [u8; 16],
    pub server_ip: [u8; 16],
    pub client_port: u16,
    pub server_port: u16,
    pub v6: bool,
}

impl FlowKey {
    /// Key for an IPv4 connection.
    pub fn v4(client: [u8; 4], client_port: u16, server: [u8; 4], server_port: u16) -> Self {
        let mut client_ip = [0u8; 16];
        let mut server_ip = [0u8; 16];
        client_ip[..4].copy_from_slice(&client);
        server_ip[..4].copy_from_slice(&server);
        FlowKey { client_ip, server_ip, client_port, server_port, v6: false }
    }

    /// Key for an IPv6 connection.
    pub fn v6(client: [u8; 16], client_port: u16, server: [u8; 16], server_port: u16) -> Self {
        FlowKey { client_ip: client, server_ip: server, client_port, server_port, v6: true }
    }

    /// Key from `core::net` addresses; `None` when the families differ.
    pub fn from_addrs(client: IpAddr, client_port: u16, server: IpAddr, server_port: u16) -> Option<Self> {
        match (client, server) {
            (IpAddr::V4(c), IpAddr::V4(s)) => Some(Self::v4(c.octets(), client_port, s.octets(), server_port)),
            (IpAddr::V6(c), IpAddr::V6(s)) => Some(Self::v6(c.octets(), client_port, s.octets(), server_port)),
            _ => None,
        }
    }

    /// The client address.
    pub fn client_addr(&self) -> IpAddr {
        addr(self.v6, &self.client_ip)
    }

    /// The server (protected) address.
    pub fn server_addr(&self) -> IpAddr {
        addr(self.v6, &self.server_ip)
    }

    /// The bytes that identify the connection, in a fixed order: client address, server
    /// address (4 or 16 bytes each), client port, server port (big endian). Returns the buffer
    /// and the number of bytes used (12 for IPv4, 36 for IPv6).
    #[inline]
    pub fn to_bytes(&self) -> ([u8; 36], usize) {
        let mut b = [0u8; 36];
        let n = if self.v6 { 16 } else { 4 };
        b[..n].copy_from_slice(&self.client_ip[..n]);
        b[n..2 * n].copy_from_slice(&self.server_ip[..n]);
        b[2 * n..2 * n + 2].copy_from_slice(&self.client_port.to_be_bytes());
        b[2 * n + 2..2 * n + 4].copy_from_slice(&self.server_port.to_be_bytes());
        (b, 2 * n + 4)
    }
}

fn addr(v6: bool, b: &[u8; 16]) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(*b))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v6_keys_differ_and_round_trip() {
        let k4 = FlowKey::v4([198, 18, 0, 1], 40000, [198, 18, 0, 10], 80);
        let mut c6 = [0u8; 16];
        c6[..4].copy_from_slice(&[198, 18, 0, 1]);
        let mut s6 = [0u8; 16];
        s6[..4].copy_from_slice(&[198, 18, 0, 10]);
        let k6 = FlowKey::v6(c6, 40000, s6, 80);
        assert_ne!(k4, k6);
        assert_eq!(k4.client_addr(), "198.18.0.1".parse::<IpAddr>().unwrap());
        let (b, n) = k4.to_bytes();
        assert_eq!(&b[..n], &[198, 18, 0, 1, 198, 18, 0, 10, 0x9c, 0x40, 0, 80]);
        assert_eq!(k6.to_bytes().1, 36);
    }
}
