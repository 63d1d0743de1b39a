//! The `rill` command: run a node (`start`), administer one (`admin`), run a local cluster
//! (`dev`), load-test one (`bench`).

mod admin;
mod bench;
mod config;
mod dev;
mod start;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: profiles of the request paths showed glibc's
/// malloc/free at ~10 % of the node's CPU, and its per-thread arenas fragment under the
/// storage engine's allocation pattern.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rill",
    version,
    about = "Rill: a Riak-compatible distributed key-value database"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node in the foreground (HTTP on 127.0.0.1:8098, PB on 127.0.0.1:8087, data in ./data).
    Start(config::StartArgs),
    /// Administer a running node (bucket types, ...), like `riak admin`.
    Admin(admin::AdminArgs),
    /// Load-test a Riak-compatible server over PB or HTTP, like basho_bench.
    Bench(bench::BenchArgs),
    /// Run a local cluster of N nodes (dev1@127.0.0.1 ...) on loopback, like Riak's devrel.
    Dev(dev::DevArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Start(args) => start::run(args),
        Command::Admin(args) => admin::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Dev(args) => dev::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rill: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
