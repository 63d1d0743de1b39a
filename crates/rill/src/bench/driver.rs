//! Runs a benchmark: bucket-type and bucket setup, connections, the optional preloads (every key
//! once; every set to `--set-size` members), then the timed run with a progress line once a
//! second.
//!
//! Two ways of issuing load:
//! - closed loop (default): each worker sends its next operation as soon as the previous one
//!   returns, so throughput is whatever the server sustains at that concurrency and latency is
//!   measured from the moment the request is sent;
//! - fixed-rate open loop (`--rate`): operation `k` is *due* at `start + k / rate`. Workers take
//!   the next due operation from a shared counter, wait for its time and measure latency from the
//!   scheduled time, not from when they got round to sending it. When the server falls behind,
//!   the queueing delay shows up in the latencies instead of silently lowering the offered load
//!   (coordinated omission). An operation a worker was already idly waiting for is timed from
//!   its send instead, so the timer's coarse (about 1 ms) wake-up is not billed to the server.
//!
//! A run stops at its duration or at Ctrl-C; operations already in flight finish (bounded by the
//! per-operation timeout) and are counted, so the counts match what the server processed.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::client::{ClientError, Conn, DtUpdate, Namespace};
use super::options::Config;
use super::stats::{Collector, OpSet, OpStats, Outcome, Progress, Row, SharedRecorder, lock};
use super::types;
use super::workload::{DataType, KeyGen, Keys, Op, OpMix, ValueGen, member};

/// Pause after a connection failure before the worker tries again, so a down server is not
/// hammered with connection attempts.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Spacing of progress lines and of the per-second series.
const TICK: Duration = Duration::from_secs(1);
/// Members per update of the set preload: large enough that filling a set takes few requests,
/// small enough (about 20 KB) to stay an ordinary request.
const SET_BATCH: u64 = 1000;

/// Everything a finished run measured.
pub struct RunResult {
    /// Measured operations per kind.
    pub totals: OpSet,
    /// The per-second series.
    pub series: Vec<Row>,
    /// From the end of the warmup to the last operation's completion.
    pub elapsed: Duration,
    /// Operations issued during the warmup (sent, not measured).
    pub warmup_ops: u64,
    /// Fixed-rate runs: scheduled operations never started because the run ended first.
    pub dropped: Option<u64>,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    pub preload: Option<PreloadResult>,
    pub set_preload: Option<SetPreloadResult>,
}

/// What the preload did.
pub struct PreloadResult {
    /// One PUT per key (latencies, errors).
    pub stats: OpStats,
    pub elapsed: Duration,
}

/// What the set preload did.
pub struct SetPreloadResult {
    /// Sets filled (`--sets`) and the size they were filled to (`--set-size`).
    pub sets: u64,
    pub size: u64,
    /// Members the sets already had before (a set is topped up, not refilled).
    pub existing: u64,
    /// Members added.
    pub added: u64,
    /// Sets that already had more than `size` members (left as they were).
    pub oversized: u64,
    /// One entry per adding update (latencies).
    pub updates: OpStats,
    pub elapsed: Duration,
}

/// The namespaces of a run, all in the bucket `--bucket`: the key/value one (`--bucket-type`,
/// or the default type) and one per data type in its own bucket type.
pub struct Namespaces {
    objects: Namespace,
    data_types: [Namespace; 3],
}

impl Namespaces {
    pub fn new(config: &Config) -> Namespaces {
        let bucket = Bytes::from(config.bucket.clone());
        let typed = |dt: DataType| Namespace {
            bucket: bucket.clone(),
            bucket_type: Some(Bytes::from(config.types.of(dt).to_owned())),
        };
        Namespaces {
            objects: Namespace {
                bucket: bucket.clone(),
                bucket_type: config.bucket_type.clone().map(Bytes::from),
            },
            data_types: DataType::ALL.map(typed),
        }
    }

    /// Where `op` works.
    pub fn of(&self, op: Op) -> &Namespace {
        match op.data_type() {
            Some(dt) => self.data_type(dt),
            None => &self.objects,
        }
    }

