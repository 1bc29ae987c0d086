//! `dmq-sim`: runs seeds of the replication simulation and reports the first violation.
//!
//! Exit status: 0 when every invariant held for every seed; 1 when one failed (with
//! `--mutate` that is the expected outcome: the mutation was caught); 2 for bad arguments.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use dmq_sim::{run, Invariant, Mutation, Outcome, SimConfig};

#[derive(Debug, Parser)]
#[command(
    name = "dmq-sim",
    about = "Seeded deterministic simulation of DistributedMQ partition replication",
    after_help = "Exit status: 0 = every invariant held for every seed; 1 = an invariant failed \
                  (the seed and its trace are printed; with --mutate this means the mutation \
                  was caught); 2 = bad arguments."
)]
struct Args {
    /// How many seeds to run (from --seed on).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Re-introduce a known bug (see --list-mutations).
    #[arg(long)]
    mutate: Option<String>,
    /// Steps (events) of the fault phase of each seed.
    #[arg(long)]
    steps: Option<u64>,
    /// Brokers (replication factor min(3, brokers)).
    #[arg(long, default_value_t = 3)]
    brokers: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 3)]
    partitions: usize,
    /// Print the mutation names, one a line, and exit.
    #[arg(long)]
    list_mutations: bool,
    /// Print every trace entry of the (single) failing or requested seed, not only the last.
    #[arg(long)]
    trace_all: bool,
    /// Settle an unanswered or refused AlterPartition at once, as dmq-broker's ISR manager
    /// did before it was fixed (re-introduces the HW-over-a-stale-ISR bug).
    #[arg(long)]
    isr_unanswered_as_refused: bool,
    /// Do not check this invariant (repeatable), to see what its violation leads to.
    #[arg(long, value_name = "NAME")]
    skip_invariant: Vec<String>,
    /// Run every seed even after a failure; report each failing seed in one line and the
    /// first one in full.
    #[arg(long)]
    keep_going: bool,
    /// Print a line per seed.
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list_mutations {
        for m in Mutation::ALL {
            println!("{}", m.name());
        }
        return ExitCode::SUCCESS;
    }
    let mutation = match args.mutate.as_deref() {
        None => None,
        Some(name) => match Mutation::from_name(name) {
            Some(m) => Some(m),
            None => {
                eprintln!("unknown mutation {name:?}; --list-mutations names them");
                return ExitCode::from(2);
            }
        },
    };
    let mut skip_invariants = Vec::new();
    for name in &args.skip_invariant {
        match Invariant::from_name(name) {
            Some(i) => skip_invariants.push(i),
            None => {
                let names: Vec<&str> = Invariant::ALL.iter().map(|i| i.name()).collect();
                eprintln!("unknown invariant {name:?}; one of {}", names.join(", "));
                return ExitCode::from(2);
            }
        }
    }
    if args.brokers == 0 || args.partitions == 0 {
        eprintln!("--brokers and --partitions must be at least 1");
        return ExitCode::from(2);
    }
    let mut cfg = SimConfig {
        mutation,
        brokers: args.brokers,
        partitions: args.partitions,
        replication_factor: args.brokers.min(3),
        min_insync: args.brokers.min(3).min(2),
        keep_trace: args.trace_all,
        isr_unanswered_as_refused: args.isr_unanswered_as_refused,
        skip_invariants,
        ..SimConfig::default()
    };
    if let Some(steps) = args.steps {
        cfg.fault_steps = steps;
    }
    let started = Instant::now();
    let mut steps = 0u64;
    let mut ran = 0u64;
    let mut failed: Option<Outcome> = None;
    let mut failures = 0u64;
    for seed in args.seed..args.seed.saturating_add(args.seeds) {
        let outcome = run(seed, &cfg);
        ran += 1;
        steps += outcome.steps;
        if args.verbose {
            print_seed(&outcome);
        }
        if let Some(v) = &outcome.violation {
            failures += 1;
            if args.keep_going {
                println!("seed {seed} failed {v}");
            }
            if failed.is_none() {
                failed = Some(outcome);
            }
            if !args.keep_going {
                break;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let label = args.mutate.as_deref().unwrap_or("none");
    println!(
        "{ran} seed(s) from {} in {secs:.2} s: {:.1} seeds/s, {:.0} steps/s (mutation: {label})",
        args.seed,
        ran as f64 / secs,
        steps as f64 / secs
    );
    match failed {
        None => {
            match mutation {
                Some(m) => println!("every invariant held: mutation {} NOT caught", m.name()),
                None => println!("every invariant held"),
            }
            ExitCode::SUCCESS
        }
        Some(o) => {
            if args.keep_going {
                println!("{failures} of {ran} seed(s) failed");
            }
            report(&o, &args);
            ExitCode::from(1)
        }
    }
}

fn print_seed(o: &Outcome) {
    let s = &o.stats;
    println!(
        "seed {}: {} steps, {} virtual ms, {} produced, {} acked, {} crashes ({} records lost \
         to power loss), guard refused {}, converged after {:?} ms; {}",
        o.seed,
        o.steps,
        o.virtual_ms,
        s.produced,
        s.acked,
        s.crashes,
        s.records_lost_to_power_loss,
        s.guard_refusals,
        s.converged_after_ms,
        match &o.violation {
            Some(v) => v.to_string(),
            None => "ok".into(),
        }
    );
}

fn report(o: &Outcome, args: &Args) {
    let Some(v) = &o.violation else { return };
    println!("\nseed {} FAILED {}", o.seed, v);
    println!(
        "after {} steps, {} virtual ms; episodes: {:?}",
        o.steps, o.virtual_ms, o.stats.episodes
    );
    println!("trace ({} entries, oldest first):", o.trace.len());
    for e in &o.trace {
        println!("  {e}");
    }
    let mut replay = format!("cargo run --release -p dmq-sim -- --seed {}", o.seed);
    if let Some(m) = &args.mutate {
        replay.push_str(&format!(" --mutate {m}"));
    }
    if let Some(s) = args.steps {
        replay.push_str(&format!(" --steps {s}"));
    }
    if args.isr_unanswered_as_refused {
        replay.push_str(" --isr-unanswered-as-refused");
    }
    for i in &args.skip_invariant {
        replay.push_str(&format!(" --skip-invariant {i}"));
    }
    if args.brokers != 3 || args.partitions != 3 {
        replay.push_str(&format!(
            " --brokers {} --partitions {}",
            args.brokers, args.partitions
        ));
    }
    println!("replay: {replay} --trace-all");
    println!("seed {} FAILED {}", o.seed, v.invariant.name());
}
