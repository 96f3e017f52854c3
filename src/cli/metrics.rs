//! `GET /metrics`: every worker's [`Stats`] in the Prometheus text format (0.0.4), written
//! with `prometheus-client`. The numbers are gathered off the loops: a scrape asks each
//! worker for its [`Stats`] through the [`Handle`] (a task on its loop, which walks its
//! connections and channels once) and waits on the [`Scraper`]'s own thread, never on a
//! loop; the loops only ever add to plain integers.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use pushloop::stats::{
    Histogram, Source, Stats, CLOSE_CODES, LATENCY_BUCKETS, POLICIES, REFUSAL_STATUSES,
};
use pushloop::{ConnId, Handle, Policy, Response};
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

/// How long a scrape waits for a worker's numbers.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Labels of one sample.
type Labels = Vec<(&'static str, String)>;

/// The latency histogram, as gathered (buckets are not cumulative).
#[derive(Debug)]
struct Latency(Histogram);

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .zip(self.0.buckets)
            .collect();
        buckets.push((f64::INFINITY, self.0.buckets[LATENCY_BUCKETS.len()]));
        encoder.encode_histogram::<NoLabelSet>(self.0.sum, self.0.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A counter family filled from `(labels, value)` pairs.
fn counters(samples: impl IntoIterator<Item = (Labels, u64)>) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    for (labels, value) in samples {
        family.get_or_create(&labels).inc_by(value);
    }
    family
}

/// A gauge family filled from `(labels, value)` pairs.
fn gauges(samples: impl IntoIterator<Item = (Labels, u64)>) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    for (labels, value) in samples {
        family
            .get_or_create(&labels)
            .set(i64::try_from(value).unwrap_or(i64::MAX));
    }
    family
}

/// One unlabelled sample.
fn one(value: u64) -> Vec<(Labels, u64)> {
    vec![(Vec::new(), value)]
}

/// The name of `policy` in labels (its flag value).
fn policy_name(policy: Policy) -> String {
    policy.to_string()
}

