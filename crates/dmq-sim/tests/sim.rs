//! The simulator in CI: a fixed budget of seeds holds every invariant, every known bug
//! re-introduced by a mutation is caught within its stated budget of seeds, and one seed
//! always replays to the same trace. Deterministic: no clock, no threads, no sleeps.

use dmq_sim::{first_failure, run, Mutation, Outcome, SimConfig};

/// Seeds every CI run checks without a mutation (each is ~50 virtual seconds with faults,
/// then healing and the liveness check). A longer soak is one command:
/// `cargo run --release -p dmq-sim -- --seeds 10000`.
const CLEAN_SEEDS: u64 = 64;

/// Each mutation with the number of seeds (from seed 0) within which it must be caught. The
/// budgets hold from any starting seed in 0..1000 (see ARCHITECTURE.md, "Simulator").
const MUTATION_BUDGETS: [(Mutation, u64); 5] = [
    (Mutation::HwFromNonIsr, 2),
    (Mutation::AckBeforeHw, 5),
    (Mutation::SkipTruncation, 5),
    (Mutation::EmptyEpochLivelock, 12),
    (Mutation::IgnoreIncarnation, 16),
];

fn describe(o: &Outcome) -> String {
    let tail: Vec<String> = o
        .trace
        .iter()
        .rev()
        .take(40)
        .rev()
        .map(|e| e.to_string())
        .collect();
    format!(
        "seed {}: {:?}\nlast trace entries:\n{}\nreplay: cargo run --release -p dmq-sim -- --seed {} --trace-all",
        o.seed,
        o.violation,
        tail.join("\n"),
        o.seed
    )
}

#[test]
fn a_fixed_budget_of_seeds_holds_every_invariant() {
    let (failed, ran) = first_failure(0..CLEAN_SEEDS, &SimConfig::default());
    if let Some(o) = failed {
        panic!("invariant violated without a mutation: {}", describe(&o));
    }
    assert_eq!(ran, CLEAN_SEEDS);
}

fn caught_within_budget(mutation: Mutation) {
    let budget = MUTATION_BUDGETS
        .iter()
        .find(|(m, _)| *m == mutation)
        .map(|(_, b)| *b)
        .expect("every mutation has a budget");
    let cfg = SimConfig {
        mutation: Some(mutation),
        ..SimConfig::default()
    };
    let (failed, ran) = first_failure(0..budget, &cfg);
    let Some(o) = failed else {
        panic!(
            "mutation {} not caught within {budget} seeds",
            mutation.name()
        );
    };
    assert!(ran <= budget);
    assert!(o.violation.is_some());
}

#[test]
fn hw_from_non_isr_is_caught() {
    caught_within_budget(Mutation::HwFromNonIsr);
}

#[test]
fn ack_before_hw_is_caught() {
    caught_within_budget(Mutation::AckBeforeHw);
}

#[test]
fn skip_truncation_is_caught() {
    caught_within_budget(Mutation::SkipTruncation);
}

#[test]
fn empty_epoch_livelock_is_caught() {
    caught_within_budget(Mutation::EmptyEpochLivelock);
}

#[test]
fn ignore_incarnation_is_caught() {
    caught_within_budget(Mutation::IgnoreIncarnation);
}

#[test]
fn every_mutation_has_a_budget() {
    for m in Mutation::ALL {
        assert!(
            MUTATION_BUDGETS.iter().any(|(b, _)| *b == m),
            "{} has no budget",
            m.name()
        );
    }
}

#[test]
fn a_seed_replays_to_the_same_trace() {
    let cfg = SimConfig {
        fault_steps: 15_000,
        ..SimConfig::default()
    };
    let (a, b) = (run(7, &cfg), run(7, &cfg));
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!((a.steps, a.virtual_ms), (b.steps, b.virtual_ms));
    assert_eq!(a.trace, b.trace);
    assert_ne!(
        run(8, &cfg).trace_hash,
        a.trace_hash,
        "another seed, another run"
    );
}
