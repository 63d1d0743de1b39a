//! `rill bench` command-line options, and their validated form ([`Config`]) that the run uses and
//! `summary.json` records.
//!
//! Parsing of the small value languages (durations like `2m`, size ranges like `100-1000`, the
//! target list) lives here so that a bad flag is refused before any connection is made.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::workload::{DataType, KeyDist, OpMix};

/// Largest value size accepted: Riak's default object size limit.
const MAX_VALUE_SIZE: usize = 50 * 1024 * 1024;

/// Which Riak client protocol the workers speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Riak Protocol Buffers (port 8087).
    Pb,
    /// Riak HTTP (port 8098).
    Http,
}

impl Protocol {
    fn default_target(self) -> &'static str {
        match self {
            Protocol::Pb => "127.0.0.1:8087",
            Protocol::Http => "127.0.0.1:8098",
        }
    }
}

/// Flags of `rill bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Servers to load, `host:port` separated by commas; worker connections are spread over them
    /// round-robin [default: 127.0.0.1:8087 for pb, 127.0.0.1:8098 for http]
    #[arg(long)]
    pub targets: Option<String>,
    /// Client protocol.
    #[arg(long, value_enum, default_value = "pb")]
    pub protocol: Protocol,
    /// Length of the measured run, e.g. 30s, 2m, 1m30s.
    #[arg(long, default_value = "60s")]
    pub duration: String,
    /// Workers, each with its own connection.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Operation mix as weights: get, put, update (read-modify-write), delete; data types:
    /// counter (increment by 1), counter_fetch, set_add (one new member), set_fetch (the whole
    /// set), map_update (a counter and a register field), map_fetch.
    #[arg(long, default_value = "get=4,put=1")]
    pub mix: String,
    /// Size of the key space (keys are 0..N in decimal).
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Key distribution.
    #[arg(long, value_enum, default_value = "uniform")]
    pub key_dist: KeyDist,
    /// Value size in bytes, or a range MIN-MAX drawn uniformly.
    #[arg(long, default_value = "100")]
    pub value_size: String,
    /// Bucket to use.
    #[arg(long, default_value = "bench")]
    pub bucket: String,
    /// Existing bucket type to use (default: Riak's `default` type).
    #[arg(long)]
    pub bucket_type: Option<String>,
    /// Bucket type of the counter operations (datatype counter; created if missing).
    #[arg(long, default_value = "counters")]
    pub counter_type: String,
    /// Bucket type of the set operations (datatype set; created if missing).
    #[arg(long, default_value = "sets")]
    pub set_type: String,
    /// Bucket type of the map operations (datatype map; created if missing).
    #[arg(long, default_value = "maps")]
    pub map_type: String,
    /// Number of distinct sets set_add and set_fetch address (keys 0..N of the set type).
    #[arg(long, default_value_t = 1)]
    pub sets: u64,
    /// Before the timed run, fill every set to this many members (1000 per update, not
    /// measured), so set_add and set_fetch are measured on sets of this size.
    #[arg(long, default_value_t = 0)]
    pub set_size: u64,
    /// HTTP address of a node whose admin endpoints create and activate missing bucket types
    /// [default: the first target for http, 127.0.0.1:8098 for pb]
    #[arg(long)]
    pub admin_node: Option<String>,
    /// Set the bucket's n_val before the run.
    #[arg(long)]
    pub n_val: Option<u32>,
    /// Set the bucket's r before the run.
    #[arg(long)]
    pub r: Option<u32>,
    /// Set the bucket's w before the run.
    #[arg(long)]
    pub w: Option<u32>,
    /// Write every key once before the timed run.
    #[arg(long)]
    pub preload: bool,
    /// Fixed aggregate rate in ops/s (open loop; latency from the scheduled start time). Without
    /// it each worker issues its next operation as soon as the previous one returns.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Time to run before measuring (its operations are not in the statistics), e.g. 5s.
    #[arg(long, default_value = "0s")]
    pub warmup: String,
    /// Random seed, for a reproducible key and operation sequence [default: random].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory for summary.json, timeseries.csv and chart.svg (created if missing).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Per-operation timeout; an operation taking longer is an error.
    #[arg(long, default_value = "30s")]
    pub timeout: String,
}

/// Bucket properties to set before the run; only the given ones are sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PropsSetup {
    pub n_val: Option<u32>,
    pub r: Option<u32>,
    pub w: Option<u32>,
}