/// Every worker's numbers in the Prometheus text format.
pub fn render(workers: &[Stats]) -> String {
    let mut total = Stats::default();
    for stats in workers {
        total.server.counters.merge(&stats.server.counters);
        total.server.backlog_bytes += stats.server.backlog_bytes;
        for (a, b) in total.push.publishes.iter_mut().zip(stats.push.publishes) {
            *a += b;
        }
        total.push.channels += stats.push.channels;
        total.push.history_bytes += stats.push.history_bytes;
    }
    let c = &total.server.counters;
    let mut r = Registry::default();
    let connections = workers.iter().flat_map(|s| {
        let n = &s.server.connections;
        let worker = s.worker.to_string();
        [
            ("websocket", n.websocket),
            ("sse", n.sse),
            ("long_poll", n.long_poll),
            ("http", n.http),
        ]
        .map(|(transport, count)| {
            let labels = vec![
                ("transport", transport.to_owned()),
                ("worker", worker.clone()),
            ];
            (labels, count as u64)
        })
    });
    r.register(
        "pushloop_connections",
        "Open connections by transport and worker (http: reading a request or draining)",
        gauges(connections),
    );
    r.register(
        "pushloop_handshakes_accepted",
        "WebSocket upgrades accepted",
        counters(one(c.handshakes_accepted)),
    );
    let refused = REFUSAL_STATUSES
        .iter()
        .zip(c.handshakes_refused)
        .map(|(s, n)| {
            let status = if *s == 0 {
                "other".into()
            } else {
                s.to_string()
            };
            (vec![("status", status)], n)
        });
    r.register(
        "pushloop_handshakes_refused",
        "Upgrades and request heads refused, by HTTP status",
        counters(refused),
    );
    r.register(
        "pushloop_messages_received",
        "WebSocket messages received",
        counters(one(c.messages_in)),
    );
    r.register(
        "pushloop_messages_sent",
        "Messages queued to WebSockets and event streams",
        counters(one(c.messages_out)),
    );
    let layer = |wire: u64, payload: u64| {
        [("wire", wire), ("payload", payload)].map(|(l, n)| (vec![("layer", l.to_owned())], n))
    };
    r.register(
        "pushloop_received_bytes",
        "Bytes received: wire (read from sockets) and payload (messages, inflated)",
        counters(layer(c.bytes_in, c.payload_bytes_in)),
    );
    r.register(
        "pushloop_sent_bytes",
        "Bytes sent: wire (taken by the kernel) and payload (messages, before compression)",
        counters(layer(c.bytes_out, c.payload_bytes_out)),
    );
    r.register(
        "pushloop_deliveries",
        "Channel messages queued to their members",
        counters(one(c.deliveries)),
    );
    let publishes = Source::ALL
        .iter()
        .zip(total.push.publishes)
        .map(|(s, n)| (vec![("source", s.name().to_owned())], n));
    r.register(
        "pushloop_publishes",
        "Publishes by source (api: POST /publish, chat: client messages, handler, handle)",
        counters(publishes),
    );
    let dropped = POLICIES
        .iter()
        .zip(c.dropped)
        .map(|(p, n)| (vec![("policy", policy_name(*p))], n));
    r.register(
        "pushloop_dropped_messages",
        "Queued or new messages a backlog policy dropped, by policy",
        counters(dropped),
    );
    r.register(
        "pushloop_backlog_overflows",
        "Connections closed (1008) or streams ended because their queue was full",
        counters(vec![(
            vec![("policy", policy_name(Policy::Close))],
            c.overflows,
        )]),
    );
    r.register(
        "pushloop_backlog_bytes",
        "Bytes queued for all connections, not yet taken by the kernel",
        gauges(one(total.server.backlog_bytes)),
    );
    let closes = CLOSE_CODES.iter().zip(c.closes).map(|(code, n)| {
        let code = if *code == 0 {
            "other".into()
        } else {
            code.to_string()
        };
        (vec![("code", code)], n)
    });
    r.register(
        "pushloop_closes",
        "WebSocket conversations ended, by close code (1006: lost without a Close)",
        counters(closes),
    );
    r.register(
        "pushloop_channels",
        "Channels kept (by the workers that own them or have members of them)",
        gauges(one(total.push.channels as u64)),
    );
    r.register(
        "pushloop_history_bytes",
        "Payload bytes of channel history kept",
        gauges(one(total.push.history_bytes)),
    );
    let brokers: Vec<_> = workers.iter().filter_map(|s| s.push.broker).collect();
    let up = brokers
        .iter()
        .all(|b| b.state == pushloop::stats::BrokerState::Up);
    r.register(
        "pushloop_broker_up",
        "1 while the broker between workers (or Redis, with --redis) carries notes (always with one worker)",
        gauges(one(u64::from(up))),
    );
    let sent: u64 = brokers.iter().map(|b| b.notes_sent).sum();
    let received: u64 = brokers.iter().map(|b| b.notes_received).sum();
    r.register(
        "pushloop_broker_notes",
        "Notes between workers (publishes, deliveries, joins, leaves), by direction; with --redis, publishes sent and messages received from Redis",
        counters(
            [("sent", sent), ("received", received)]
                .map(|(d, n)| (vec![("direction", d.to_owned())], n)),
        ),
    );
    let round_trips: u64 = brokers.iter().map(|b| b.round_trips).sum();
    let commands: u64 = brokers.iter().map(|b| b.commands).sum();
    r.register(
        "pushloop_broker_round_trips",
        "Pipelines written to Redis, one per loop turn with commands (0 without --redis)",
        counters(one(round_trips)),
    );
    r.register(
        "pushloop_broker_commands",
        "Commands written to Redis in those pipelines",
        counters(one(commands)),
    );
    r.register(
        "pushloop_publish_latency_seconds",
        "Time from a publish to the end of the writes of its turn",
        Latency(c.publish_latency.clone()),
    );
    let mut out = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &r);
    out
}

/// Asks every worker for its [`Stats`] and waits (off the loops); `None` if one did not
/// answer in time.
pub fn gather(handle: &Handle) -> Option<Vec<Stats>> {
    let pending: Vec<_> = (0..handle.workers())
        .map(|w| handle.defer_on(w, |ctx| ctx.stats()))
        .collect();
    pending
        .iter()
        .map(|p| p.wait_timeout(GATHER_TIMEOUT)?.ok())
        .collect()
}

/// The answer to a scrape.
pub fn response(handle: &Handle) -> Response {
    match gather(handle) {
        Some(stats) => Response::new(200, CONTENT_TYPE, render(&stats)),
        None => Response::text(503, "a worker did not answer"),
    }
}

/// A thread that answers scrapes held on the loops: a loop holds `GET /metrics` and
/// hands its connection here; the thread gathers and answers it through the handle.
#[derive(Debug, Clone)]
pub struct Scraper {
    tx: Sender<ConnId>,
}

impl Scraper {
    /// Starts the thread.
    pub fn start(handle: Handle) -> Scraper {
        let (tx, rx) = mpsc::channel::<ConnId>();
        std::thread::Builder::new()
            .name("pushloop-metrics".into())
            .spawn(move || {
                for id in rx {
                    let answer = response(&handle);
                    let _ = handle.defer_on(id.worker(), move |ctx| ctx.respond(id, &answer));
                }
            })
            .expect("spawn the metrics thread");
        Scraper { tx }
    }

    /// Asks for an answer to the scrape held on `id`.
    pub fn scrape(&self, id: ConnId) {
        let _ = self.tx.send(id);
    }
}