    fn data_type(&self, dt: DataType) -> &Namespace {
        let i = DataType::ALL
            .iter()
            .position(|d| *d == dt)
            .expect("every data type is in DataType::ALL");
        &self.data_types[i]
    }

    /// The namespaces the mix's operations work in.
    pub fn used(&self, mix: &OpMix) -> Vec<&Namespace> {
        let mut used: Vec<&Namespace> = Vec::new();
        if mix.has_objects() {
            used.push(&self.objects);
        }
        used.extend(mix.data_types().into_iter().map(|dt| self.data_type(dt)));
        used
    }
}

/// The time frame of a run and, for fixed-rate runs, the shared schedule position.
pub struct Schedule {
    pub start: Instant,
    pub measure_start: Instant,
    pub end: Instant,
    rate: Option<f64>,
    next_ticket: AtomicU64,
}

impl Schedule {
    fn new(start: Instant, config: &Config) -> Schedule {
        let measure_start = start + config.warmup;
        Schedule {
            start,
            measure_start,
            end: measure_start + config.duration,
            rate: config.rate,
            next_ticket: AtomicU64::new(0),
        }
    }
}

/// When, after the start of a fixed-rate run, operation `k` is due (saturating for absurdly
/// low rates).
pub fn intended_offset(k: u64, rate: f64) -> Duration {
    Duration::try_from_secs_f64(k as f64 / rate).unwrap_or(Duration::MAX)
}

/// How many operations of a fixed-rate run are due before `elapsed`: the `k` with
/// `intended_offset(k) < elapsed`. Computed against [`intended_offset`] itself so the two agree
/// exactly at the boundary despite floating point.
pub fn scheduled_before(elapsed: Duration, rate: f64) -> u64 {
    let mut n = (elapsed.as_secs_f64() * rate).ceil() as u64;
    while n > 0 && intended_offset(n - 1, rate) >= elapsed {
        n -= 1;
    }
    while intended_offset(n, rate) < elapsed {
        n += 1;
    }
    n
}

/// The instant a fixed-rate operation's latency is measured from. If it was already due when a
/// worker became free, it had been waiting on the server's earlier answers: measure from when it
/// was due. Otherwise a worker was idle, waiting for it: measure from when it was sent, so the
/// timer's overshoot (the client's doing) is not counted against the server.
fn latency_origin(due: Instant, worker_free_at: Instant, sent_at: Instant) -> Instant {
    if worker_free_at >= due { due } else { sent_at }
}

/// One worker: a connection and its own random stream.
struct Worker {
    conn: Conn,
    rng: SmallRng,
    keys: Keys,
    values: ValueGen,
    mix: OpMix,
    ns: Arc<Namespaces>,
    timeout: Duration,
    recorder: SharedRecorder,
}

impl Worker {
    /// Runs `op` on `key`; the flag says the connection failed (back off before the next one).
    async fn execute(&mut self, op: Op, key: &Bytes) -> (Outcome, bool) {
        match tokio::time::timeout(self.timeout, self.perform(op, key)).await {
            Ok(Ok(outcome)) => (outcome, false),
            Ok(Err(e)) => {
                let msg = format!("{}: {e}", self.conn.target());
                (Outcome::Error(msg), e.is_connection())
            }
            Err(_) => {
                // The request may still be in flight; its late answer must not be read as
                // the answer to the next one.
                self.conn.reset();
                let msg = format!("{}: timed out after {:?}", self.conn.target(), self.timeout);
                (Outcome::Error(msg), false)
            }
        }
    }