impl PropsSetup {
    /// Whether there is anything to set.
    pub fn is_empty(&self) -> bool {
        self == &PropsSetup::default()
    }
}

/// The bucket types the data-type operations use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TypeNames {
    pub counter: String,
    pub set: String,
    pub map: String,
}

impl TypeNames {
    /// The bucket type of data type `dt`.
    pub fn of(&self, dt: DataType) -> &str {
        match dt {
            DataType::Counter => &self.counter,
            DataType::Set => &self.set,
            DataType::Map => &self.map,
        }
    }
}

/// A validated benchmark configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub targets: Vec<String>,
    pub protocol: Protocol,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub concurrency: usize,
    #[serde(serialize_with = "display")]
    pub mix: OpMix,
    pub keys: u64,
    pub key_dist: KeyDist,
    pub value_size_min: usize,
    pub value_size_max: usize,
    pub bucket: String,
    pub bucket_type: Option<String>,
    /// Bucket types of the data-type operations (all three, used or not).
    pub types: TypeNames,
    pub sets: u64,
    pub set_size: u64,
    /// Where missing bucket types are created.
    pub admin_node: String,
    pub props: PropsSetup,
    pub preload: bool,
    pub rate: Option<f64>,
    #[serde(serialize_with = "secs")]
    pub warmup: Duration,
    pub seed: u64,
    #[serde(skip)]
    pub out: Option<PathBuf>,
    #[serde(serialize_with = "secs")]
    pub timeout: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn display<S: serde::Serializer>(v: &OpMix, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl Config {
    /// Validates the flags. `random_seed` is used when `--seed` was not given.
    pub fn from_args(args: BenchArgs, random_seed: u64) -> anyhow::Result<Config> {
        let targets = parse_targets(
            args.targets
                .as_deref()
                .unwrap_or(args.protocol.default_target()),
        )?;
        if args.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if args.keys == 0 {
            bail!("--keys must be at least 1");
        }
        let (value_size_min, value_size_max) = parse_size_range(&args.value_size)?;
        let mix = OpMix::parse(&args.mix)
            .map_err(anyhow::Error::msg)
            .context("--mix")?;
        if args.sets == 0 {
            bail!("--sets must be at least 1");
        }
        if args.set_size > 0 && !mix.data_types().contains(&DataType::Set) {
            bail!("--set-size fills sets for set_add and set_fetch, but --mix has neither");
        }
        let types = TypeNames {
            counter: args.counter_type,
            set: args.set_type,
            map: args.map_type,
        };
        check_types(&types, &mix.data_types())?;
        let admin_node = match args.admin_node {
            Some(node) => node,
            None => match args.protocol {
                Protocol::Http => targets[0].clone(),
                Protocol::Pb => Protocol::Http.default_target().to_owned(),
            },
        };
        check_host_port(&admin_node).context("--admin-node")?;
        if let Some(rate) = args.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            bail!("--rate must be a positive number of operations per second");
        }
        let duration = parse_duration(&args.duration).context("--duration")?;
        if duration.is_zero() {
            bail!("--duration must be positive");
        }
        let timeout = parse_duration(&args.timeout).context("--timeout")?;
        if timeout.is_zero() {
            bail!("--timeout must be positive");
        }
        Ok(Config {
            targets,
            protocol: args.protocol,
            duration,
            concurrency: args.concurrency,
            mix,
            keys: args.keys,
            key_dist: args.key_dist,
            value_size_min,
            value_size_max,
            bucket: args.bucket,
            bucket_type: args.bucket_type,
            types,
            sets: args.sets,
            set_size: args.set_size,
            admin_node,
            props: PropsSetup {
                n_val: args.n_val,
                r: args.r,
                w: args.w,
            },
            preload: args.preload,
            rate: args.rate,
            warmup: parse_duration(&args.warmup).context("--warmup")?,
            seed: args.seed.unwrap_or(random_seed),
            out: args.out,
            timeout,
        })
    }
}

/// Parses a duration: one or more `<number><unit>` parts with units `ms`, `s`, `m`, `h`
/// (`1m30s`, `500ms`, `2.5s`); a bare number means seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    if text.is_empty() {
        bail!("empty duration");
    }
    if let Ok(secs) = text.parse::<f64>() {
        return seconds(secs, text);
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let value: f64 = num
            .parse()
            .with_context(|| format!("bad number in duration {text:?}"))?;
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => bail!("bad unit {unit:?} in duration {text:?} (use ms, s, m or h)"),
        };
        total += value * scale;
        rest = next;
    }
    seconds(total, text)
}

