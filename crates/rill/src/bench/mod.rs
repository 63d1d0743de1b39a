//! `rill bench`: Rill's load generator, in the spirit of basho_bench.
//!
//! It speaks Riak's own client protocols (Protocol Buffers or HTTP), so it measures Rill and any
//! Riak-compatible server the same way. A run sets up the bucket's properties if asked, connects
//! one client per worker (spread round-robin over the targets), optionally writes every key once
//! (`--preload`) and fills the sets of the data-type operations (`--set-size`), then drives the
//! operation mix — key/value operations and counter, set and map operations — for the duration — closed loop, or at a fixed
//! rate with latencies measured from the scheduled start — and reports per-operation counts and
//! HDR-histogram latencies as a table, `summary.json`, `timeseries.csv` and `chart.svg`.
//!
//! - [`options`]: flags and the validated [`options::Config`].
//! - [`workload`]: operation mix, key, value and set-member generators.
//! - [`types`]: the bucket types of the data-type operations (checked, created if missing).
//! - [`client`]: the PB and HTTP clients.
//! - [`driver`]: setup, the preloads, the two load loops, progress.
//! - [`stats`]: histograms, counters, the per-second series.
//! - [`report`] and [`chart`]: the outputs.

mod chart;
mod client;
mod driver;
mod options;
mod report;
mod stats;
mod types;
mod workload;

pub use options::BenchArgs;

use options::Config;

/// Runs `rill bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    // A random seed of 32 bits stays exact in every JSON reader of summary.json.
    let config = Config::from_args(args, u64::from(rand::random::<u32>()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(driver::run(&config))?;
    print!("{}", report::table(&config, &result));
    eprint!("{}", report::notes(&config, &result));
    if let Some(dir) = &config.out {
        report::write_files(dir, &config, &result)?;
        eprintln!(
            "wrote {} (summary.json, timeseries.csv, chart.svg)",
            dir.display()
        );
    }
    Ok(())
}
