//! The run's record: `samples.csv`, `summary.json`, `summary.md` and `plot.svg` in the output
//! folder; the markdown is what `scripts/soak.sh` prints and RELIABILITY.md quotes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use serde_json::json;

use super::load::{Counts, Tally};
use super::model::{Change, FaultKind, REPLICA_NAMES, Timeline};
use super::plot::{self, Window};
use super::samples::{self, LevelOff, Sample};

/// What the schedule did, for the report.
#[derive(Default)]
pub struct Conducted {
    pub actions: Vec<(f64, String)>,
    /// Revocations refused: (seconds since start, how, whether a fault was declared).
    pub refused: Vec<(f64, String, bool)>,
}

pub struct Inputs<'a> {
    pub seconds: u64,
    pub elapsed_s: f64,
    pub target_rate: f64,
    pub seed: u64,
    pub started: Instant,
    pub tally: &'a Tally,
    pub timeline: &'a Timeline,
    pub conducted: &'a Conducted,
    pub samples: &'a [Sample],
}

pub struct Summary {
    pub wrong: u64,
    pub revocations_lost: u64,
    pub level_off: Vec<LevelOff>,
    pub markdown: String,
}

fn secs(started: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(started).as_secs_f64()
}

/// Milliseconds from start to the last replica's application, per kind of change.
fn apply_times(inputs: &Inputs) -> BTreeMap<&'static str, Vec<f64>> {
    let mut times: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for event in &inputs.timeline.events {
        let kind = match event.change {
            Change::Revoke(_) => "revocation acknowledged at its origin",
            Change::Reload(_) => "reload applied at both replicas",
            Change::Keys(_) => "key change applied at both replicas",
        };
        let applied: Option<Vec<Instant>> = match event.change {
            Change::Revoke(_) => event.applied.iter().flatten().min().map(|t| vec![*t]),
            _ => event.applied.iter().copied().collect(),
        };
        if let Some(applied) = applied
            && let Some(last) = applied.iter().max()
        {
            times
                .entry(kind)
                .or_default()
                .push(last.saturating_duration_since(event.started).as_secs_f64() * 1000.0);
        }
    }
    times
}

