//! What is read at scrape time rather than counted: the queue's size and the age of its
//! oldest message, the spool's commit statistics, the server's start time. The HTTP handler
//! gathers a [`Scrape`] from the queue and spool and [`Metrics::encode`](crate::Metrics::encode)
//! writes it after the counted families.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// The queue now, by where its messages are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    /// Waiting for a free delivery slot.
    pub ready: u64,
    /// Waiting for their next attempt.
    pub scheduled: u64,
    /// Held by the operator.
    pub held: u64,
    /// In a delivery run now.
    pub running: u64,
    /// Seconds since the oldest queued message was accepted (0 when the queue is empty).
    pub oldest_age: u64,
}

impl QueueSnapshot {
    /// The states and their counts, as exported.
    pub fn by_state(&self) -> [(&'static str, u64); 4] {
        [("ready", self.ready), ("scheduled", self.scheduled), ("held", self.held), ("running", self.running)]
    }

    /// Messages in the queue.
    pub fn total(&self) -> u64 {
        self.ready + self.scheduled + self.held + self.running
    }
}

/// A histogram counted elsewhere (such as the spool's fsync durations), read at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds of the buckets, increasing.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative), one more than `bounds`: the last counts
    /// those above every bound.
    pub counts: Vec<u64>,
    /// The sum of the observations.
    pub sum: f64,
}

/// Values read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The queue, when its manager answered.
    pub queue: Option<QueueSnapshot>,
    /// The spool's commits so far: `batch_sizes[n]` files held `n` messages (the last entry
    /// also counts larger files), as `dakiya_spool::CommitStats` reports them.
    pub batch_sizes: Vec<u64>,
    /// Commit rounds (one fsync of the queue directory each).
    pub commit_rounds: u64,
    /// Requests to make the queue directory durable, and the fsyncs that served them.
    pub dir_sync: (u64, u64),
    /// When the server started, in unix seconds.
    pub start_time: u64,
    /// 1 when the spool passed its last writability probe.
    pub spool_writable: bool,
    /// fsync durations in seconds, by what was synced (`directory`, `file`).
    pub fsync: Vec<(&'static str, HistogramSnapshot)>,
    /// The spool's pool of free files: `(recycled, reused)`, as `Spool::pool_stats` reports.
    pub pool: (u64, u64),
    /// The spool's in-memory copies of just-committed messages, as `Spool::recent_stats`
    /// reports them.
    pub recent: RecentSnapshot,
    /// Commit rounds held back by the pace while other messages were arriving
    /// (`dakiya_spool::CommitStats::paced`).
    pub commit_paced: u64,
    /// The spool's slots, as `Spool::slot_stats` reports them.
    pub slots: SlotSnapshot,
}

/// The spool's slots, batch files written in place (`dakiya_spool::SlotStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotSnapshot {
    /// Slot files that exist.
    pub slots: u64,
    /// Of those, the ones free now.
    pub free: u64,
    /// Batches written into an existing slot.
    pub in_place: u64,
    /// Slots made by commit rounds (each one a batch written into a new file).
    pub made: u64,
    /// Slots freed by copying their long-queued messages into a batch file.
    pub copied_out: u64,
}

/// How the spool's in-memory copies of just-committed messages served first loads
/// (`dakiya_spool::RecentStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecentSnapshot {
    /// Messages kept after their commit.
    pub kept: u64,
    /// Loads served from memory.
    pub hits: u64,
    /// Loads that read the batch file.
    pub misses: u64,
    /// Messages dropped to stay within the bounds before they were loaded.
    pub evictions: u64,
    /// Messages removed from the queue before they were loaded.
    pub dropped: u64,
}

