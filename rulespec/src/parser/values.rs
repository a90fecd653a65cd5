//! The values of the language: names, numbers, rates, durations, addresses, ports, protocols,
//! flags, lengths, ICMP types, buckets.

use super::*;

pub(super) fn is_name(w: &str) -> bool {
    let mut cs = w.chars();
    cs.next().is_some_and(|c| c.is_ascii_alphabetic())
        && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(super) fn name(cur: &mut Cur<'_>, what: &str) -> PResult<Spanned<String>> {
    let (w, s) = cur.word(what)?;
    if is_name(&w) {
        Ok(Spanned { node: w, span: s })
    } else {
        Err(Diagnostic::error(s, format!("'{w}' is not a valid name"))
            .expected("a name: a letter, then letters, digits, '-', '_' or '.'"))
    }
}

/// Parse a number with an optional k/M/G multiplier.
pub(crate) fn number(w: &str) -> Option<u64> {
    let (digits, mult) = match w.char_indices().last() {
        Some((i, 'k')) => (&w[..i], 1_000),
        Some((i, 'M')) => (&w[..i], 1_000_000),
        Some((i, 'G')) => (&w[..i], 1_000_000_000),
        _ => (w, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// A size in bytes: digits with an optional binary suffix (`k` = 1024, `M` = 1024², `G`),
/// as web servers write buffer sizes (`8k`).
pub(super) fn size(cur: &mut Cur<'_>, what: &str) -> PResult<Spanned<u64>> {
    let (w, s) = cur.word(what)?;
    let (digits, mult) = match w.char_indices().last() {
        Some((i, 'k' | 'K')) => (&w[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&w[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&w[..i], 1 << 30),
        _ => (w.as_str(), 1),
    };
    let n = (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse::<u64>().ok()?.checked_mul(mult))
        .flatten();
    match n {
        Some(n) => Ok(Spanned { node: n, span: s }),
        None => Err(Diagnostic::error(s, format!("'{w}' is not a size")).expected(what)),
    }
}

pub(super) fn num(cur: &mut Cur<'_>, what: &str) -> PResult<Spanned<u64>> {
    let (w, s) = cur.word(what)?;
    match number(&w) {
        Some(n) => Ok(Spanned { node: n, span: s }),
        None => Err(Diagnostic::error(s, format!("'{w}' is not a number")).expected(what)),
    }
}

pub(super) fn split_num(w: &str) -> (&str, &str) {
    let i = w.find(|c: char| !c.is_ascii_digit()).unwrap_or(w.len());
    (&w[..i], &w[i..])
}

const RATE_EXPECTED: &str = "a rate like 500pps, 20kpps, 1Mpps, 100Mbps, 1Gbps or 20/s";

pub(super) fn rate(cur: &mut Cur<'_>) -> PResult<Spanned<Rate>> {
    let (w, s) = cur.word(RATE_EXPECTED)?;
    let (digits, unit) = split_num(&w);
    let Ok(n) = digits.parse::<u64>() else {
        return Err(Diagnostic::error(s, format!("'{w}' is not a rate")).expected(RATE_EXPECTED));
    };
    let (mult, unit) = match unit {
        "pps" => (1, RateUnit::Pps),
        "kpps" => (1_000, RateUnit::Pps),
        "Mpps" => (1_000_000, RateUnit::Pps),
        "bps" => (1, RateUnit::Bps),
        "kbps" => (1_000, RateUnit::Bps),
        "Mbps" => (1_000_000, RateUnit::Bps),
        "Gbps" => (1_000_000_000, RateUnit::Bps),
        "/s" => (1, RateUnit::PerSec),
        _ => {
            return Err(Diagnostic::error(sub(s, &w, digits.len(), w.len()), format!("unknown rate unit '{unit}'"))
                .expected("pps, kpps, Mpps, bps, kbps, Mbps, Gbps or /s"))
        }
    };
    match n.checked_mul(mult) {
        Some(value) => Ok(Spanned { node: Rate { value, unit }, span: s }),
        None => Err(Diagnostic::error(s, format!("rate '{w}' is too large")).expected(RATE_EXPECTED)),
    }
}

const DURATION_EXPECTED: &str = "a duration like 500ms, 30s, 5m or 2h";

pub(super) fn duration(cur: &mut Cur<'_>) -> PResult<Spanned<Duration>> {
    let (w, s) = cur.word(DURATION_EXPECTED)?;
    let (digits, unit) = split_num(&w);
    let Ok(n) = digits.parse::<u64>() else {
        return Err(Diagnostic::error(s, format!("'{w}' is not a duration")).expected(DURATION_EXPECTED));
    };
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        "d" => n.checked_mul(86_400).map(Duration::from_secs),
        _ => {
            return Err(Diagnostic::error(sub(s, &w, digits.len(), w.len()), format!("unknown time unit '{unit}'"))
                .expected("ms, s, m, h or d"))
        }
    };
    match d {
        Some(node) => Ok(Spanned { node, span: s }),
        None => Err(Diagnostic::error(s, format!("duration '{w}' is too large")).expected(DURATION_EXPECTED)),
    }
}

/// Parse a prefix (`198.18.0.0/24`, `2001:2::/48`, or a bare address). Host bits set produce a
/// warning in `warn` and are cleared.
pub(crate) fn prefix(w: &str, s: Span, warn: &mut Vec<Diagnostic>) -> PResult<Prefix> {
    let (addr_s, len_s) = match w.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (w, None),
    };
    let addr: IpAddr = addr_s.parse().map_err(|_| {
        Diagnostic::error(sub(s, w, 0, addr_s.len()), format!("'{addr_s}' is not an IP address"))
            .expected("a prefix like 198.18.0.0/24 or 2001:2::/48")
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len_s {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if l.bytes().all(|b| b.is_ascii_digit()) && n <= max => n,
            _ => {
                return Err(Diagnostic::error(
                    sub(s, w, addr_s.len() + 1, w.len()),
                    format!("prefix length '{l}' out of range"),
                )
                .expected(format!("a prefix length from 0 to {max}")))
            }
        },
    };
    let masked = match addr {
        IpAddr::V4(a) => IpAddr::V4(mask4(u32::from(a), len).into()),
        IpAddr::V6(a) => IpAddr::V6(mask6(u128::from(a), len).into()),
    };
    let p = Prefix { addr: masked, len };
    if let IpAddr::V6(a) = addr {
        if let Some(v4) = a.to_ipv4_mapped() {
            // The engine sees an IPv4 packet's addresses as IPv4: a mapped prefix never matches.
            let v4len = len.saturating_sub(96);
            warn.push(
                Diagnostic::warning(s, format!("'{w}' is an IPv4-mapped IPv6 address: it never matches"))
                    .expected(format!("the IPv4 form, {v4}/{v4len}: IPv4 packets are matched as IPv4")),
            );
        }
    }
    if masked != addr {
        warn.push(
            Diagnostic::warning(s, format!("'{w}' has host bits set; it is read as {p}"))
                .expected(format!("the network address: {p}")),
        );
    }
    Ok(p)
}

pub(super) fn looks_like_prefix(w: &str) -> bool {
    w.contains(':') || w.starts_with(|c: char| c.is_ascii_digit())
}

pub(super) fn addr_ref(cur: &mut Cur<'_>, warn: &mut Vec<Diagnostic>) -> PResult<Spanned<AddrRef>> {
    let (w, s) = cur.word(ADDR_EXPECTED)?;
    let node = if w == "any" {
        AddrRef::Any
    } else if looks_like_prefix(&w) {
        AddrRef::Prefix(prefix(&w, s, warn)?)
    } else if is_name(&w) {
        AddrRef::Name(w)
    } else {
        return Err(Diagnostic::error(s, format!("'{w}' is not an address")).expected(ADDR_EXPECTED));
    };
    Ok(Spanned { node, span: s })
}

pub(super) fn port_num(w: &str, s: Span) -> PResult<u16> {
    match w.parse::<u64>() {
        Ok(n) if w.bytes().all(|b| b.is_ascii_digit()) => u16::try_from(n)
            .map_err(|_| Diagnostic::error(s, format!("port {w} out of range")).expected("a port from 0 to 65535")),
        _ if !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) => {
            Err(Diagnostic::error(s, format!("port {w} out of range")).expected("a port from 0 to 65535"))
        }
        _ => Err(Diagnostic::error(s, format!("'{w}' is not a port")).expected(PORT_EXPECTED)),
    }
}

pub(super) fn port_item(cur: &mut Cur<'_>) -> PResult<Spanned<PortItem>> {
    let (w, s) = cur.word(PORT_EXPECTED)?;
    let node = if w.starts_with(|c: char| c.is_ascii_digit()) {
        match w.split_once('-') {
            Some((a, b)) => {
                let lo = port_num(a, sub(s, &w, 0, a.len()))?;
                let hi = port_num(b, sub(s, &w, a.len() + 1, w.len()))?;
                if lo > hi {
                    return Err(Diagnostic::error(s, format!("port range {w} is backwards"))
                        .expected(format!("the lower port first: {hi}-{lo}")));
                }
                PortItem::Range(lo, hi)
            }
            None => PortItem::Port(port_num(&w, s)?),
        }
    } else if is_name(&w) {
        PortItem::Name(w)
    } else {
        return Err(Diagnostic::error(s, format!("'{w}' is not a port")).expected(PORT_EXPECTED));
    };
    Ok(Spanned { node, span: s })
}

pub(super) fn list<T>(cur: &mut Cur<'_>, mut item: impl FnMut(&mut Cur<'_>) -> PResult<T>) -> PResult<Vec<T>> {
    let mut v = vec![item(cur)?];
    while cur.peek_comma() {
        cur.i += 1;
        v.push(item(cur)?);
    }
    Ok(v)
}

pub(super) fn port_list(cur: &mut Cur<'_>) -> PResult<Spanned<Vec<Spanned<PortItem>>>> {
    let items = list(cur, port_item)?;
    let span = items.first().map(|i| i.span).unwrap_or(cur.eol);
    let last = items.last().map(|i| i.span.end).unwrap_or(span.end);
    Ok(Spanned { node: items, span: Span { end: last, ..span } })
}

pub(super) fn proto(cur: &mut Cur<'_>) -> PResult<Spanned<Proto>> {
    const WHAT: &str = "tcp, udp, icmp, icmpv6 or a protocol number 0-255";
    let (w, s) = cur.word(WHAT)?;
    let node = match w.as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "icmp" => Proto::Icmp,
        "icmpv6" => Proto::Icmpv6,
        _ => match w.parse::<u8>() {
            Ok(6) => Proto::Tcp,
            Ok(17) => Proto::Udp,
            Ok(1) => Proto::Icmp,
            Ok(58) => Proto::Icmpv6,
            Ok(n) => Proto::Other(n),
            Err(_) => return Err(Diagnostic::error(s, format!("unknown protocol '{w}'")).expected(WHAT)),
        },
    };
    Ok(Spanned { node, span: s })
}

pub(super) fn flags(cur: &mut Cur<'_>) -> PResult<Spanned<Flags>> {
    const WHAT: &str = "flags joined by '+', each optionally negated with '!': fin, syn, rst, psh, ack, urg, ece, cwr";
    let (w, s) = cur.word(WHAT)?;
    let mut f = Flags::default();
    let mut off = 0;
    for part in w.split('+') {
        let (neg, nm) = match part.strip_prefix('!') {
            Some(n) => (true, n),
            None => (false, part),
        };
        let Some(&(_, bit)) = flag::NAMES.iter().find(|(n, _)| *n == nm.to_ascii_lowercase()) else {
            let d =
                Diagnostic::error(sub(s, &w, off, off + part.len()), format!("unknown TCP flag '{nm}'")).expected(WHAT);
            return Err(d);
        };
        if (f.set | f.clear) & bit != 0 {
            return Err(
                Diagnostic::error(sub(s, &w, off, off + part.len()), format!("flag '{nm}' given twice")).expected(WHAT)
            );
        }
        if neg {
            f.clear |= bit;
        } else {
            f.set |= bit;
        }
        off += part.len() + 1;
    }
    Ok(Spanned { node: f, span: s })
}

pub(super) fn len_range(cur: &mut Cur<'_>) -> PResult<Spanned<(u16, u16)>> {
    const WHAT: &str = "a length or range in bytes, e.g. 0-60 or 1400-65535";
    let (w, s) = cur.word(WHAT)?;
    let one = |t: &str, sp: Span| -> PResult<u16> {
        match t.parse::<u64>() {
            Ok(n) if t.bytes().all(|b| b.is_ascii_digit()) => u16::try_from(n).map_err(|_| {
                Diagnostic::error(sp, format!("length {t} out of range")).expected("a length from 0 to 65535")
            }),
            _ => Err(Diagnostic::error(sp, format!("'{t}' is not a length")).expected(WHAT)),
        }
    };
    let node = match w.split_once('-') {
        Some((a, b)) => {
            let lo = one(a, sub(s, &w, 0, a.len()))?;
            let hi = one(b, sub(s, &w, a.len() + 1, w.len()))?;
            if lo > hi {
                return Err(Diagnostic::error(s, format!("length range {w} is backwards"))
                    .expected(format!("the smaller length first: {hi}-{lo}")));
            }
            (lo, hi)
        }
        None => {
            let n = one(&w, s)?;
            (n, n)
        }
    };
    Ok(Spanned { node, span: s })
}

pub(super) const ICMP_NAMES: [(&str, u8); 7] = [
    ("echo-reply", 0),
    ("unreachable", 3),
    ("redirect", 5),
    ("echo-request", 8),
    ("time-exceeded", 11),
    ("parameter-problem", 12),
    ("timestamp", 13),
];
pub(super) const ICMPV6_NAMES: [(&str, u8); 10] = [
    ("unreachable", 1),
    ("packet-too-big", 2),
    ("time-exceeded", 3),
    ("parameter-problem", 4),
    ("echo-request", 128),
    ("echo-reply", 129),
    ("router-solicit", 133),
    ("router-advert", 134),
    ("neighbor-solicit", 135),
    ("neighbor-advert", 136),
];

pub(super) fn icmp_type(cur: &mut Cur<'_>, names: &[(&str, u8)]) -> PResult<Spanned<u8>> {
    let what =
        format!("a type number 0-255 or one of {}", names.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "));
    let (w, s) = cur.word(&what)?;
    if let Some(&(_, t)) = names.iter().find(|(n, _)| *n == w) {
        return Ok(Spanned { node: t, span: s });
    }
    match w.parse::<u8>() {
        Ok(t) => Ok(Spanned { node: t, span: s }),
        Err(_) => Err(Diagnostic::error(s, format!("unknown ICMP type '{w}'")).expected(what)),
    }
}

/// Rates of a bucket and its burst.
type Bucket = (Vec<Spanned<Rate>>, Option<Spanned<u64>>);

pub(super) fn rates_and_burst(cur: &mut Cur<'_>) -> PResult<Bucket> {
    let mut rates = vec![rate(cur)?];
    if cur.peek_word().is_some_and(|w| w.starts_with(|c: char| c.is_ascii_digit())) {
        rates.push(rate(cur)?);
    }
    let burst = burst(cur)?;
    Ok((rates, burst))
}

pub(super) fn burst(cur: &mut Cur<'_>) -> PResult<Option<Spanned<u64>>> {
    if cur.peek_word() == Some("burst") {
        cur.i += 1;
        Ok(Some(num(cur, "a burst size (a number, e.g. 400 or 20k)")?))
    } else {
        Ok(None)
    }
}