pub fn write(out: &Path, inputs: &Inputs) -> Summary {
    let tally = inputs.tally;
    let requests: u64 = tally.by_class.values().map(|c| c.requests).sum();
    let total = |f: fn(&Counts) -> u64| tally.by_class.values().map(f).sum::<u64>();
    let (exact, transition, alternative, fault, wrong) = (
        total(|c| c.exact),
        total(|c| c.in_transition),
        total(|c| c.alternative),
        total(|c| c.fail_closed_in_fault),
        total(|c| c.wrong),
    );
    let faults: Vec<(String, f64, f64)> = inputs
        .timeline
        .faults
        .iter()
        .map(|f| {
            let kind = match f.kind {
                FaultKind::RedisDown => "redis down".to_owned(),
                FaultKind::ReplicaDown(r) => {
                    format!("replica {} killed (SIGKILL)", REPLICA_NAMES[r])
                }
            };
            let end = f
                .ended
                .map_or(inputs.elapsed_s, |e| secs(inputs.started, e));
            (kind, secs(inputs.started, f.started), end)
        })
        .collect();
    let mut changes: BTreeMap<String, u64> = BTreeMap::new();
    for (_, action) in &inputs.conducted.actions {
        *changes.entry(action.clone()).or_default() += 1;
    }
    let level_off = samples::level_off(inputs.samples, inputs.elapsed_s);
    let apply = apply_times(inputs);
    let refused_outside_faults = inputs.conducted.refused.iter().filter(|r| !r.2).count();

    samples::write_csv(inputs.samples, &out.join("samples.csv"));
    let windows: Vec<Window> = faults
        .iter()
        .map(|(kind, from, to)| Window {
            from_s: *from,
            to_s: *to,
            label: kind.clone(),
        })
        .collect();
    std::fs::write(
        out.join("plot.svg"),
        plot::svg(
            inputs.samples,
            &windows,
            inputs.elapsed_s,
            &format!(
                "sessiongate soak: {} s of load, {requests} requests",
                inputs.seconds
            ),
        ),
    )
    .expect("write plot.svg");

    let json = json!({
        "seconds": inputs.seconds,
        "elapsed_s": inputs.elapsed_s,
        "seed": inputs.seed,
        "target_rate_per_s": inputs.target_rate,
        "achieved_rate_per_s": requests as f64 / inputs.seconds as f64,
        "requests": requests,
        "exact": exact,
        "in_transition": transition,
        "documented_alternative": alternative,
        "fail_closed_in_fault": fault,
        "wrong_answers": wrong,
        "revocations_lost": tally.revocations_lost,
        "transport_errors": tally.transport_errors,
        "by_class": tally.by_class,
        "answers": tally.answers,
        "actions": changes,
        "faults": faults.iter().map(|(k, f, t)| json!({"kind": k, "from_s": f, "to_s": t})).collect::<Vec<_>>(),
        "refused_revocations": inputs.conducted.refused.iter().map(|(at, what, in_fault)| json!({"at_s": at, "what": what, "fault_declared": in_fault})).collect::<Vec<_>>(),
        "apply_ms": apply,
        "level_off": level_off,
        "wrong": tally.wrong,
    });
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&json).expect("serialize summary"),
    )
    .expect("write summary.json");

    let mut md = String::new();
    let w = &mut md;
    writeln!(
        w,
        "## Soak: {} s of load (seed {})\n",
        inputs.seconds, inputs.seed
    )
    .unwrap();
    writeln!(
        w,
        "Load: **{requests} requests**, {:.1} req/s achieved (target {:.0}), through 2 Envoys to 2 sessiongate replicas.\n",
        requests as f64 / inputs.seconds as f64,
        inputs.target_rate
    )
    .unwrap();
    writeln!(
        w,
        "**Wrong answers: {wrong}. Revocations lost: {}.** Exact: {exact}; in transition (overlapping a change, either state accepted): {transition}; a denial the documentation also allows (replay at a replica without the pin, pruned revocation): {alternative}; fail-closed inside a declared fault: {fault}; transport errors: {}.\n",
        tally.revocations_lost, tally.transport_errors
    )
    .unwrap();
    writeln!(
        w,
        "| class | requests | exact | in transition | documented alternative | fail-closed in fault | wrong |"
    )
    .unwrap();
    writeln!(w, "|---|---:|---:|---:|---:|---:|---:|").unwrap();
    for (class, c) in &tally.by_class {
        writeln!(
            w,
            "| {class} | {} | {} | {} | {} | {} | {} |",
            c.requests, c.exact, c.in_transition, c.alternative, c.fail_closed_in_fault, c.wrong
        )
        .unwrap();
    }
    writeln!(
        w,
        "\nAnswers seen: {}\n",
        tally
            .answers
            .iter()
            .map(|(a, n)| format!("{a}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .unwrap();
    writeln!(
        w,
        "Trust changes and faults: {}.\n",
        changes
            .iter()
            .map(|(a, n)| format!("{a} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .unwrap();
    for (kind, times) in &apply {
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        writeln!(
            w,
            "- {kind}: {} times, median {:.1} ms, max {:.1} ms after the soak started it",
            sorted.len(),
            sorted[sorted.len() / 2],
            sorted.last().copied().unwrap_or_default()
        )
        .unwrap();
    }
    let fault_secs: f64 = faults.iter().map(|(_, f, t)| t - f).sum();
    writeln!(
        w,
        "- fault windows: {} ({:.1} s in all): {}",
        faults.len(),
        fault_secs,
        faults
            .iter()
            .map(|(k, f, t)| format!("{k} {f:.1}–{t:.1} s"))
            .collect::<Vec<_>>()
            .join("; ")
    )
    .unwrap();
    writeln!(
        w,
        "- revocations refused: {} ({} outside a declared fault)\n",
        inputs.conducted.refused.len(),
        refused_outside_faults
    )
    .unwrap();
    for (at, what, in_fault) in &inputs.conducted.refused {
        writeln!(
            w,
            "  - {at:.1} s{}: {what}",
            if *in_fault {
                " (Redis down)"
            } else {
                " (NO fault declared)"
            }
        )
        .unwrap();
    }
    writeln!(w, "\n| process | RSS max, middle third | RSS max, last third | fds max, middle third | fds max, last third | within bounds |").unwrap();
    writeln!(w, "|---|---:|---:|---:|---:|---|").unwrap();
    for l in &level_off {
        writeln!(
            w,
            "| {} | {:.1} MiB | {:.1} MiB | {} | {} | {} |",
            l.process,
            l.rss_mid_max_kib as f64 / 1024.0,
            l.rss_last_max_kib as f64 / 1024.0,
            l.fds_mid_max,
            l.fds_last_max,
            if l.within_bounds { "yes" } else { "NO" }
        )
        .unwrap();
    }
    if !tally.wrong.is_empty() {
        writeln!(w, "\nWrong answers (first 50):\n").unwrap();
        for wrong in tally.wrong.iter().take(50) {
            writeln!(w, "- {wrong}").unwrap();
        }
    }
    std::fs::write(out.join("summary.md"), &md).expect("write summary.md");
    Summary {
        wrong,
        revocations_lost: tally.revocations_lost,
        level_off,
        markdown: md,
    }
}
