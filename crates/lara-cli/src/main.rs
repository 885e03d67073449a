//! `lara`: unsupervised anomaly detection on multivariate time series.

mod adapt_cmds;
mod alloc_meter;
mod bench;
mod bench_adapt;
mod bench_cluster;
mod bench_detect;
mod bench_online;
mod bench_serve;
mod collate_cmds;
mod data_args;
mod demo;
mod eval;
mod inspect;
mod plot;
mod replay_cmds;
mod report;
mod serve_cmd;
mod threshold;
mod vae_cmds;
mod worker_cmd;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOC: alloc_meter::MeteredAlloc = alloc_meter::MeteredAlloc;

/// lara — anomaly detection on multivariate time series (service metrics: CPU, latency,
/// request counts, …), with honest evaluation.
///
/// Typical session:
///   lara inspect data.csv                      # what is in the file
///   lara eval --data data.csv --scores s.txt   # TSB-AD metrics of a score series
///   lara bench metrics                         # our metrics vs TSB-AD's Python, same inputs
///   lara train --data d.csv --model m.lara     # a VAE detector from the training prefix
///   lara replay --data d.csv --model m.lara --out s.csv --events e.jsonl
///                                              # row by row, causal, adapting by itself
///   lara serve --data-dir ./lara-data          # the same monitor behind an HTTP API
///
/// Data files are CSV (optionally .csv.gz) in the TSB-AD convention (feature columns,
/// optional `timestamp`, `Label`; training prefix from `..._tr_<N>_1st_<M>.csv`) or any CSV
/// with --label-column / --timestamp-column / --columns. Logs: set RUST_LOG=debug or -v.
#[derive(Parser, Debug)]
#[command(name = "lara", version, about, long_about, propagate_version = true, verbatim_doc_comment)]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a VAE detector on the training prefix of a data file; save it as one .lara file.
    Train(vae_cmds::TrainArgs),
    /// Score every row of a data file with a trained detector: score, threshold, is_anomaly,
    /// top_dims.
    Detect(vae_cmds::DetectArgs),
    /// LARA: adapt a trained detector to a new normal pattern from a few rows (e.g. 40),
    /// in milliseconds, without the old training data.
    Adapt(adapt_cmds::AdaptArgs),
    /// CoLLaTe: an LLM that reads the operators' expert documents scores the suspicious
    /// windows; its scores and the detector's are aligned and fused.
    Collate(collate_cmds::CollateArgs),
    /// The LLM backends: `lara llm fetch` downloads the local model (SmolLM2-135M GGUF,
    /// checksum-verified); `lara llm check` makes one round trip and prints latency and tokens/s.
    #[command(subcommand)]
    Llm(collate_cmds::LlmCommand),
    /// Replay a data file row by row through the online monitor, exactly as the service
    /// will: causal scores, p_anomaly, automatic pattern-change handling with LARA.
    Replay(replay_cmds::ReplayArgs),
    /// Run the anomaly-detection service: models, entities, streaming ingest with automatic
    /// adaptation, a durable embedded store, OpenAPI, Prometheus metrics; with --nats, the
    /// stateless API front of a cluster of `lara worker`s on NATS JetStream.
    Serve(serve_cmd::ServeArgs),
    /// Scale-out on NATS JetStream: a worker that owns partitions of the entities through
    /// leases, scores, adapts, publishes results and snapshots (crate lara-cluster).
    Worker(worker_cmd::WorkerArgs),
    /// The same as `lara serve --nats`: the HTTP front of a cluster on NATS JetStream that
    /// publishes ingest and controls to the broker and serves the workers' results and alarms.
    Front(worker_cmd::FrontArgs),
    /// Compute the TSB-AD metric suite (VUS-PR, AUC-PR, F1 family, affiliation) of a score
    /// series against the labels of a data file.
    Eval(eval::EvalArgs),
    /// Describe a data file: rows, columns, training prefix, anomaly ratio, period, NaNs.
    Inspect(inspect::InspectArgs),
    /// Benchmarks that print a table of ours vs. the reference on the same inputs.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Label-free alarm threshold for a score series: POT, SPOT, mean + k·σ or top-k %.
    Threshold(threshold::ThresholdArgs),
    /// Run the main job end to end on bundled data and print what it found.
    Demo(demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    restore_default_sigpipe();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match &cli.command {
        Command::Train(a) => vae_cmds::train(a),
        Command::Detect(a) => vae_cmds::detect(a),
        Command::Adapt(a) => adapt_cmds::run(a),
        Command::Collate(a) => collate_cmds::run(a),
        Command::Llm(c) => collate_cmds::llm(c),
        Command::Replay(a) => replay_cmds::run(a),
        Command::Serve(a) => serve_cmd::run(a),
        Command::Worker(a) => worker_cmd::worker(a),
        Command::Front(a) => worker_cmd::front(a),
        Command::Eval(a) => eval::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Bench(b) => bench::run(b),
        Command::Threshold(a) => threshold::run(a),
        Command::Demo(a) => demo::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Rust ignores SIGPIPE, so `lara … | head` would panic on the closed pipe; the default action
/// ends the process quietly, as command-line tools are expected to.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any thread exists; only resets a signal
    // disposition to its default.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
