//! Abuse limits of the binary, shared by all workers: connections per client address
//! and per user, new connections per second per address (a token bucket), and which
//! proxies' `X-Forwarded-For` is believed. One lock is taken per connection opened or
//! ended, never per message.

use ipnet::IpNet;
use pushloop::{Refusal, Request};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// The most token buckets kept; beyond it, the full ones are forgotten.
const MAX_BUCKETS: usize = 100_000;

/// The limits and what they count.
#[derive(Debug, Default)]
pub struct Limits {
    /// Most WebSockets and SSE streams per client address.
    pub per_ip: Option<usize>,
    /// Most WebSockets and SSE streams per user.
    pub per_user: Option<usize>,
    /// New connections (upgrades, SSE streams, polls) per second per address.
    pub rate: Option<f64>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub proxies: Vec<IpNet>,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    ips: HashMap<IpAddr, usize>,
    users: HashMap<String, usize>,
    buckets: HashMap<IpAddr, Bucket>,
}

/// A token bucket: `rate` tokens a second, at most `rate` (at least 1) kept.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What a counted connection holds, given back when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    ip: IpAddr,
    user: Option<String>,
}

impl Limits {
    /// Limits of `per_ip` and `per_user` long-lived connections, `rate` new connections
    /// a second per address, believing `proxies`.
    pub fn new(
        per_ip: Option<usize>,
        per_user: Option<usize>,
        rate: Option<f64>,
        proxies: Vec<IpNet>,
    ) -> Self {
        Limits {
            per_ip,
            per_user,
            rate,
            proxies,
            counts: Mutex::default(),
        }
    }

    /// Whether any limit is set (else nothing is counted).
    pub fn active(&self) -> bool {
        self.per_ip.is_some() || self.per_user.is_some() || self.rate.is_some()
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy, the
    /// nearest address in `X-Forwarded-For` that is not a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, req: &Request<'_>) -> IpAddr {
        let trusted = |ip: &IpAddr| self.proxies.iter().any(|net| net.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let mut client = peer;
        for value in req
            .headers_named("x-forwarded-for")
            .collect::<Vec<_>>()
            .iter()
            .rev()
        {
            let Ok(list) = std::str::from_utf8(value) else {
                return client;
            };
            for hop in list.rsplit(',') {
                match hop.trim().parse::<IpAddr>() {
                    Ok(ip) if trusted(&ip) => client = ip,
                    Ok(ip) => return ip,
                    Err(_) => return client,
                }
            }
        }
        client
    }

    /// A new connection attempt from `ip`: `Err` with the `429` when over the
    /// handshake rate.
    pub fn knock(&self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let burst = rate.max(1.0);
        let mut counts = self.lock();
        if counts.buckets.len() >= MAX_BUCKETS {
            counts
                .buckets
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = counts.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64;
        Err(Refusal::json(429, "too many new connections").header("Retry-After", &wait.to_string()))
    }

    /// Takes a seat for a long-lived connection (a WebSocket, an SSE stream) of `ip`
    /// and `user`, or the `429` when either has all its seats taken.
    pub fn sit(&self, ip: IpAddr, user: Option<&str>) -> Result<Seat, Refusal> {
        let mut counts = self.lock();
        let ip_count = counts.ips.get(&ip).copied().unwrap_or(0);
        if self.per_ip.is_some_and(|max| ip_count >= max) {
            return Err(Refusal::json(429, "too many connections from this address"));
        }
        if let (Some(max), Some(user)) = (self.per_user, user) {
            if counts.users.get(user).copied().unwrap_or(0) >= max {
                return Err(Refusal::json(429, "too many connections of this user"));
            }
        }
        *counts.ips.entry(ip).or_default() += 1;
        if let Some(user) = user {
            *counts.users.entry(user.to_owned()).or_default() += 1;
        }
        Ok(Seat {
            ip,
            user: user.map(str::to_owned),
        })
    }

    /// Gives `seat` back (its connection ended).
    pub fn stand(&self, seat: &Seat) {
        let mut counts = self.lock();
        if let Some(n) = counts.ips.get_mut(&seat.ip) {
            *n -= 1;
            if *n == 0 {
                counts.ips.remove(&seat.ip);
            }
        }
        if let Some(user) = &seat.user {
            if let Some(n) = counts.users.get_mut(user) {
                *n -= 1;
                if *n == 0 {
                    counts.users.remove(user);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn seats_per_address_and_user() {
        let limits = Limits {
            per_ip: Some(2),
            per_user: Some(1),
            ..Limits::default()
        };
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = limits.sit(a, None).unwrap();
        let alice = limits.sit(a, Some("alice")).unwrap();
        assert_eq!(limits.sit(a, None).unwrap_err().status, 429);
        assert_eq!(limits.sit(b, Some("alice")).unwrap_err().status, 429);
        limits.stand(&alice);
        limits.sit(b, Some("alice")).unwrap();
        limits.stand(&first);
        limits.sit(a, None).unwrap();
    }

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let limits = Limits {
            rate: Some(2.0),
            ..Limits::default()
        };
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        assert!(limits.knock(ip, t).is_ok());
        assert!(limits.knock(ip, t).is_ok());
        let refused = limits.knock(ip, t).unwrap_err();
        assert_eq!(refused.status, 429);
        assert!(refused
            .headers
            .contains(&("Retry-After".to_owned(), "1".to_owned())));
        assert!(limits.knock(ip, t + Duration::from_millis(500)).is_ok());
        assert!(limits.knock("10.0.0.9".parse().unwrap(), t).is_ok());
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let limits = Limits {
            proxies: vec!["10.0.0.0/8".parse().unwrap()],
            ..Limits::default()
        };
        let head = b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4, 10.0.0.7\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let (req, _) = pushloop::codec::parse_request(head, &mut headers, 8192)
            .unwrap()
            .unwrap();
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            limits.client_ip(proxy, &req),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        let stranger: IpAddr = "5.6.7.8".parse().unwrap();
        assert_eq!(limits.client_ip(stranger, &req), stranger);
    }
}
