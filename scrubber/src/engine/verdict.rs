//! What the engine decides for a frame, and every reason it can drop one.

/// Which way a frame is travelling through the box.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Direction {
    /// Arrived on ext (the internet side), heading for the protected servers on int.
    Inbound,
    /// Arrived on int (from a protected server), heading for the internet on ext.
    Outbound,
}

impl Direction {
    /// `"inbound"` or `"outbound"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The engine's decision for one frame.
///
/// The frame buffer handed to [`crate::engine::Engine::process`] may have been rewritten in
/// place (and its length changed) for `Forward`, `Reply`, `ForwardWithReply` and `ReplyTwice`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// Send the frame out of the other interface (ext → int, or int → ext).
    Forward,
    /// Send the frame back out of the interface it arrived on (a cookie SYN-ACK, an ACK to the
    /// backend).
    Reply,
    /// Send the frame out of the other interface, and the frame written into the `extra`
    /// buffer back out of the arrival interface. Used when the backend's SYN-ACK for a proxied
    /// session is consumed: the client gets a window update, the backend gets its ACK.
    ForwardWithReply,
    /// Send the frame, then the frame written into the `extra` buffer, back out of the
    /// interface they arrived on. Used when a backend still holds an old connection on the
    /// 4-tuple of a proxied one: a RST clears it, and the SYN follows at once.
    ReplyTwice,
    /// Do not send the frame. The reason is counted.
    Drop(DropReason),
    /// The frame's segment was dropped (the reason is counted) and its connection reset both
    /// ways: the frame now holds a RST for the other side (sent out of the other interface,
    /// like `Forward`) and the `extra` buffer a RST for the sender (sent back out of the
    /// arrival interface). Used when a request breaks an `http` service's checks.
    Reset(DropReason),
}

macro_rules! drop_reasons {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal, )*) => {
        /// Why a frame was dropped. Each reason has its own counter
        /// ([`crate::engine::counters::Counters::dropped`]), named by [`DropReason::as_str`].
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons (the length of the per-reason counter array).
            pub const COUNT: usize = [$(DropReason::$variant,)*].len();

            /// The counter name, `snake_case`, stable across releases.
            pub fn as_str(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// The one-line description from the documentation.
            pub fn describe(self) -> &'static str {
                match self { $(DropReason::$variant => concat!($($doc),*).trim_ascii(),)* }
            }

            /// Index into the per-reason counter array.
            #[inline]
            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}

