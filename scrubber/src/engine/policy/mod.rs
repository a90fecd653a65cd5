//! A compiled rule-file policy as one engine runs it: the shared, immutable
//! [`rulespec::Compiled`] tables plus this engine's own mutable state — limiter tables per rule,
//! per-service SYN-rate windows (`syn auto`) and options learned from backends.
//!
//! Reload without stalling the packet path: a control thread builds a [`Prepared`] for each
//! engine (all allocation happens there), hands it to the worker, and the worker calls
//! [`crate::Engine::install`] between two batches. `install` only moves things: the limiter
//! state of every rule whose [`rulespec::CRule::fingerprint`] is unchanged is moved into the new
//! policy, counters are carried over by name, and the old policy comes back as a [`Retired`]
//! for the control thread to drop. A frame is judged entirely under one policy or the other.

pub mod limiter;
mod rules;

use std::sync::Arc;

use rulespec::ast::{Learnable, Toggle};
use rulespec::{CLimit, Compiled};

use super::counters::{RuleCounters, TargetCounters};
use super::session::{Timeouts, MAX_SERVICES};
use limiter::{Aggregate, SourceLimits, SourceTable, TokenBucket};

/// TCP options the cookie SYN-ACK advertises to clients (they must match what the backend
/// will use: the window scale is translated if the backend differs, the MSS is not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advertise {
    /// MSS advertised on IPv4.
    pub mss_v4: u16,
    /// MSS advertised on IPv6.
    pub mss_v6: u16,
    /// Window scale advertised (when the client offered window scaling), 0..=14.
    pub wscale: u8,
    /// Offer SACK (when the client offered it).
    pub sack: bool,
    /// Echo timestamps (when the client sent them).
    pub timestamps: bool,
}

impl Default for Advertise {
    fn default() -> Self {
        Advertise { mss_v4: 1460, mss_v6: 1440, wscale: 7, sack: true, timestamps: true }
    }
}

/// How a policy is prepared for one engine.
#[derive(Clone, Copy, Debug)]
pub struct PrepareOptions {
    /// Entries of each per-source limiter table (per rule with per-source limits).
    pub per_source_slots: usize,
    /// Number of engines (workers) sharing the traffic: aggregate rates and `syn auto`
    /// thresholds are divided by it. Per-source limits are not (a source's flows usually meet
    /// one worker).
    pub rate_share: u32,
    /// Seed of the limiter hashes (keep it secret: derive it from the cookie secret).
    pub seed: u64,
    /// Options advertised in cookie SYN-ACKs where a service says `learn` (until learned).
    pub advertise: Advertise,
    /// Advertise exactly `advertise`, never learn (the `--protect` shorthand).
    pub fixed_advertise: bool,
    /// Handle SYNs of every service this way, whatever the service says.
    pub force_syn: Option<rulespec::ast::SynMode>,
    /// The time the policy is prepared (buckets start full).
    pub now_ns: u64,
    /// Connection states of the HTTP checks (when a service has `http`): as many as the
    /// session table holds.
    pub http_slots: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            per_source_slots: 65_536,
            rate_share: 1,
            seed: 0x5eed_11e7,
            advertise: Advertise::default(),
            fixed_advertise: false,
            force_syn: None,
            now_ns: 0,
            http_slots: 65_536,
        }
    }
}

/// Why a policy cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// More services than sessions can name.
    #[error("{0} services: at most {MAX_SERVICES} are supported (merge services with the same protection)")]
    TooManyServices(usize),
}

/// What `learn` means per option.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Learn {
    pub mss: bool,
    pub wscale: bool,
    pub sack: bool,
    pub timestamps: bool,
}

impl Learn {
    pub(crate) fn any(&self) -> bool {
        self.mss || self.wscale || self.sack || self.timestamps
    }
}

/// SYN defence of a service, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SynPolicy {
    Proxy,
    Track,
    /// Track until more than `per_sec` SYNs arrive within one second, then proxy for the rest
    /// of that second and the next.
    Auto {
        per_sec: u64,
    },
}