fn seconds(secs: f64, text: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs).with_context(|| format!("bad duration {text:?}"))
}

/// Parses a value size `N` or a range `MIN-MAX`.
pub fn parse_size_range(text: &str) -> anyhow::Result<(usize, usize)> {
    let number = |s: &str| -> anyhow::Result<usize> {
        s.trim()
            .parse()
            .with_context(|| format!("bad value size {s:?}"))
    };
    let (min, max) = match text.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let n = number(text)?;
            (n, n)
        }
    };
    if min > max {
        bail!("value size range {text:?} has MIN above MAX");
    }
    if max > MAX_VALUE_SIZE {
        bail!("value size {max} exceeds the {MAX_VALUE_SIZE}-byte object limit");
    }
    Ok((min, max))
}

/// Checks the bucket types of the data types the mix uses: named, and one per data type (a
/// bucket type has a single datatype, so two data types cannot share one).
fn check_types(types: &TypeNames, used: &[DataType]) -> anyhow::Result<()> {
    for (i, &dt) in used.iter().enumerate() {
        let name = types.of(dt);
        if name.is_empty() {
            bail!("--{}-type must name a bucket type", dt.name());
        }
        if name == "default" {
            bail!(
                "--{}-type: data types cannot live in the default bucket type",
                dt.name()
            );
        }
        if let Some(&other) = used[..i].iter().find(|o| types.of(**o) == name) {
            bail!(
                "--{}-type and --{}-type both name bucket type {name:?}, but a bucket type holds one datatype",
                other.name(),
                dt.name()
            );
        }
    }
    Ok(())
}

/// Checks that `t` is `host:port`.
fn check_host_port(t: &str) -> anyhow::Result<()> {
    let port_ok = t
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        bail!("{t:?} is not host:port");
    }
    Ok(())
}