drop_reasons! {
    /// Frame shorter than an Ethernet header (14 bytes).
    EthTruncated = "eth_truncated",
    /// An 802.1Q / 802.1ad tag announced but cut short, or more than two tags stacked.
    VlanMalformed = "vlan_malformed",
    /// IPv4 header cut short, version not 4, IHL below 5, or total length inconsistent with
    /// the frame.
    Ipv4Malformed = "ipv4_malformed",
    /// IPv4 header checksum wrong.
    Ipv4BadChecksum = "ipv4_bad_checksum",
    /// IPv6 header cut short, version not 6, payload length beyond the frame, or an extension
    /// header chain that runs past the packet.
    Ipv6Malformed = "ipv6_malformed",
    /// TCP header shorter than 20 bytes or its data offset past the segment.
    TcpMalformed = "tcp_malformed",
    /// TCP options that run past the header (an option length of 0 or 1, or beyond the end).
    TcpBadOptions = "tcp_bad_options",
    /// UDP, ICMP or ICMPv6 header cut short.
    L4Truncated = "l4_truncated",
    /// A fragment of a TCP segment towards a protected service: its ports and flags cannot be
    /// judged, and real TCP stacks do not fragment (they use MSS and PMTU discovery).
    TcpFragment = "tcp_fragment",
    /// TCP with no flag set (a "null" scan).
    TcpNull = "tcp_null",
    /// TCP with FIN, PSH and URG set (an "xmas" scan).
    TcpXmas = "tcp_xmas",
    /// TCP with SYN and FIN set.
    TcpSynFin = "tcp_syn_fin",
    /// TCP with SYN and RST set.
    TcpSynRst = "tcp_syn_rst",
    /// Any other flag combination no TCP stack sends (e.g. FIN without ACK, SYN with PSH).
    TcpBadFlags = "tcp_bad_flags",
    /// ACK or ACK-PSH (with or without data) that belongs to no tracked session and does not
    /// carry a valid SYN cookie. This is the ACK / ACK-PSH flood defence.
    AckNoSession = "ack_no_session",
    /// During the pickup window: a session-less client ACK not (yet) confirmed by the server
    /// (first sighting, probe in flight or over budget; see `engine::tcp::pickup`).
    PickupUnverified = "pickup_unverified",
    /// During the pickup window: a client ACK of a flow the server refused (it answered the
    /// probe with a RST), or that RST itself (consumed: it would go to a spoofed source).
    PickupRejected = "pickup_rejected",
    /// RST that belongs to no tracked session.
    RstNoSession = "rst_no_session",
    /// FIN that belongs to no tracked session.
    FinNoSession = "fin_no_session",
    /// SYN-ACK that answers no SYN the scrubber saw (from ext: no connection opened by a
    /// protected server; from int: no proxied or tracked handshake).
    SynAckNoSession = "synack_no_session",
    /// SYN-ACK from a backend whose acknowledgement number does not match the SYN the scrubber
    /// sent (or saw) for that session.
    SynAckBadAck = "synack_bad_ack",
    /// RST whose sequence number lies outside the receiver's window (RFC 5961 blind reset).
    RstOutOfWindow = "rst_out_of_window",
    /// A SYN repeating the ISN of a live session (a retransmission the session already
    /// answered); new ISNs on the same 4-tuple start a new connection instead.
    SynInSession = "syn_in_session",
    /// A client segment arriving while the backend side of a proxied session is still being
    /// opened (the client was told a zero window, so only probes and retransmissions arrive).
    ProxyHandshakePending = "proxy_handshake_pending",
    /// In track mode, a client ACK before the server's SYN-ACK was seen.
    AckBeforeSynAck = "ack_before_synack",
    /// The session table had no slot a new session may take: all candidates were live
    /// established sessions, which an embryonic session may not evict.
    SessionTableFull = "session_table_full",
    /// A frame larger than the egress link's MTU that was not answered with ICMP (an IPv4
    /// packet without DF, or over the ICMP answer budget); the box does not fragment.
    TooBig = "too_big",
    /// The frame buffer had no room for the answer the engine had to write into it (the data
    /// plane gives every frame a full UMEM chunk, so this indicates a misconfigured caller).
    NoBufferRoom = "no_buffer_room",
    /// A `deny` rule of the policy matched (see the per-rule counters for which).
    RuleDeny = "rule_deny",
    /// No rule matched and the policy's default is `deny`.
    DefaultDeny = "default_deny",
    /// Over a `limit` rule's packet or bit rate (per source or aggregate).
    RateLimited = "rate_limited",
    /// A SYN over a `limit` rule's `new-conns` rate for its source.
    NewConnLimit = "new_conn_limit",
    /// A new connection over a `limit` rule's `max-conns` for its source.
    ConnLimit = "conn_limit",
    /// A request head of an `http` service longer than its `max-header-bytes` (the
    /// connection is reset both ways).
    HttpHeaderTooLarge = "http_header_too_large",
    /// A line of a request head longer than the service's `max-header-line` (reset both ways).
    HttpHeaderLineTooLong = "http_header_line_too_long",
    /// A request with more header fields than the service's `max-headers` (reset both ways).
    HttpTooManyHeaders = "http_too_many_headers",
    /// A request line that is not `METHOD SP TARGET SP HTTP/D.D` (reset both ways).
    HttpBadRequestLine = "http_bad_request_line",
    /// A request method not in the service's `methods` (reset both ways).
    HttpMethod = "http_method",
    /// A malformed header line (no colon, a space before it, folding, control characters) or
    /// ambiguous framing (two Content-Lengths, Content-Length with Transfer-Encoding, a
    /// Content-Length that is not a number): reset both ways.
    HttpBadHeader = "http_bad_header",
    /// A request over a `per-source requests` limit (reset both ways).
    HttpRequestLimit = "http_request_limit",
    /// A client segment of an `http` service that starts beyond the next byte the checks
    /// expect while a request head is being read: not checked, dropped (the client sends it
    /// again in order).
    HttpOutOfOrder = "http_out_of_order",
    /// A frame from a banned source (see `scrubber ban list`).
    Banned = "banned",
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_documented() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!r.describe().is_empty(), "{r} has no description");
        }
    }
}