/// One service's runtime state in one engine.
#[derive(Clone, Debug)]
pub(crate) struct SvcRt {
    pub name: String,
    pub syn: SynPolicy,
    pub adv: Advertise,
    pub learn: Learn,
    /// Options learned from a backend SYN-ACK (the first one after the policy was installed).
    pub learned: bool,
    pub timeouts: Timeouts,
    /// Mid-stream pickup window after start, in ns.
    pub pickup_ns: u64,
    /// `syn auto`: start of the current one-second window, SYNs in it, proxy until.
    pub win_start: u64,
    pub win_syns: u64,
    pub proxy_until: u64,
    /// `http`: the request-head checks.
    pub http: Option<Box<crate::engine::http::HttpLimits>>,
    /// `http … ban`: (duration in ns, violations).
    pub http_ban: Option<(u64, u32)>,
}

/// One rule's runtime state in one engine.
#[derive(Debug)]
pub(crate) struct RuleRt {
    pub fingerprint: u64,
    pub source: Option<SourceTable>,
    pub aggregate: Option<Aggregate>,
    pub max_conns: Option<u32>,
    /// `per-source requests`: one new-connection bucket per source, charged per request.
    pub requests: Option<SourceTable>,
    /// `ban`: (duration in ns, violations).
    pub ban: Option<(u64, u32)>,
}

/// A policy ready to be installed in one engine (see the module docs).
#[derive(Debug)]
pub struct Prepared {
    pub(crate) compiled: Arc<Compiled>,
    pub(crate) services: Vec<SvcRt>,
    pub(crate) rules: Vec<RuleRt>,
    pub(crate) per_target: Vec<TargetCounters>,
    pub(crate) per_rule: Vec<RuleCounters>,
    /// Top sources per target (swapped into the engine's counters when installed).
    pub(crate) top_sources: Vec<crate::engine::sources::TopSources>,
    /// The pickup gate, when a service has a pickup window (see [`crate::engine::tcp::pickup`]).
    pub(crate) pickup: Option<Box<crate::engine::tcp::pickup::PickupGate>>,
    /// A cookie secret to rotate to when installed (see [`Prepared::with_cookie_key`]).
    pub(crate) cookie_key: Option<([u8; 16], u64)>,
    /// Connection states of the HTTP checks, when a service has `http`.
    pub(crate) http: Option<Box<crate::engine::http::HttpTable>>,
}

fn ban_of(b: &rulespec::Ban) -> (u64, u32) {
    (b.duration.as_nanos().min(u128::from(u64::MAX)) as u64, b.after.max(1))
}

