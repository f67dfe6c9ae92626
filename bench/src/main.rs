//! `bench <command>`: the benchmarks behind BENCHMARKS.md. Run them through `scripts/bench`,
//! which builds in release mode first and runs them one after another.

use std::path::PathBuf;
use std::time::Duration;

use bench::{bedrock, branches, checkpoints, coldstart, latency, overhead, streaming};

const USAGE: &str = "usage: bench <command> [options]
  overhead  [--iterations N] [--warmup N]          router vs bare storage calls, round trips
  latency   [--runs N] [--warmup N] [--latencies-ms 0,2,5] [--label TEXT]
                                                    what DynamoDB's latency adds to each kind of turn
  branches  [--branches 0,4,16,64] [--turns N]       what a turn reads as its conversation grows branches
  streaming [--runs N] [--tokens N] [--gap-ms N]    time to first token and per-token lag
  checkpoints [--tokens N] [--rates 20,50,100,1000] checkpoint writes of one streamed answer per token rate
  lambda-streaming --bin-dir DIR [--runs N] [--tokens N] [--gap-ms N]
                                                    per-token lag through the chat-stream binary
  coldstart --bin-dir DIR [--functions a,b] [--runs N] [--load N] [--secret-from-moto]
                                                    cold start, warm latency, peak RSS per function
                                                    (JWT_SECRET read from Secrets Manager on moto)
  init                                              one cold init, step by step (run in a fresh process)
  bedrock-init                                      a Bedrock client's build and first calls (fresh process)";

fn option<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> anyhow::Result<T> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("{name} needs a value\n{USAGE}")),
        None => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("overhead") => runtime.block_on(overhead::run(overhead::Options {
            iterations: option(&args, "--iterations", 2000)?,
            warmup: option(&args, "--warmup", 200)?,
        })),
        Some("latency") => {
            let latencies: String = option(&args, "--latencies-ms", "0,2,5".to_owned())?;
            runtime.block_on(latency::run(latency::Options {
                runs: option(&args, "--runs", 100)?,
                warmup: option(&args, "--warmup", 10)?,
                latencies_ms: latencies
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?,
                label: option(&args, "--label", "this build".to_owned())?,
            }))
        }
        Some("branches") => {
            let branches: String = option(&args, "--branches", "0,4,16,64".to_owned())?;
            runtime.block_on(branches::run(branches::Options {
                branches: branches
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?,
                turns: option(&args, "--turns", 5)?,
            }))
        }
        Some("streaming") => runtime.block_on(streaming::run(streaming::Options {
            runs: option(&args, "--runs", 200)?,
            tokens: option(&args, "--tokens", 20)?,
            gap: Duration::from_millis(option(&args, "--gap-ms", 2)?),
        })),
        Some("checkpoints") => {
            let rates: String = option(&args, "--rates", "20,50,100,1000".to_owned())?;
            runtime.block_on(checkpoints::run(checkpoints::Options {
                tokens: option(&args, "--tokens", 1000)?,
                rates: rates.split(',').map(str::parse).collect::<Result<_, _>>()?,
            }))
        }
        Some("lambda-streaming") => {
            let bin_dir: PathBuf = option(&args, "--bin-dir", PathBuf::from("target/release"))?;
            runtime.block_on(streaming::run_lambda(
                streaming::Options {
                    runs: option(&args, "--runs", 200)?,
                    tokens: option(&args, "--tokens", 20)?,
                    gap: Duration::from_millis(option(&args, "--gap-ms", 2)?),
                },
                &bin_dir,
            ))
        }
        Some("coldstart") => {
            let bin_dir: PathBuf = option(&args, "--bin-dir", PathBuf::from("target/release"))?;
            let functions: String = option(&args, "--functions", String::new())?;
            let functions = if functions.is_empty() {
                let mut found: Vec<String> = std::fs::read_dir("functions")?
                    .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect();
                found.sort();
                found
            } else {
                functions.split(',').map(str::to_owned).collect()
            };
            runtime.block_on(coldstart::run(coldstart::Options {
                bin_dir,
                functions,
                runs: option(&args, "--runs", 20)?,
                load: option(&args, "--load", 1000)?,
                secrets: if args.iter().any(|a| a == "--secret-from-moto") {
                    coldstart::Secrets::Moto
                } else {
                    coldstart::Secrets::Variables
                },
            }))
        }
        Some("init") => runtime.block_on(coldstart::init_steps()),
        Some("bedrock-init") => runtime.block_on(bedrock::init_steps()),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}
