//! The delivery run: `watchers` streams on `bench/w/`, writers at the target rate, and the latency from each
//! write's acknowledgement to each watcher's receipt of its event.
//!
//! ```text
//!  commit index c ──▶ AckTable for c+1 .. (every write of the run comes after c)
//!  open W watchers (at most OPEN_PARALLEL connecting at once) ──▶ every one answered 200
//!  writers (writers.rs) ──▶ acks ◀── lookups ── watchers: each chunk ──▶ events ──▶ DeliveryMatcher ──▶ shard
//!  writers done ──▶ Finish { highest index acknowledged, deadline } ──▶ each watcher stops once it has seen
//!  that index (a change or a progress event at or past it), or at the deadline
//!  merge the shards ──▶ DeliverySummary
//! ```
//!
//! The watchers are all on the leader, or with `--spread` on every endpoint in turn (a follower sends an
//! event once it has learned the entry is committed and applied it: a little later than the leader).
//!
//! A watcher cut off with `slow_watcher` resumes at the `resume_from` it was given, and one whose stream
//! breaks resumes after the last index it saw, as a client would: its late events then show in the latency,
//! and the cut in the `slow_watcher` count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::super::conn::Dial;
use super::super::report::{CpuTime, LATENCY_US_MAX, Percentiles, new_histogram};
use super::acks::{AckTable, DeliveryMatcher, MatchCounts};
use super::events::StreamEvent;
use super::stream::WatchStream;
use super::summary::{DeliveryMeasured, DeliverySummary, json_line};
use super::writers::{Schedule, WRITE_PREFIX, WriterResult, Writers, micros_since, writer};
use super::{ErrorLog, Setup, open_all};

/// How long the watchers may take, once the writers are done, to receive the last write's events.
const DRAIN: Duration = Duration::from_secs(10);
/// Latency histograms the watchers share, each behind its own lock (one per watcher would cost about 140 KiB
/// each: too much for thousands).
const SHARDS: usize = 16;
/// The longest pause between two attempts to resume a stream.
const RESUME_PAUSE_MAX: Duration = Duration::from_secs(1);

/// When the watchers are done.
#[derive(Clone, Copy, Debug)]
struct Finish {
    /// The highest index acknowledged to a writer: a watcher that saw it has everything.
    highest_index: u64,
    /// Stop at this instant even so.
    deadline: Instant,
}

/// What every watcher shares.
struct Watchers {
    /// The origin of every recorded time (the writers' too).
    origin: Instant,
    /// The nodes watched: watcher `i` watches on `urls[i % urls.len()]`.
    urls: Vec<String>,
    /// How connections are opened.
    dial: Arc<Dial>,
    /// The writes' acknowledgements.
    acks: Arc<AckTable>,
    /// Delivery latencies of measured writes, in microseconds; watcher `i` records into shard `i % SHARDS`.
    shards: Vec<Mutex<Histogram<u64>>>,
    /// Events received (every kind of change), for the progress line.
    events: AtomicU64,
    /// `slow_watcher` errors received.
    slow_watcher: AtomicU64,
    /// Broken or failed streams and their first messages.
    errors: Arc<ErrorLog>,
    /// Bounds the watchers connecting at once.
    open_gate: Semaphore,
}

/// How a stream ended.
enum StreamEnd {
    /// The watcher has every event, or its time is up.
    Done,
    /// Cut off or broken: open again from this index.
    Resume(u64),
    /// An error that resuming cannot cure (compacted, permission denied).
    Fatal,
}