    async fn perform(&mut self, op: Op, key: &Bytes) -> Result<Outcome, ClientError> {
        let found = |f: bool| if f { Outcome::Ok } else { Outcome::NotFound };
        let ns = self.ns.of(op);
        let update = match op {
            Op::Get => return Ok(found(self.conn.get(ns, key).await?.found)),
            Op::Put => {
                let value = self.values.next(&mut self.rng);
                self.conn.put(ns, key, value, None).await?;
                return Ok(Outcome::Ok);
            }
            Op::Update => {
                let fetched = self.conn.get(ns, key).await?;
                let value = self.values.next(&mut self.rng);
                self.conn.put(ns, key, value, fetched.vclock).await?;
                return Ok(found(fetched.found));
            }
            Op::Delete => return Ok(found(self.conn.delete(ns, key).await?)),
            Op::CounterFetch | Op::SetFetch | Op::MapFetch => {
                return Ok(found(self.conn.dt_fetch(ns, key).await?.found));
            }
            Op::Counter => DtUpdate::Increment(1),
            Op::SetAdd => DtUpdate::AddMembers(vec![member(&mut self.rng)]),
            Op::MapUpdate => DtUpdate::Map {
                register: member(&mut self.rng),
            },
        };
        self.conn.dt_update(ns, key, &update).await?;
        Ok(Outcome::Ok)
    }

    /// Runs one setup request on the connection with the operation timeout; the error says
    /// which server failed.
    async fn setup_call<T>(
        &mut self,
        call: impl AsyncFnOnce(&mut Conn) -> Result<T, ClientError>,
    ) -> anyhow::Result<T> {
        let target = self.conn.target().to_owned();
        match tokio::time::timeout(self.timeout, call(&mut self.conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => bail!("{target}: {e}"),
            Err(_) => {
                self.conn.reset();
                bail!("{target}: timed out after {:?}", self.timeout)
            }
        }
    }

    /// Tops set `key` up to `size` members in updates of [`SET_BATCH`], counting every member
    /// found or added into `done`. Returns the members it had before and those it added.
    async fn fill_set(
        &mut self,
        key: &Bytes,
        size: u64,
        updates: &mut OpStats,
        done: &AtomicU64,
    ) -> anyhow::Result<(u64, u64)> {
        let ns = self.ns.clone();
        let ns = ns.of(Op::SetAdd);
        let existing = self
            .setup_call(async |c: &mut Conn| c.dt_fetch(ns, key).await)
            .await?
            .len as u64;
        done.fetch_add(existing.min(size), Ordering::Relaxed);
        let mut have = existing;
        while have < size {
            let batch = (size - have).min(SET_BATCH);
            let members = (0..batch).map(|_| member(&mut self.rng)).collect();
            let update = DtUpdate::AddMembers(members);
            let start = Instant::now();
            self.setup_call(async |c: &mut Conn| c.dt_update(ns, key, &update).await)
                .await?;
            updates.record(Outcome::Ok, start.elapsed());
            have += batch;
            done.fetch_add(batch, Ordering::Relaxed);
        }
        Ok((existing, have - existing))
    }

    /// A random operation on a key from the distribution.
    async fn random_op(&mut self) -> (Op, Outcome, bool) {
        let op = self.mix.pick(&mut self.rng);
        let key = self.keys.next_key(op, &mut self.rng);
        let (outcome, backoff) = self.execute(op, &key).await;
        (op, outcome, backoff)
    }
}

/// Waits for `deadline`; false if the run was stopped first.
async fn wait_until(stop: &mut watch::Receiver<bool>, deadline: Instant) -> bool {
    let signal = async {
        if stop.wait_for(|s| *s).await.is_err() {
            // No one can signal any more: only the deadline remains.
            std::future::pending::<()>().await;
        }
    };
    let stopped = tokio::select! {
        _ = tokio::time::sleep_until(deadline.into()) => false,
        _ = signal => true,
    };
    !stopped && !*stop.borrow()
}

/// Closed loop: the next operation as soon as the previous one returned.
async fn closed_loop(
    mut w: Worker,
    sched: Arc<Schedule>,
    mut stop: watch::Receiver<bool>,
) -> Worker {
    loop {
        let start = Instant::now();
        if *stop.borrow() || start >= sched.end {
            return w;
        }
        let (op, outcome, backoff) = w.random_op().await;
        let measured = start >= sched.measure_start;
        lock(&w.recorder).record(op, outcome, start.elapsed(), measured);
        if backoff && !wait_until(&mut stop, Instant::now() + RECONNECT_BACKOFF).await {
            return w;
        }
    }
}

/// Open loop: the next due operation of the shared schedule, timed from when it was due.
async fn fixed_rate(
    mut w: Worker,
    sched: Arc<Schedule>,
    rate: f64,
    mut stop: watch::Receiver<bool>,
) -> Worker {
    loop {
        let k = sched.next_ticket.fetch_add(1, Ordering::Relaxed);
        let due = sched
            .start
            .checked_add(intended_offset(k, rate))
            .unwrap_or(sched.end);
        let free_at = Instant::now();
        if due >= sched.end || free_at >= sched.end || !wait_until(&mut stop, due).await {
            return w;
        }
        let origin = latency_origin(due, free_at, Instant::now());
        let (op, outcome, backoff) = w.random_op().await;
        let measured = due >= sched.measure_start;
        lock(&w.recorder).record(op, outcome, origin.elapsed(), measured);
        if backoff && !wait_until(&mut stop, Instant::now() + RECONNECT_BACKOFF).await {
            return w;
        }
    }
}

/// Writes a progress line: in place on a terminal, one line per second otherwise.
fn progress(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = if err.is_terminal() {
        write!(err, "\r\x1b[2K{line}")
    } else {
        writeln!(err, "{line}")
    };
    let _ = err.flush();
}

/// The progress line of the timed run.
fn progress_line(elapsed_s: f64, total_s: u64, p: &Progress) -> String {
    format!(
        "[{elapsed_s:>5.1}s/{total_s}s] {:>9.0} ops/s | errors {} | p99 {:.3} ms",
        p.ops_per_sec,
        p.errors,
        p.p99_us as f64 / 1000.0
    )
}

/// Ends an in-place progress line.
fn progress_done() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

/// Runs the whole benchmark.
pub async fn run(config: &Config) -> anyhow::Result<RunResult> {
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nrill bench: interrupted, finishing operations in flight");
            let _ = stop_tx.send(true);
        }
        // Keep the sender alive: a closed channel would read as "stop" to nobody's benefit.
        std::future::pending::<()>().await;
    });
    let ns = Arc::new(Namespaces::new(config));
    // Bucket types before bucket properties: a typed bucket's properties can only be set once
    // its type is active.
    types::ensure(config).await?;
    setup_buckets(config, &ns).await?;
    let mut workers = connect_workers(config, &ns).await?;
    let preload = if config.preload {
        let (back, result) = preload(workers, config, stop.clone()).await?;
        workers = back;
        Some(result)
    } else {
        None
    };
    let set_preload = if config.set_size > 0 && !*stop.borrow() {
        let (back, result) = preload_sets(workers, config, stop.clone()).await?;
        workers = back;
        Some(result)
    } else {
        None
    };
    if *stop.borrow() {
        bail!("interrupted before the timed run");
    }
    let mut result = timed_run(workers, config, stop).await?;
    result.preload = preload;
    result.set_preload = set_preload;
    Ok(result)
}

