//! [`Stats`]: one worker's numbers, for metrics (`GET /metrics` in the binary).

use crate::push::stats::PushStats;
use crate::server::metrics::LoopStats;

/// One worker's numbers at one moment: what its loop and its push layer counted since
/// it started, and its connections, queues and channels now. Counting is plain integers
/// on the worker's own thread; a [`Stats`] is made only when asked for
/// ([`Context::stats`](crate::Context::stats), or from another thread
/// `handle.defer_on(worker, |ctx| ctx.stats())`), so asking costs a walk over the
/// worker's connections and channels and counting costs the hot path nothing more than
/// an addition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Which worker (counted from 0).
    pub worker: usize,
    /// The event loop's counters and gauges.
    pub server: LoopStats,
    /// The push layer's.
    pub push: PushStats,
}