/// The policy an [`crate::Engine::install`] replaced, with whatever it no longer needs: drop it
/// away from the packet path.
#[derive(Debug)]
pub struct Retired(#[allow(dead_code)] pub(crate) Prepared);

fn bucket(b: &rulespec::Bucket, share: u32) -> TokenBucket {
    let share = u64::from(share.max(1));
    TokenBucket { rate: b.rate / share, burst: (b.burst / share).max(1) }
}

/// A bps bucket as a bytes-per-second bucket (its burst is already in bytes).
fn bytes_bucket(b: &rulespec::Bucket, share: u32) -> TokenBucket {
    let share = u64::from(share.max(1));
    TokenBucket { rate: b.rate / 8 / share, burst: (b.burst / share).max(1) }
}

fn ms(d: std::time::Duration) -> u32 {
    d.as_millis().min(u128::from(u32::MAX >> 1)) as u32
}

impl Prepared {
    /// Build the per-engine state for `compiled` (allocates every limiter table now).
    pub fn new(compiled: Arc<Compiled>, o: &PrepareOptions) -> Result<Prepared, PolicyError> {
        let cs = compiled.services();
        if cs.len() > MAX_SERVICES {
            return Err(PolicyError::TooManyServices(cs.len()));
        }
        let services: Vec<SvcRt> = cs
            .iter()
            .map(|s| {
                let learn = if o.fixed_advertise {
                    Learn::default()
                } else {
                    Learn {
                        mss: s.mss == Learnable::Learn,
                        wscale: s.wscale == Learnable::Learn,
                        sack: s.sack == Toggle::Learn,
                        timestamps: s.timestamps == Toggle::Learn,
                    }
                };
                let mut adv = o.advertise;
                if !o.fixed_advertise {
                    if let Learnable::Value(m) = s.mss {
                        let m = m.clamp(536, 65_535) as u16;
                        adv.mss_v4 = m;
                        adv.mss_v6 = m.saturating_sub(20).max(1220);
                    }
                    if let Learnable::Value(w) = s.wscale {
                        adv.wscale = w.min(14) as u8;
                    }
                    match s.sack {
                        Toggle::On => adv.sack = true,
                        Toggle::Off => adv.sack = false,
                        Toggle::Learn => {}
                    }
                    match s.timestamps {
                        Toggle::On => adv.timestamps = true,
                        Toggle::Off => adv.timestamps = false,
                        Toggle::Learn => {}
                    }
                }
                let syn = match o.force_syn.unwrap_or(s.syn) {
                    rulespec::ast::SynMode::Proxy => SynPolicy::Proxy,
                    rulespec::ast::SynMode::Track => SynPolicy::Track,
                    rulespec::ast::SynMode::Auto(r) => {
                        SynPolicy::Auto { per_sec: (r.value / u64::from(o.rate_share.max(1))).max(1) }
                    }
                };
                SvcRt {
                    name: s.name.clone(),
                    syn,
                    adv,
                    learn,
                    learned: false,
                    timeouts: Timeouts {
                        embryonic_ms: ms(s.idle_embryonic),
                        established_ms: ms(s.idle_established),
                        closing_ms: ms(s.idle_closing),
                        closed_ms: ms(s.idle_closing).min(10_000),
                    },
                    pickup_ns: s.pickup.as_nanos().min(u128::from(u64::MAX)) as u64,
                    win_start: 0,
                    win_syns: 0,
                    proxy_until: 0,
                    http: s.http.as_ref().map(|h| Box::new(crate::engine::http::HttpLimits::new(h))),
                    http_ban: s.http.as_ref().and_then(|h| h.ban.as_ref()).map(ban_of),
                }
            })
            .collect();
        let mut rules = Vec::with_capacity(compiled.rules().len());
        for (i, r) in compiled.rules().iter().enumerate() {
            let mut sl = SourceLimits::default();
            let mut agg: Option<(Option<TokenBucket>, Option<TokenBucket>)> = None;
            let mut max_conns = None;
            let mut requests = None;
            for l in &r.limits {
                match l {
                    CLimit::PerSource { pps, bps } => {
                        sl.pps = pps.as_ref().map(|b| bucket(b, 1));
                        sl.bytes = bps.as_ref().map(|b| bytes_bucket(b, 1));
                    }
                    CLimit::Aggregate { pps, bps } => {
                        agg = Some((
                            pps.as_ref().map(|b| bucket(b, o.rate_share)),
                            bps.as_ref().map(|b| bytes_bucket(b, o.rate_share)),
                        ));
                    }
                    CLimit::NewConns(b) => sl.new_conns = Some(bucket(b, 1)),
                    CLimit::MaxConns(n) => max_conns = Some(*n),
                    CLimit::Requests(b) => requests = Some(bucket(b, 1)),
                }
            }
            let seed = o.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            rules.push(RuleRt {
                fingerprint: r.fingerprint,
                source: sl.any().then(|| SourceTable::new(sl, o.per_source_slots, seed)),
                aggregate: agg.map(|(p, b)| Aggregate::new(p, b, o.now_ns)),
                max_conns,
                requests: requests.map(|b| {
                    let l = SourceLimits { new_conns: Some(b), ..SourceLimits::default() };
                    SourceTable::new(l, o.per_source_slots, seed.rotate_left(23))
                }),
                ban: r.ban.as_ref().map(ban_of),
            });
        }
        let per_target: Vec<TargetCounters> = cs.iter().map(|s| TargetCounters::new(s.name.clone())).collect();
        let per_rule =
            compiled.rules().iter().map(|r| RuleCounters::new(format!("{} {}", r.location, r.text))).collect();
        let window = compiled.settings().learning_window > std::time::Duration::ZERO
            || services.iter().any(|s: &SvcRt| s.pickup_ns > 0);
        let pickup = window.then(|| {
            Box::new(crate::engine::tcp::pickup::PickupGate::new(o.rate_share, o.seed.rotate_left(7), o.now_ns))
        });
        let top_sources = vec![Default::default(); 2 * per_target.len()];
        let http_idle = services.iter().filter(|s| s.http.is_some()).map(|s| s.timeouts.established_ms).max();
        let http = http_idle
            .map(|idle| Box::new(crate::engine::http::HttpTable::new(o.http_slots, o.seed.rotate_left(11), idle)));
        Ok(Prepared { compiled, services, rules, per_target, per_rule, top_sources, pickup, cookie_key: None, http })
    }

    /// Install this policy together with the cookie secret `key` (read at `now_ns`): an engine whose secret
    /// differs rotates to it ([`crate::engine::cookie::SynCookies::rotate`]: cookies under the
    /// old secret keep validating for two slots). The session table and limiter hashes keep
    /// the seeds they were built with.
    pub fn with_cookie_key(mut self, key: [u8; 16], now_ns: u64) -> Prepared {
        self.cookie_key = Some((key, now_ns));
        self
    }

    /// The compiled tables.
    pub fn compiled(&self) -> &Arc<Compiled> {
        &self.compiled
    }

    /// Move state worth keeping from `old` (the policy being replaced) into `self`: limiter
    /// tables of rules with the same fingerprint (their sources keep their buckets; the new
    /// rates apply), counters of rules, targets and services with the same name, learned
    /// options and `syn auto` windows of services with the same name. Moves and copies only.
    pub(crate) fn adopt(&mut self, old: &mut Prepared) {
        // The pickup gate's filter and probes carry over (the fresh one retires with `old`).
        if self.pickup.is_some() && old.pickup.is_some() {
            core::mem::swap(&mut self.pickup, &mut old.pickup);
        }
        // Connections keep their HTTP state (the new limits apply from their next byte).
        if self.http.is_some() && old.http.is_some() {
            core::mem::swap(&mut self.http, &mut old.http);
        }
        for (i, r) in self.rules.iter_mut().enumerate() {
            let Some(j) = old.rules.iter().position(|o| o.fingerprint == r.fingerprint) else { continue };
            let o = &mut old.rules[j];
            if let (Some(new), Some(prev)) = (&mut r.source, &mut o.source) {
                let limits = *new.limits();
                core::mem::swap(new, prev);
                new.set_limits(limits);
            }
            if let (Some(new), Some(prev)) = (&mut r.requests, &mut o.requests) {
                let limits = *new.limits();
                core::mem::swap(new, prev);
                new.set_limits(limits);
            }
            if let (Some(new), Some(prev)) = (&mut r.aggregate, &mut o.aggregate) {
                let fresh = *new;
                *new = *prev;
                new.retune_from(&fresh);
            }
            if let (Some(a), Some(b)) = (self.per_rule.get_mut(i), old.per_rule.get(j)) {
                a.n = b.n;
            }
            // Mark as taken so a duplicate fingerprint does not take the same state twice.
            o.fingerprint = !r.fingerprint;
        }
        for t in &mut self.per_target {
            if let Some(o) = old.per_target.iter().find(|o| o.label == t.label) {
                t.n = o.n;
            }
        }
        for s in &mut self.services {
            if let Some(o) = old.services.iter().find(|o| o.name == s.name) {
                if o.learned && o.learn == s.learn {
                    s.adv = o.adv;
                    s.learned = true;
                }
                s.win_start = o.win_start;
                s.win_syns = o.win_syns;
                s.proxy_until = o.proxy_until;
            }
        }
    }
}