/// Sets the requested bucket properties on every target, in every namespace the mix uses.
async fn setup_buckets(config: &Config, ns: &Namespaces) -> anyhow::Result<()> {
    if config.props.is_empty() {
        return Ok(());
    }
    for target in &config.targets {
        let mut conn = Conn::new(config.protocol, target.clone());
        for ns in ns.used(&config.mix) {
            tokio::time::timeout(config.timeout, conn.set_bucket_props(ns, &config.props))
                .await
                .map_err(|_| anyhow::anyhow!("timed out"))
                .and_then(|r| r.map_err(anyhow::Error::msg))
                .with_context(|| format!("setting bucket properties on {target}"))?;
        }
    }
    Ok(())
}

/// One connected worker per unit of concurrency, spread round-robin over the targets.
async fn connect_workers(config: &Config, ns: &Arc<Namespaces>) -> anyhow::Result<Vec<Worker>> {
    let mut seed_rng = SmallRng::seed_from_u64(config.seed);
    let values = ValueGen::new(config.value_size_min, config.value_size_max, &mut seed_rng);
    let keys = Keys::new(config.key_dist, config.keys, config.sets);
    let mut workers = Vec::with_capacity(config.concurrency);
    for i in 0..config.concurrency {
        let target = config.targets[i % config.targets.len()].clone();
        let mut conn = Conn::new(config.protocol, target.clone());
        tokio::time::timeout(config.timeout, conn.connect())
            .await
            .map_err(|_| anyhow::anyhow!("timed out"))
            .and_then(|r| r.map_err(anyhow::Error::msg))
            .with_context(|| format!("connecting to {target}"))?;
        workers.push(Worker {
            conn,
            rng: SmallRng::from_rng(&mut seed_rng),
            keys: keys.clone(),
            values: values.clone(),
            mix: config.mix.clone(),
            ns: ns.clone(),
            timeout: config.timeout,
            recorder: SharedRecorder::default(),
        });
    }
    Ok(workers)
}