impl Scrape {
    /// Writes these values in the text exposition format (without the final `# EOF`).
    pub(crate) fn encode(&self, out: &mut String) -> std::fmt::Result {
        let mut r = Registry::with_prefix("dakiya");
        r.register_collector(Box::new(self.clone()));
        prometheus_client::encoding::text::encode_registry(out, &r)
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<&Unit>, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, unit, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// One counter family with one label, a counter per value.
fn labelled_counters(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: &[(&'static str, u64)],
) -> std::fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for &(value, n) in values {
        let labels = [(label, value)];
        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        if let Some(q) = &self.queue {
            let help = "Messages in the queue, by state";
            let mut family = e.encode_descriptor("queue_messages", help, None, MetricType::Gauge)?;
            for (state, n) in q.by_state() {
                let labels = [("state", state)];
                ConstGauge::new(int(n)).encode(family.encode_family(&labels)?)?;
            }
            let help = "Age of the oldest queued message (0 when the queue is empty)";
            gauge(&mut e, "queue_oldest_message_age", help, Some(&Unit::Seconds), int(q.oldest_age))?;
        }
        self.encode_batches(&mut e)?;
        self.encode_fsync(&mut e)?;
        self.encode_reuse(&mut e)?;
        counter(&mut e, "spool_commit_rounds", "Spool commit rounds (group commits)", self.commit_rounds)?;
        let help = "Spool commit rounds held back by the commit pace while other messages were arriving";
        counter(&mut e, "spool_commit_rounds_paced", help, self.commit_paced)?;
        let (requests, syncs) = self.dir_sync;
        counter(&mut e, "spool_dir_sync_requests", "Requests to make the queue directory durable", requests)?;
        counter(&mut e, "spool_dir_syncs", "fsyncs of the queue directory that served them", syncs)?;
        gauge(
            &mut e,
            "start_time",
            "When the server started, in unix time",
            Some(&Unit::Seconds),
            int(self.start_time),
        )?;
        let help = "1 when the spool passed its last writability probe, else 0";
        gauge(&mut e, "spool_writable", help, None, i64::from(self.spool_writable))
    }
}

impl Scrape {
    /// The spool's reuse of files and of committed bytes (docs/performance.md 7.4, 7.10).
    fn encode_reuse(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let (recycled, reused) = self.pool;
        let help = "Spool files that entered the pool of free files (recycled) or left it as new ones (reused)";
        labelled_counters(e, "spool_pool_files", help, "event", &[("recycled", recycled), ("reused", reused)])?;
        let r = &self.recent;
        let help = "First delivery loads of just-committed messages, served from memory (hit) or the batch file (miss)";
        labelled_counters(e, "spool_memory_loads", help, "result", &[("hit", r.hits), ("miss", r.misses)])?;
        let help = "Just-committed messages kept in memory for their first load, and those let go unloaded \
                    (evicted to stay within the bounds, dropped when removed first)";
        let events = [("kept", r.kept), ("evicted", r.evictions), ("dropped", r.dropped)];
        labelled_counters(e, "spool_memory_messages", help, "event", &events)?;
        let slots = &self.slots;
        gauge(
            e,
            "spool_slots",
            "Spool slot files (batch files written in place, docs/spool-slots.md)",
            None,
            int(slots.slots),
        )?;
        gauge(e, "spool_slots_free", "Spool slots holding no queued message", None, int(slots.free))?;
        let help = "Batches written into a slot: in place (no new name, no directory fsync) or into a slot made for it";
        labelled_counters(e, "spool_slot_writes", help, "kind", &[("in_place", slots.in_place), ("made", slots.made)])?;
        let help = "Slots freed by copying their long-queued messages into a batch file";
        counter(e, "spool_slot_copyouts", help, slots.copied_out)
    }

    /// The spool's fsync durations, by what was synced.
    fn encode_fsync(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        if self.fsync.is_empty() {
            return Ok(());
        }
        let help = "Duration of spool fsyncs, by what was synced (directory, file)";
        let unit = Unit::Seconds;
        let mut family = e.encode_descriptor("spool_fsync_duration", help, Some(&unit), MetricType::Histogram)?;
        for (kind, h) in &self.fsync {
            let count = h.counts.iter().sum();
            let mut buckets: Vec<(f64, u64)> = h.bounds.iter().copied().zip(h.counts.iter().copied()).collect();
            // The encoder writes `f64::MAX` as `+Inf`.
            buckets.push((f64::MAX, h.counts.get(h.bounds.len()).copied().unwrap_or(0)));
            let labels = [("kind", *kind)];
            let mut m = family.encode_family(&labels)?;
            m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(h.sum, count, &buckets, None)?;
        }
        Ok(())
    }

    /// The spool's batch sizes as a histogram of messages per committed file.
    fn encode_batches(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        // Per-bucket (not cumulative) counts: the encoder accumulates them.
        let mut buckets = Vec::new();
        let (mut count, mut sum, mut in_bucket) = (0u64, 0f64, 0u64);
        let mut bound = 1usize;
        for (n, &files) in self.batch_sizes.iter().enumerate() {
            while n > bound {
                buckets.push((bound as f64, std::mem::take(&mut in_bucket)));
                bound *= 2;
            }
            in_bucket += files;
            count += files;
            sum += n as f64 * files as f64;
        }
        while bound <= 64 {
            buckets.push((bound as f64, std::mem::take(&mut in_bucket)));
            bound *= 2;
        }
        // The encoder writes `f64::MAX` as `+Inf`.
        buckets.push((f64::MAX, in_bucket));
        let help = "Messages per file committed to the spool (group commit batch sizes)";
        let mut m = e.encode_descriptor("spool_commit_batch_messages", help, None, MetricType::Histogram)?;
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }
}