/// The delivery run: opens the watchers, writes, prints the summary.
///
/// # Errors
/// The commit index cannot be read, or a watcher does not open.
pub(super) async fn run(setup: &Setup) -> anyhow::Result<()> {
    let args = &setup.args;
    let origin = Instant::now();
    // Every write of the run comes after the commit index read now, before any watcher opens.
    let after = setup.client.cluster_of(&setup.url).await?.commit_index;
    let due = (f64::from(args.rate) * (args.warmup + args.duration) as f64).ceil() as usize;
    let acks = Arc::new(AckTable::new(after, due + due / 4 + 100_000));
    let errors = Arc::new(ErrorLog::default());
    let urls = if args.spread { setup.client.endpoints().to_vec() } else { vec![setup.url.clone()] };
    eprintln!("bench: watch: opening {} watchers on {WRITE_PREFIX} at {}", args.watchers, urls.join(", "));
    let watchers = Arc::new(Watchers {
        origin,
        urls,
        dial: Arc::clone(&setup.dial),
        acks: Arc::clone(&acks),
        shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
        events: AtomicU64::new(0),
        slow_watcher: AtomicU64::new(0),
        errors: Arc::clone(&errors),
        open_gate: Semaphore::new(super::OPEN_PARALLEL),
    });
    let (finish_tx, finish_rx) = watch::channel(None);
    let mut tasks = JoinSet::new();
    let opened = open_all(args.watchers, |id, opened| {
        tasks.spawn(watcher(Arc::clone(&watchers), id, opened, finish_rx.clone()));
    })
    .await;
    if let Some(error) = &opened.first_error {
        let _ = finish_tx.send(Some(Finish { highest_index: 0, deadline: Instant::now() }));
        tasks.join_all().await;
        anyhow::bail!("{} of {} watchers did not open; the first: {error}", opened.failed, args.watchers);
    }

    let writers = Arc::new(Writers {
        origin,
        url: setup.url.clone(),
        dial: Arc::clone(&setup.dial),
        schedule: schedule(args.rate, args.warmup, args.duration),
        keys: args.keys,
        value: super::super::make_value(args.value_size).into(),
        acks,
        next_ticket: AtomicU64::new(0),
        highest_index: AtomicU64::new(0),
        acknowledged: AtomicU64::new(0),
        errors: Arc::clone(&errors),
    });
    let progress = tokio::spawn(progress(Arc::clone(&watchers), Arc::clone(&writers)));
    let mut measured = write(&writers, args.writers).await?;
    let highest_index = writers.highest_index.load(Ordering::Relaxed);
    let _ = finish_tx.send(Some(Finish { highest_index, deadline: Instant::now() + DRAIN }));
    let mut tally = WatcherTally::default();
    while let Some(joined) = tasks.join_next().await {
        tally += joined?;
    }
    progress.abort();
    measured.delivery_latency = Percentiles::of(&watchers.merged_latencies()?);
    (measured.counts, measured.watch_errors) = (tally.counts, tally.errors);
    measured.slow_watcher = watchers.slow_watcher.load(Ordering::Relaxed);
    report(setup, &measured, &errors)
}

/// The writes of a run starting now: `rate` a second, the first `warmup` seconds not measured.
fn schedule(rate: u32, warmup: u64, duration: u64) -> Schedule {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(warmup);
    Schedule { start, measure_from, end: measure_from + Duration::from_secs(duration), rate: u64::from(rate) }
}

/// Runs `count` writers until no write is due, and measures them (and the bench's CPU) over the measured window;
/// the watchers' part of the result is left to fill in.
///
/// # Errors
/// A writer task panicked, or the CPU time cannot be read.
async fn write(writers: &Arc<Writers>, count: u16) -> anyhow::Result<DeliveryMeasured> {
    let schedule = writers.schedule;
    eprintln!(
        "bench: watch: writing {} writes/s for {:.0} s (warmup {:.0} s), {count} writers",
        schedule.rate,
        (schedule.end - schedule.measure_from).as_secs_f64(),
        (schedule.measure_from - schedule.start).as_secs_f64(),
    );
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        tasks.spawn(writer(Arc::clone(writers)));
    }
    tokio::time::sleep_until(schedule.measure_from).await;
    let cpu_before = CpuTime::now()?;
    let (mut latencies, mut errors, mut last_answer) = (new_histogram(), 0, None);
    while let Some(joined) = tasks.join_next().await {
        let result: WriterResult = joined?;
        latencies.add(&result.latencies)?;
        errors += result.errors;
        last_answer = last_answer.max(result.last_answer);
    }
    // The window lasts until the last measured write was answered, if the writers fell behind.
    let measured_until = last_answer.map_or(schedule.end, |last: Instant| last.max(schedule.end));
    Ok(DeliveryMeasured {
        writes: latencies.len(),
        write_errors: errors,
        write_latency: Percentiles::of(&latencies),
        seconds: (measured_until - schedule.measure_from).as_secs_f64(),
        cpu: CpuTime::now()?.since(cpu_before),
        ..DeliveryMeasured::default()
    })
}