/// Parses the comma-separated `host:port` list.
pub fn parse_targets(text: &str) -> anyhow::Result<Vec<String>> {
    let targets: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if targets.is_empty() {
        bail!("--targets names no server");
    }
    for t in &targets {
        check_host_port(t).context("--targets")?;
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn config(argv: &[&str]) -> anyhow::Result<Config> {
        let mut full = vec!["bench"];
        full.extend_from_slice(argv);
        let w = Wrapper::try_parse_from(full)?;
        Config::from_args(w.args, 42)
    }

    #[test]
    fn durations_parse_in_every_unit() {
        let cases = [
            ("30s", 30_000),
            ("2m", 120_000),
            ("1m30s", 90_000),
            ("500ms", 500),
            ("1h", 3_600_000),
            ("2.5s", 2_500),
            ("7", 7_000),
            ("0s", 0),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text).unwrap(),
                Duration::from_millis(ms),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_durations_are_refused() {
        for text in ["", "s", "10x", "1.2.3s", "-5s", "m5", "10 s"] {
            assert!(parse_duration(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn value_sizes_parse_as_fixed_or_range() {
        assert_eq!(parse_size_range("100").unwrap(), (100, 100));
        assert_eq!(parse_size_range("10-2000").unwrap(), (10, 2000));
        assert!(parse_size_range("20-10").is_err());
        assert!(parse_size_range("abc").is_err());
        assert!(parse_size_range("60000000").is_err());
    }

    #[test]
    fn targets_need_host_and_port() {
        assert_eq!(
            parse_targets("127.0.0.1:8087, 127.0.0.1:8187,").unwrap(),
            vec!["127.0.0.1:8087", "127.0.0.1:8187"]
        );
        assert_eq!(parse_targets("localhost:1").unwrap(), vec!["localhost:1"]);
        for bad in ["", ",", "127.0.0.1", ":8087", "h:99999"] {
            assert!(parse_targets(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_documented_example_parses() {
        let c = config(&[
            "--targets",
            "127.0.0.1:8087,127.0.0.1:8187",
            "--protocol",
            "pb",
            "--duration",
            "60s",
            "--concurrency",
            "16",
            "--mix",
            "get=4,put=1",
            "--keys",
            "100000",
            "--key-dist",
            "pareto",
            "--value-size",
            "100",
            "--out",
            "results/",
        ])
        .unwrap();
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.duration, Duration::from_secs(60));
        assert_eq!(c.concurrency, 16);
        assert_eq!(c.key_dist, KeyDist::Pareto);
        assert_eq!((c.value_size_min, c.value_size_max), (100, 100));
        assert_eq!(c.seed, 42, "the random seed is used when none is given");
        assert!(c.props.is_empty());
    }

    #[test]
    fn default_target_follows_the_protocol() {
        assert_eq!(config(&[]).unwrap().targets, vec!["127.0.0.1:8087"]);
        assert_eq!(
            config(&["--protocol", "http"]).unwrap().targets,
            vec!["127.0.0.1:8098"]
        );
    }

    #[test]
    fn invalid_settings_are_refused() {
        for argv in [
            &["--concurrency", "0"][..],
            &["--keys", "0"],
            &["--rate", "0"],
            &["--rate", "-3"],
            &["--duration", "0s"],
            &["--mix", "get=0"],
            &["--protocol", "grpc"],
            &["--key-dist", "zipf"],
        ] {
            assert!(config(argv).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn config_serializes_durations_as_seconds_and_the_mix_as_text() {
        let c = config(&[
            "--duration",
            "2m",
            "--mix",
            "get=1,update=1",
            "--n-val",
            "3",
        ])
        .unwrap();
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["duration"], 120.0);
        assert_eq!(v["mix"], "get=1,update=1");
        assert_eq!(v["protocol"], "pb");
        assert_eq!(v["key_dist"], "uniform");
        assert_eq!(v["props"]["n_val"], 3);
        assert!(v["props"]["r"].is_null());
    }

    #[test]
    fn data_type_settings_have_defaults() {
        let c = config(&["--mix", "counter=1,set_add=1,map_update=1,set_fetch=1"]).unwrap();
        assert_eq!(
            c.mix.to_string(),
            "counter=1,set_add=1,map_update=1,set_fetch=1"
        );
        assert_eq!(
            c.types,
            TypeNames {
                counter: "counters".into(),
                set: "sets".into(),
                map: "maps".into()
            }
        );
        assert_eq!((c.sets, c.set_size), (1, 0));
        assert_eq!(
            c.admin_node, "127.0.0.1:8098",
            "pb: the default HTTP address"
        );
    }

    #[test]
    fn the_big_set_command_parses() {
        let c = config(&[
            "--protocol",
            "pb",
            "--mix",
            "set_add=1",
            "--set-size",
            "100000",
            "--sets",
            "2",
            "--set-type",
            "big",
            "--concurrency",
            "1",
            "--duration",
            "20s",
        ])
        .unwrap();
        assert_eq!((c.sets, c.set_size), (2, 100_000));
        assert_eq!(c.types.of(DataType::Set), "big");
        assert_eq!(c.types.of(DataType::Counter), "counters");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["set_size"], 100_000);
        assert_eq!(v["types"]["set"], "big");
    }

    #[test]
    fn admin_node_follows_the_protocol_unless_given() {
        let http = config(&["--protocol", "http", "--targets", "10.0.0.5:8098"]).unwrap();
        assert_eq!(http.admin_node, "10.0.0.5:8098");
        let given = config(&["--admin-node", "h:1"]).unwrap();
        assert_eq!(given.admin_node, "h:1");
    }

    #[test]
    fn bad_data_type_settings_are_refused_with_the_reason() {
        let err = |argv: &[&str]| format!("{:#}", config(argv).unwrap_err());
        assert!(err(&["--sets", "0", "--mix", "set_add=1"]).contains("--sets"));
        assert!(
            err(&["--set-size", "10", "--mix", "counter=1"]).contains("neither"),
            "a set size without set operations"
        );
        let shared = err(&[
            "--mix",
            "counter=1,set_add=1",
            "--counter-type",
            "dt",
            "--set-type",
            "dt",
        ]);
        assert!(shared.contains("--counter-type and --set-type"), "{shared}");
        assert!(err(&["--mix", "map_fetch=1", "--map-type", ""]).contains("--map-type"));
        assert!(err(&["--mix", "counter=1", "--counter-type", "default"]).contains("default"));
        assert!(err(&["--admin-node", "nohost"]).contains("--admin-node"));
        assert!(
            err(&["--mix", "set_remove=1"]).contains("set_fetch"),
            "known ops listed"
        );
        // Types of data types the mix does not use are not checked.
        assert!(config(&["--mix", "get=1", "--counter-type", "x", "--set-type", "x"]).is_ok());
    }
}
