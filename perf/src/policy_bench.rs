//! `scrubber-perf policy`: compile time, memory and lookup speed of the compiled policy.
//!
//! For each size, a synthetic country-like prefix list (deterministic; ~85% IPv4 /8–/24 with
//! BGP-like length mix, ~15% IPv6 /19–/48 in 2000::/3) is placed in the `countries` set of a
//! realistic 10-rule policy, which is then compiled. Reported: `compile()` time, the tables'
//! heap bytes, address-class (LPM) lookups per second per family over a batch of 1 M random
//! addresses, and `judge()` calls per second over a pool of random frames. Each rate is the
//! best of three passes.

use anyhow::{anyhow, bail, Context, Result};
use rulespec::ast::Prefix;
use rulespec::ast::{mask4, mask6};
use rulespec::{check, compile, FragKind, MemSource, Packet};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

/// The policy the list is used in: 10 rules, one service.
const POLICY: &str = "\
set countries file \"countries.txt\"
set web-servers = 198.18.10.0/24, 2001:2::/64
set office = 198.18.200.0/24, 2001:2:0:c8::/64
set bogons = 0.0.0.0/8, 10.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, 224.0.0.0/3, fc00::/7, fe80::/10
ports web = 80, 443
service https
  dst web-servers
  ports web
  syn auto 20kpps
end
deny from bogons
deny proto tcp flags syn+fin
deny proto tcp flags syn+rst
deny frag later to web-servers
allow from office to web-servers
deny from countries
limit service https new-conns 50/s burst 100 max-conns 256
limit to web-servers proto udp per-source 100pps aggregate 20kpps
allow proto icmp icmp-type unreachable
deny proto udp sport 19, 1900
default deny
";

/// One measured size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    pub prefixes: usize,
    pub v4: usize,
    pub v6: usize,
    pub compile_ms: f64,
    pub memory_mib: f64,
    pub lpm4_mlookups: f64,
    pub lpm6_mlookups: f64,
    pub judge_mcalls: f64,
    pub classes: usize,
    pub lpm4_nodes: usize,
    pub lpm6_nodes: usize,
    pub lpm6_depth: usize,
}

/// xorshift64*: deterministic, good enough for synthetic lists.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn v6_global(&mut self) -> u128 {
        (1u128 << 125) | ((u128::from(self.next()) << 64 | u128::from(self.next())) >> 3)
    }
}

/// A country-like list of `n` distinct prefixes, sorted as the checker leaves it.
pub fn synthetic_list(n: usize, seed: u64) -> Vec<Prefix> {
    let mut r = Rng(seed | 1);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        if r.below(100) < 85 {
            let len = match r.below(100) {
                0..=49 => 24,
                50..=59 => 23,
                60..=69 => 22,
                70..=76 => 21,
                77..=82 => 20,
                83..=87 => 19,
                88..=91 => 18,
                92..=94 => 17,
                95..=96 => 16,
                _ => 8 + r.below(8) as u8,
            };
            let a = mask4(r.next() as u32, len);
            let p = Prefix { addr: IpAddr::V4(Ipv4Addr::from(a)), len };
            if seen.insert(p) {
                v.push(p);
            }
        } else {
            let len = match r.below(100) {
                0..=39 => 48,
                40..=59 => 32,
                60..=69 => 29,
                _ => 19 + r.below(29) as u8,
            };
            let a = mask6(r.v6_global(), len);
            let p = Prefix { addr: IpAddr::V6(Ipv6Addr::from(a)), len };
            if seen.insert(p) {
                v.push(p);
            }
        }
    }
    v.sort_unstable();
    v
}

/// An owned frame description for `judge()`.
struct Frame {
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    sport: u16,
    dport: u16,
    flags: u8,
    len: u16,
    frag: FragKind,
    icmp: Option<u8>,
}

fn frames(n: usize, r: &mut Rng) -> Vec<Frame> {
    (0..n)
        .map(|_| {
            let v6 = r.below(100) < 15;
            let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
            if v6 {
                src = r.v6_global().to_be_bytes();
                dst = (0x2001_0002u128 << 96 | u128::from(r.below(256))).to_be_bytes();
            } else {
                src[..4].copy_from_slice(&(r.next() as u32).to_be_bytes());
                dst[..4].copy_from_slice(&[198, 18, 10, r.below(256) as u8]);
            }
            let kind = r.below(100);
            let (proto, sport, dport, flags, icmp) = match kind {
                0..=69 => {
                    let dport = [443, 443, 80, 22][r.below(4) as usize];
                    let flags = [0x02, 0x10, 0x18, 0x11][r.below(4) as usize];
                    (6, 1024 + r.below(60000) as u16, dport, flags, None)
                }
                70..=94 => (17, [53, 123, 1900, 40000][r.below(4) as usize], 53, 0, None),
                _ => (if v6 { 58 } else { 1 }, 0, 0, 0, Some([0u8, 3, 8, 11][r.below(4) as usize])),
            };
            let frag = if r.below(100) == 0 { FragKind::Later } else { FragKind::None };
            Frame { v6, src, dst, proto, sport, dport, flags, len: 40 + r.below(1460) as u16, frag, icmp }
        })
        .collect()
}

/// Best rate of three passes of `f`, in millions per second; `f` returns the operation count.
fn best_rate(mut f: impl FnMut() -> usize) -> f64 {
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let n = f();
        let s = t.elapsed().as_secs_f64().max(1e-9);
        best = best.max(n as f64 / s / 1e6);
    }
    best
}