/// Prints the summary of a delivery run: human lines, then the JSON line.
///
/// # Errors
/// Never expected (the summary serializes).
fn report(setup: &Setup, measured: &DeliveryMeasured, errors: &ErrorLog) -> anyhow::Result<()> {
    let args = &setup.args;
    let summary = DeliverySummary {
        watchers: u64::from(args.watchers),
        writers: u64::from(args.writers),
        rate_target: u64::from(args.rate),
        keys: args.keys,
        value_size: args.value_size,
        node: setup.leader.clone(),
        spread: args.spread,
        ..DeliverySummary::default()
    }
    .with(measured);
    errors.show();
    println!("{}", summary.human());
    println!("{}", json_line(&summary)?);
    Ok(())
}

impl Watchers {
    /// Every watcher's delivery latencies in one histogram.
    ///
    /// # Errors
    /// Never expected (the shards have the same bounds).
    fn merged_latencies(&self) -> anyhow::Result<Histogram<u64>> {
        let mut merged = new_histogram();
        for shard in &self.shards {
            merged.add(&*shard.lock().unwrap_or_else(PoisonError::into_inner))?;
        }
        Ok(merged)
    }
}

/// What one watcher counted.
#[derive(Clone, Copy, Debug, Default)]
struct WatcherTally {
    /// Its matched events.
    counts: MatchCounts,
    /// Its broken or failed streams (`slow_watcher` apart).
    errors: u64,
}

impl std::ops::AddAssign for WatcherTally {
    fn add_assign(&mut self, other: WatcherTally) {
        self.counts += other.counts;
        self.errors += other.errors;
    }
}

/// One watcher: opens its stream (reporting on `opened`), then reads events until `finish` says it is done,
/// resuming the stream when it is cut off or breaks.
async fn watcher(
    watchers: Arc<Watchers>,
    id: usize,
    opened: mpsc::UnboundedSender<Result<(), String>>,
    mut finish: watch::Receiver<Option<Finish>>,
) -> WatcherTally {
    let path = format!("/v1/watch?prefix={WRITE_PREFIX}");
    let url = &watchers.urls[id % watchers.urls.len()];
    let first = {
        let _permit = watchers.open_gate.acquire().await;
        WatchStream::open(url, &watchers.dial, &path).await
    };
    let mut stream = match first {
        Ok(stream) => stream,
        Err(error) => {
            let _ = opened.send(Err(error.to_string()));
            return WatcherTally::default();
        }
    };
    let _ = opened.send(Ok(()));
    let mut reader = Reader {
        watchers: &watchers,
        shard: id % SHARDS,
        matcher: DeliveryMatcher::default(),
        progress: stream.start_index(),
        events: Vec::new(),
        latencies: Vec::new(),
    };
    let mut tally = WatcherTally::default();
    let mut pause = super::super::RECONNECT_PAUSE;
    loop {
        let from = match reader.read(&mut stream, &mut finish).await {
            StreamEnd::Done => break,
            StreamEnd::Fatal => {
                tally.errors += 1;
                break;
            }
            StreamEnd::Resume(from) => from,
        };
        // Open again from `from`, pausing longer after each failure, until it opens or the watcher is done.
        let resume = format!("{path}&from_index={from}");
        let reopened = loop {
            match WatchStream::open(url, &watchers.dial, &resume).await {
                Ok(stream) => break Some(stream),
                Err(error) => {
                    tally.errors += 1;
                    watchers.errors.record(&format!("watch resume at {from}: {error}"));
                }
            }
            let deadline = finish.borrow().map(|finish| finish.deadline);
            if deadline.is_some_and(|deadline| Instant::now() + pause >= deadline) {
                break None;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RESUME_PAUSE_MAX);
        };
        match reopened {
            Some(next) => stream = next,
            None => break,
        }
    }
    reader.matcher.resolve(&watchers.acks, true, |latency| reader.latencies.push(latency));
    reader.flush();
    tally.counts = reader.matcher.counts();
    tally
}

/// One watcher's reading state, kept across resumed streams.
struct Reader<'a> {
    /// What the watchers share.
    watchers: &'a Watchers,
    /// The latency shard this watcher records into.
    shard: usize,
    /// Matches events to acknowledgements.
    matcher: DeliveryMatcher,
    /// The highest index a progress event (or the watch's start) vouched for.
    progress: u64,
    /// The events of the chunk at hand (kept to reuse its allocation).
    events: Vec<StreamEvent>,
    /// Latencies not yet moved to the shard.
    latencies: Vec<u64>,
}