/// Writes every key once, all workers sharing one sequential cursor.
async fn preload(
    workers: Vec<Worker>,
    config: &Config,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(Vec<Worker>, PreloadResult)> {
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for mut w in workers {
        let (done, next, stop, keys) = (done.clone(), next.clone(), stop.clone(), config.keys);
        tasks.spawn(async move {
            let mut stats = OpStats::default();
            while !*stop.borrow() {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= keys {
                    break;
                }
                let start = Instant::now();
                let (outcome, _) = w.execute(Op::Put, &KeyGen::key(k)).await;
                stats.record(outcome, start.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
            (w, stats)
        });
    }
    let line = |now: u64, per_sec: u64| {
        format!(
            "preload {now}/{} keys ({:.0}%), {per_sec} keys/s",
            config.keys,
            now as f64 * 100.0 / config.keys as f64,
        )
    };
    let mut back = Vec::new();
    let mut stats = OpStats::default();
    for (w, s) in join_with_progress(tasks, started, &done, line, "preload").await? {
        stats.merge(&s);
        back.push(w);
    }
    let elapsed = started.elapsed();
    progress(&format!(
        "preload {}/{} keys in {:.1}s, {} errors",
        stats.count() + stats.errors,
        config.keys,
        elapsed.as_secs_f64(),
        stats.errors
    ));
    progress_done();
    Ok((back, PreloadResult { stats, elapsed }))
}

/// Fills every set of the run (`0..sets`) to `--set-size` members before the timed run, the
/// workers taking sets from a shared cursor (one set is filled by one worker, in order: adds to
/// one set only queue behind each other on its key). An error stops the run: measuring sets of
/// an unknown size would report the wrong thing.
async fn preload_sets(
    workers: Vec<Worker>,
    config: &Config,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(Vec<Worker>, SetPreloadResult)> {
    let started = Instant::now();
    let (sets, size) = (config.sets, config.set_size);
    let goal = sets.saturating_mul(size);
    let done = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for mut w in workers {
        let (done, next, stop) = (done.clone(), next.clone(), stop.clone());
        tasks.spawn(async move {
            let mut updates = OpStats::default();
            let mut found = Vec::new();
            let mut failed = None;
            while !*stop.borrow() {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= sets {
                    break;
                }
                match w.fill_set(&KeyGen::key(k), size, &mut updates, &done).await {
                    Ok(filled) => found.push(filled),
                    Err(e) => {
                        failed = Some(e.context(format!("filling set {k}")));
                        break;
                    }
                }
            }
            (w, updates, found, failed)
        });
    }
    let line = |now: u64, per_sec: u64| {
        format!(
            "preload sets {now}/{goal} members ({:.0}%), {per_sec} members/s",
            now as f64 * 100.0 / goal.max(1) as f64,
        )
    };
    let mut back = Vec::new();
    let mut updates = OpStats::default();
    let mut found = Vec::new();
    let mut failure = None;
    for (w, u, f, failed) in join_with_progress(tasks, started, &done, line, "set preload").await? {
        updates.merge(&u);
        found.extend(f);
        failure = failure.or(failed);
        back.push(w);
    }
    if let Some(e) = failure {
        progress_done();
        return Err(e.context("set preload"));
    }
    let result = SetPreloadResult {
        sets,
        size,
        existing: found.iter().map(|(existing, _)| existing).sum(),
        added: found.iter().map(|(_, added)| added).sum(),
        oversized: found
            .iter()
            .filter(|(existing, _)| *existing > size)
            .count() as u64,
        updates,
        elapsed: started.elapsed(),
    };
    progress(&format!(
        "preload sets: {sets} x {size} members in {:.2}s ({} added)",
        result.elapsed.as_secs_f64(),
        result.added
    ));
    progress_done();
    Ok((back, result))
}

/// Waits for every preload task, printing a progress line (`line(done, per second)`) each
/// second; returns what the tasks returned.
async fn join_with_progress<T: 'static>(
    mut tasks: JoinSet<T>,
    started: Instant,
    done: &AtomicU64,
    line: impl Fn(u64, u64) -> String,
    what: &str,
) -> anyhow::Result<Vec<T>> {
    let mut ticker = tokio::time::interval_at((started + TICK).into(), TICK);
    let mut results = Vec::new();
    let mut last = 0;
    while !tasks.is_empty() {
        tokio::select! {
            _ = ticker.tick() => {
                let now = done.load(Ordering::Relaxed);
                progress(&line(now, now - last));
                last = now;
            }
            Some(joined) = tasks.join_next() => {
                results.push(joined.with_context(|| format!("{what} worker failed"))?);
            }
        }
    }
    Ok(results)
}

/// First progress tick: on the grid of whole seconds from the end of the warmup, within the
/// first second of the run.
fn first_tick(sched: &Schedule) -> Instant {
    let warmup = sched.measure_start - sched.start;
    let whole = warmup.as_secs_f64().ceil() as u64;
    sched.measure_start + TICK - Duration::from_secs(whole)
}

/// The measured run: workers, the per-second collection and the progress line.
async fn timed_run(
    workers: Vec<Worker>,
    config: &Config,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<RunResult> {
    let sched = Arc::new(Schedule::new(Instant::now(), config));
    let mut collector = Collector::new(workers.iter().map(|w| w.recorder.clone()).collect());
    let mut tasks = JoinSet::new();
    for w in workers {
        let (sched, stop) = (sched.clone(), stop.clone());
        match sched.rate {
            Some(rate) => tasks.spawn(fixed_rate(w, sched, rate, stop)),
            None => tasks.spawn(closed_loop(w, sched, stop)),
        };
    }
    let total_s = config.duration.as_secs();
    let mut ticker = tokio::time::interval_at(first_tick(&sched).into(), TICK);
    let mut last_end_s = 0.0;
    while !tasks.is_empty() {
        tokio::select! {
            at = ticker.tick() => {
                let at = at.into_std();
                if at <= sched.measure_start {
                    let ops = collector.warmup_tick(TICK.as_secs_f64());
                    let left = (sched.measure_start - at).as_secs();
                    progress(&format!("[warmup, {left}s left] {ops:.0} ops/s"));
                    continue;
                }
                let end_s = (at - sched.measure_start).as_secs_f64();
                let p = collector.tick(end_s, end_s - last_end_s);
                last_end_s = end_s;
                progress(&progress_line(end_s, total_s, &p));
            }
            Some(joined) = tasks.join_next() => {
                joined.context("benchmark worker failed")?;
            }
        }
    }
    let finished = Instant::now();
    let elapsed = finished.saturating_duration_since(sched.measure_start);
    let tail_s = elapsed.as_secs_f64() - last_end_s;
    let p = collector.tick(elapsed.as_secs_f64(), tail_s);
    // A tail of a few milliseconds (in-flight operations finishing) is not worth its own line.
    if tail_s >= 0.05 {
        progress(&progress_line(elapsed.as_secs_f64(), total_s, &p));
    }
    progress_done();
    let interrupted = *stop.borrow();
    let warmup_ops = collector.warmup_ops();
    let dropped = sched.rate.map(|rate| {
        let stopped = if interrupted { finished } else { sched.end };
        let due = scheduled_before(stopped - sched.start, rate);
        let combined = collector.totals.combined();
        due.saturating_sub(combined.count() + combined.errors + warmup_ops)
    });
    Ok(RunResult {
        totals: collector.totals,
        series: collector.series,
        elapsed,
        warmup_ops,
        dropped,
        interrupted,
        preload: None,
        set_preload: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_start_times_follow_the_rate() {
        assert_eq!(intended_offset(0, 1000.0), Duration::ZERO);
        assert_eq!(intended_offset(1, 1000.0), Duration::from_millis(1));
        assert_eq!(intended_offset(1500, 1000.0), Duration::from_millis(1500));
        assert_eq!(intended_offset(3, 4.0), Duration::from_millis(750));
        // Non-integral rates do not drift: op 3 million at 3 ops/s is due at exactly 1e6 s.
        assert_eq!(
            intended_offset(3_000_000, 3.0),
            Duration::from_secs(1_000_000)
        );
    }

    #[test]
    fn intended_start_times_are_evenly_spaced() {
        let rate = 7_919.0;
        for k in [0u64, 1, 99, 10_000, 1_234_567] {
            let gap = intended_offset(k + 1, rate) - intended_offset(k, rate);
            let expected = 1.0 / rate;
            assert!((gap.as_secs_f64() - expected).abs() < 1e-8, "k {k}");
        }
    }

    #[test]
    fn scheduled_before_counts_due_operations() {
        assert_eq!(scheduled_before(Duration::ZERO, 100.0), 0);
        assert_eq!(
            scheduled_before(Duration::from_millis(1), 100.0),
            1,
            "op 0 at 0s"
        );
        assert_eq!(
            scheduled_before(Duration::from_secs(1), 100.0),
            100,
            "ops 0..99"
        );
        assert_eq!(scheduled_before(Duration::from_millis(1005), 100.0), 101);
        assert_eq!(scheduled_before(Duration::from_secs(20), 0.5), 10);
    }

    #[test]
    fn scheduled_before_agrees_with_intended_offset() {
        for rate in [1.0, 3.0, 333.3, 12_345.6] {
            for ms in [1u64, 17, 999, 1000, 2500, 60_000] {
                let t = Duration::from_millis(ms);
                let n = scheduled_before(t, rate);
                assert!(intended_offset(n, rate) >= t, "rate {rate} t {ms}");
                assert!(
                    n == 0 || intended_offset(n - 1, rate) < t,
                    "rate {rate} t {ms}"
                );
            }
        }
    }

    #[test]
    fn overdue_operations_are_timed_from_their_schedule() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Worker freed at 15 ms for an op due at 10 ms: 5 ms of queueing count.
        assert_eq!(latency_origin(at(10), at(15), at(15)), at(10));
        // Freed exactly when due: still measured from the schedule.
        assert_eq!(latency_origin(at(10), at(10), at(10)), at(10));
        // Idle worker waited from 5 ms and the timer woke it at 11 ms: measured from the send.
        assert_eq!(latency_origin(at(10), at(5), at(11)), at(11));
    }

    fn schedule(warmup_ms: u64) -> Schedule {
        let start = Instant::now();
        let measure_start = start + Duration::from_millis(warmup_ms);
        Schedule {
            start,
            measure_start,
            end: measure_start + Duration::from_secs(10),
            rate: None,
            next_ticket: AtomicU64::new(0),
        }
    }

    #[test]
    fn progress_ticks_align_with_measurement_seconds() {
        for (warmup_ms, first_ms) in [(0, 1000), (5000, 1000), (1500, 500), (300, 300)] {
            let s = schedule(warmup_ms);
            let first = first_tick(&s);
            assert_eq!(
                first - s.start,
                Duration::from_millis(first_ms),
                "warmup {warmup_ms}"
            );
            let offset = (s.measure_start.max(first) - s.measure_start.min(first)).as_millis();
            assert_eq!(
                offset % 1000,
                0,
                "ticks are whole seconds from the measure start"
            );
        }
    }
}