/// Measure each size.
pub fn run(sizes: &[usize], progress: &mut dyn FnMut(&str)) -> Result<Vec<Figure>> {
    let src = MemSource::new().with("policy.rules", POLICY).with("countries.txt", "198.51.100.0/24\n");
    let checked = check("policy.rules", &src);
    let base =
        checked.policy.clone().ok_or_else(|| anyhow!("benchmark policy does not check:\n{}", checked.render()))?;
    let idx = base.sets.iter().position(|s| s.name == "countries").context("no countries set")?;
    let mut out = Vec::new();
    for &n in sizes {
        progress(&format!("generating {n} prefixes"));
        let mut policy = base.clone();
        policy.sets[idx].prefixes = synthetic_list(n, 0x5EED_0000 + n as u64);
        let (v4, v6) = (policy.sets[idx].v4(), policy.sets[idx].v6());
        progress(&format!("compiling {n} prefixes ({v4} IPv4, {v6} IPv6)"));
        let t = Instant::now();
        let c = compile(&policy).context("compiling the benchmark policy")?;
        let compile_ms = t.elapsed().as_secs_f64() * 1e3;
        let st = c.stats();

        progress("LPM lookups");
        let mut r = Rng(0xA11CE + n as u64);
        const BATCH: usize = 1 << 20;
        let a4: Vec<[u8; 16]> = (0..BATCH)
            .map(|_| {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&(r.next() as u32).to_be_bytes());
                b
            })
            .collect();
        let a6: Vec<[u8; 16]> = (0..BATCH).map(|_| r.v6_global().to_be_bytes()).collect();
        let lookups = |v6: bool, addrs: &[[u8; 16]]| {
            best_rate(|| {
                let mut acc = 0u64;
                for a in addrs {
                    acc = acc.wrapping_add(u64::from(c.address_class(v6, black_box(a))));
                }
                black_box(acc);
                addrs.len()
            })
        };
        let lpm4 = lookups(false, &a4);
        let lpm6 = lookups(true, &a6);
        drop((a4, a6));

        progress("judge()");
        let pool = frames(1 << 16, &mut r);
        let judge = best_rate(|| {
            let mut counts = [0u64; 4];
            for _ in 0..(BATCH / pool.len()) {
                for f in &pool {
                    let p = Packet {
                        v6: f.v6,
                        src: &f.src,
                        dst: &f.dst,
                        proto: f.proto,
                        sport: f.sport,
                        dport: f.dport,
                        tcp_flags: f.flags,
                        ip_len: f.len,
                        frag: f.frag,
                        icmp_type: f.icmp,
                    };
                    let h = c.judge(black_box(&p));
                    counts[h.action as usize] += 1;
                    counts[3] += u64::from(h.observe);
                }
            }
            black_box(counts);
            BATCH / pool.len() * pool.len()
        });
        out.push(Figure {
            prefixes: n,
            v4,
            v6,
            compile_ms,
            memory_mib: c.memory_bytes() as f64 / (1u64 << 20) as f64,
            lpm4_mlookups: lpm4,
            lpm6_mlookups: lpm6,
            judge_mcalls: judge,
            classes: st.classes,
            lpm4_nodes: st.lpm4_nodes,
            lpm6_nodes: st.lpm6_nodes,
            lpm6_depth: st.lpm6_depth,
        });
        drop(c);
    }
    Ok(out)
}

/// Options of `scrubber-perf policy`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one JSON object per size instead of a table.
    #[arg(long)]
    json: bool,
    /// Prefix-list sizes to measure, comma-separated.
    #[arg(long, default_value = "1000,100000,1000000", value_delimiter = ',')]
    sizes: Vec<usize>,
}

/// Run the benchmark and print the table or JSON.
pub fn main(args: &Args) -> Result<()> {
    if args.sizes.is_empty() || args.sizes.iter().any(|&s| s == 0 || s > 20_000_000) {
        bail!("--sizes takes list sizes between 1 and 20000000, e.g. --sizes 1000,100000,1000000");
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run with `cargo run --release -p scrubber-perf -- policy`");
    }
    let figures = run(&args.sizes, &mut |m| eprintln!("… {m}"))?;
    if args.json {
        for f in &figures {
            println!("{}", serde_json::to_string(f)?);
        }
        return Ok(());
    }
    println!(
        "{:>9} {:>8} {:>8} {:>11} {:>8} {:>9} {:>9} {:>10} {:>8} {:>8} {:>9}",
        "prefixes",
        "IPv4",
        "IPv6",
        "compile ms",
        "MiB",
        "LPM4 M/s",
        "LPM6 M/s",
        "judge M/s",
        "classes",
        "v4 nodes",
        "v6 nodes/depth"
    );
    for f in &figures {
        println!(
            "{:>9} {:>8} {:>8} {:>11.1} {:>8.1} {:>9.1} {:>9.1} {:>10.1} {:>8} {:>8} {:>8}/{:<3}",
            f.prefixes,
            f.v4,
            f.v6,
            f.compile_ms,
            f.memory_mib,
            f.lpm4_mlookups,
            f.lpm6_mlookups,
            f.judge_mcalls,
            f.classes,
            f.lpm4_nodes,
            f.lpm6_nodes,
            f.lpm6_depth
        );
    }
    println!("\nv6 nodes/depth: IPv6 trie nodes below the /16 table / most nodes one lookup visits");
    Ok(())
}