impl Reader<'_> {
    /// Every index up to this one was received.
    fn seen(&self) -> u64 {
        self.matcher.highest().max(self.progress)
    }

    /// Reads `stream` until the watcher is done or the stream ends.
    async fn read(&mut self, stream: &mut WatchStream, finish: &mut watch::Receiver<Option<Finish>>) -> StreamEnd {
        let far = Instant::now() + Duration::from_secs(24 * 3600);
        loop {
            let known = *finish.borrow();
            if known.is_some_and(|finish| self.seen() >= finish.highest_index) {
                return StreamEnd::Done;
            }
            let deadline = known.map_or(far, |finish| finish.deadline);
            tokio::select! {
                biased;
                next = stream.next_events(&mut self.events) => {
                    let received_us = micros_since(self.watchers.origin, Instant::now());
                    let ended = match next {
                        Ok(true) => self.chunk(received_us),
                        Ok(false) => Some(self.broken("the node ended the stream")),
                        Err(error) => Some(self.broken(&error.to_string())),
                    };
                    if let Some(end) = ended {
                        return end;
                    }
                }
                changed = finish.changed() => {
                    if changed.is_err() {
                        return StreamEnd::Done; // the run is over
                    }
                }
                () = tokio::time::sleep_until(deadline) => return StreamEnd::Done,
            }
        }
    }

    /// Handles the events of one chunk, received at `received_us`; how the stream ended, if it did.
    fn chunk(&mut self, received_us: u64) -> Option<StreamEnd> {
        let acks = &self.watchers.acks;
        let mut changes = 0;
        let mut end = None;
        for event in self.events.drain(..) {
            match event {
                StreamEvent::Change { index } => {
                    changes += 1;
                    self.matcher.received(acks, index, received_us, |latency| self.latencies.push(latency));
                }
                StreamEvent::Progress { index } => self.progress = self.progress.max(index),
                StreamEvent::SlowWatcher { resume_from } => {
                    self.watchers.slow_watcher.fetch_add(1, Ordering::Relaxed);
                    end = Some(StreamEnd::Resume(resume_from));
                }
                StreamEvent::Failed { data } => {
                    self.watchers.errors.record(&format!("watch ended: {data}"));
                    end = Some(StreamEnd::Fatal);
                }
            }
        }
        self.matcher.resolve(acks, false, |latency| self.latencies.push(latency));
        self.flush();
        self.watchers.events.fetch_add(changes, Ordering::Relaxed);
        end
    }

    /// A broken stream: recorded, and resumed after the last index seen.
    fn broken(&mut self, why: &str) -> StreamEnd {
        self.watchers.errors.record(&format!("watch: {why}"));
        StreamEnd::Resume(self.seen() + 1)
    }

    /// Moves the latencies gathered to the shard.
    fn flush(&mut self) {
        if self.latencies.is_empty() {
            return;
        }
        let mut shard = self.watchers.shards[self.shard].lock().unwrap_or_else(PoisonError::into_inner);
        for latency in self.latencies.drain(..) {
            shard.saturating_record(latency.clamp(1, LATENCY_US_MAX));
        }
    }
}

/// Prints a progress line on stderr once a second until aborted.
async fn progress(watchers: Arc<Watchers>, writers: Arc<Writers>) {
    let start = writers.schedule.start;
    let mut ticker = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let (mut last_writes, mut last_events) = (0, 0);
    loop {
        let now = ticker.tick().await;
        let writes = writers.acknowledged.load(Ordering::Relaxed);
        let events = watchers.events.load(Ordering::Relaxed);
        let phase = if now <= writers.schedule.measure_from { " (warmup)" } else { "" };
        eprintln!(
            "[{:>4.0}s] {:>7} writes/s, {:>9} events/s, {} slow_watcher, {} errors{phase}",
            (now - start).as_secs_f64(),
            writes - last_writes,
            events - last_events,
            watchers.slow_watcher.load(Ordering::Relaxed),
            watchers.errors.count()
        );
        (last_writes, last_events) = (writes, events);
    }
}
