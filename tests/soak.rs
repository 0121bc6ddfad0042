//! The soak (issue 11): mixed load through real Envoys for a configurable time, while the trust
//! changes under it and faults are injected, with **every** answer checked against what the
//! policy, the keys and the acknowledged revocations say at that moment, and resident memory
//! and open file descriptors sampled to show they level off.
//!
//! The parts live in `tests/support/soak/`.
//!
//! - Fleet ([`fleet`]): one real `redis-server` (append-only, so acknowledged revocations
//!   survive its restarts), two sessiongate replicas (`revocation.backend: redis`), each behind
//!   its own Envoy 1.40 with mTLS clients carrying SPIFFE IDs; one JWKS file both watch.
//! - Load ([`load`]): client tasks at a steady total rate, a mix of cached and new sessions,
//!   denials (out-of-scope route, too old, replay from another workload, bad signature, no
//!   token, no route), revoked sessions and sessions of a retired key, at both replicas.
//! - Schedule (here): revocations through the admin API and through SSF (alternating
//!   replicas), policy reloads (narrow the age, widen it, narrow the scope), key rotations
//!   (publish a new key, then retire the oldest), Redis stopped and restarted, replica b killed
//!   with SIGKILL and restarted (replica a never is: its curve is one process's whole run).
//! - Oracle ([`model`]): what each answer must be, from the soak's own record of what it did.
//! - Samples ([`samples`]), plot ([`plot`]) and report ([`report`]).
//!
//! `SESSIONGATE_SOAK_SECONDS` (default 40: the CI smoke) is the load's duration;
//! `SESSIONGATE_SOAK_OUT` the folder for `samples.csv`, `summary.json`, `summary.md`,
//! `plot.svg` (default: a new folder under the temp dir, printed); `SESSIONGATE_SOAK_RATE`
//! the total requests per second (default 100); `SESSIONGATE_SOAK_SEED` repeats a run's mix.
//! `scripts/soak.sh` runs it in release mode (default 30 minutes). See RELIABILITY.md.

#[path = "support/soak/mod.rs"]
mod soak;
mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use soak::fleet::{self, Fleet};
use soak::load::{self, Pool, Rng, Run, Tally, unix_ms};
use soak::model::{
    Change, Event, Fault, FaultKind, PROPAGATION_BOUND, REPLICA_NAMES, REPLICAS, Revocation, State,
    Timeline, Variant,
};
use soak::report::{self, Conducted};
use soak::samples::{self, Sample};

/// The CI smoke's load duration.
const SMOKE_SECONDS: u64 = 40;
/// Client tasks sharing the total rate.
const CLIENT_TASKS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    AdminRevoke,
    SsfRevoke,
    Reload,
    KeyStep,
    RedisRestart,
    KillReplica,
}

/// One cycle of the schedule; every kind appears within the smoke's first 30 seconds.
const CYCLE: [Action; 12] = [
    Action::AdminRevoke,
    Action::Reload,
    Action::SsfRevoke,
    Action::KeyStep,
    Action::RedisRestart,
    Action::AdminRevoke,
    Action::Reload,
    Action::KeyStep,
    Action::KillReplica,
    Action::SsfRevoke,
    Action::Reload,
    Action::AdminRevoke,
];

/// The replica that is killed; the other lives through the whole run, so its memory and file
/// descriptor curve shows whether they level off.
const KILLED_REPLICA: usize = 1;
/// The kill happens in the first cycle and then every this many cycles (about every 5 minutes
/// in a long run).
const KILL_EVERY_CYCLES: usize = 4;

/// The settings of one run.
struct Settings {
    seconds: u64,
    out: PathBuf,
    rate: f64,
    seed: u64,
    /// Pause between two actions of the schedule.
    action_every: Duration,
    /// How long Redis stays down once every replica noticed.
    outage: Duration,
    sample_every: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let seconds = var("SESSIONGATE_SOAK_SECONDS")
            .map(|v| {
                v.parse()
                    .expect("SESSIONGATE_SOAK_SECONDS: a number of seconds")
            })
            .unwrap_or(SMOKE_SECONDS);
        let out = var("SESSIONGATE_SOAK_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::temp_dir().join(format!(
                    "sessiongate-soak-{}-{}",
                    std::process::id(),
                    unix_ms()
                ))
            });
        let rate = var("SESSIONGATE_SOAK_RATE")
            .map(|v| {
                v.parse()
                    .expect("SESSIONGATE_SOAK_RATE: requests per second")
            })
            .unwrap_or(100.0);
        let seed = var("SESSIONGATE_SOAK_SEED")
            .map(|v| v.parse().expect("SESSIONGATE_SOAK_SEED: a number"))
            .unwrap_or_else(|| unix_ms() as u64);
        let short = seconds < 120;
        Settings {
            seconds,
            out,
            rate,
            seed,
            action_every: Duration::from_secs(if short { 2 } else { 6 }),
            // 3 s even in the smoke: long enough for every replica's shared connection to be
            // found broken after the restart (a 1 s outage never exposed the first-command
            // failure of issue 11, point 2).
            outage: Duration::from_secs(3),
            sample_every: Duration::from_secs(if short { 1 } else { 5 }),
        }
    }
}

#[test]
fn soak() {
    let settings = Settings::from_env();
    std::fs::create_dir_all(&settings.out).expect("create the soak's output folder");
    eprintln!(
        "soak: {} s at {} req/s, seed {}, output in {}",
        settings.seconds,
        settings.rate,
        settings.seed,
        settings.out.display()
    );
    support::run(async {
        let initial_kids = vec!["test-eddsa", "test-es256"];
        let mut fleet = Fleet::start(REPLICAS, Variant::Base, &initial_kids).await;
        let processes: Vec<fleet::Process> = fleet
            .replicas
            .iter()
            .zip(REPLICA_NAMES)
            .flat_map(|(replica, name)| replica.processes(name))
            .collect();
        let started = Instant::now();
        let run = Arc::new(Run {
            started,
            fronts: fleet.replicas.iter().map(|r| r.front()).collect(),
            pool: Mutex::new(Pool::new(&initial_kids)),
            timeline: Mutex::new(Timeline::new(State {
                variant: Variant::Base,
                trusted_kids: initial_kids.clone(),
                revocations: Vec::new(),
            })),
            tally: Mutex::new(Tally::default()),
        });
        let end = started + Duration::from_secs(settings.seconds);

        let sampler = tokio::spawn(sample(processes, started, end, settings.sample_every));
        let clients: Vec<_> = (0..CLIENT_TASKS)
            .map(|i| {
                tokio::spawn(load::drive(
                    run.clone(),
                    settings.rate / CLIENT_TASKS as f64,
                    end,
                    settings.seed.wrapping_add(i as u64 * 7919),
                ))
            })
            .collect();
        let conducted = conduct(&mut fleet, &run, &settings, end, initial_kids).await;
        for client in clients {
            client.await.expect("a load task");
        }
        let samples = sampler.await.expect("the sampler");
        let elapsed = started.elapsed().as_secs_f64();

        let summary = report::write(
            &settings.out,
            &report::Inputs {
                seconds: settings.seconds,
                elapsed_s: elapsed,
                target_rate: settings.rate,
                seed: settings.seed,
                started,
                tally: &run.tally.lock().unwrap(),
                timeline: &run.timeline.lock().unwrap(),
                conducted: &conducted,
                samples: &samples,
            },
        );
        eprintln!("{}", summary.markdown);
        eprintln!("soak: output in {}", settings.out.display());

        assert_eq!(
            summary.wrong, 0,
            "wrong answers (listed above and in summary.md)"
        );
        assert_eq!(summary.revocations_lost, 0, "revocations lost");
        let refused: Vec<_> = conducted.refused.iter().filter(|r| !r.2).collect();
        assert!(
            refused.is_empty(),
            "revocations refused while no fault was declared: {refused:?}"
        );
        for action in CYCLE {
            assert!(
                conducted
                    .actions
                    .iter()
                    .any(|(_, a)| *a == format!("{action:?}")),
                "the run never did {action:?}: make it longer"
            );
        }
        if settings.seconds as f64 >= samples::LEVEL_OFF_MIN_SECS {
            for process in &summary.level_off {
                assert!(process.within_bounds, "does not level off: {process:?}");
            }
        }
    });
}

/// Samples every process until `end`.
async fn sample(
    processes: Vec<fleet::Process>,
    started: Instant,
    end: Instant,
    every: Duration,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(every);
    while Instant::now() < end {
        tick.tick().await;
        let at_s = started.elapsed().as_secs_f64();
        for process in &processes {
            if let Some(pid) = process.pid()
                && let Some((rss_kib, fds)) = samples::read(pid)
            {
                samples.push(Sample {
                    at_s,
                    process: process.label.clone(),
                    pid,
                    rss_kib,
                    fds,
                });
            }
        }
    }
    samples
}

/// Runs the schedule until `end`: one action at a time, so at most one trust change (besides
/// refused revocations) is ever pending.
async fn conduct(
    fleet: &mut Fleet,
    run: &Run,
    settings: &Settings,
    end: Instant,
    initial_kids: Vec<&'static str>,
) -> Conducted {
    let mut conducted = Conducted::default();
    let mut rng = Rng::new(settings.seed ^ 0x5eed);
    let mut variant = Variant::Base;
    let mut reloads = 0usize;
    let mut revocations = 0usize;
    // Oldest first: a rotation retires the oldest.
    let mut published = initial_kids;
    let all_kids = ["test-eddsa", "test-es256", "test-rs256"];
    let mut step = 0usize;
    // Let the pool fill with sessions before the first change.
    tokio::time::sleep(settings.action_every).await;
    while Instant::now() + settings.action_every < end {
        let action = CYCLE[step % CYCLE.len()];
        let cycle = step / CYCLE.len();
        step += 1;
        if action == Action::KillReplica && !cycle.is_multiple_of(KILL_EVERY_CYCLES) {
            continue;
        }
        let at = run.started.elapsed().as_secs_f64();
        conducted.actions.push((at, format!("{action:?}")));
        match action {
            Action::AdminRevoke | Action::SsfRevoke => {
                revocations += 1;
                revoke(
                    fleet,
                    run,
                    &mut rng,
                    action,
                    revocations % REPLICAS,
                    &mut conducted,
                    false,
                )
                .await;
            }
            Action::Reload => {
                reloads += 1;
                variant = match reloads % 4 {
                    1 => Variant::NarrowAge,
                    3 => Variant::NarrowScope,
                    _ => Variant::Base,
                };
                let mut generations = Vec::new();
                for replica in &fleet.replicas {
                    generations.push(
                        replica
                            .metric("sessiongate_config_generation")
                            .await
                            .unwrap_or(0.0),
                    );
                }
                let event = record(run, Change::Reload(variant));
                let yaml = fleet.config(variant);
                for replica in &fleet.replicas {
                    replica.write_config(&yaml);
                }
                for (r, replica) in fleet.replicas.iter().enumerate() {
                    let applied = replica
                        .await_metric("sessiongate_config_generation", |g| g > generations[r])
                        .await;
                    applied_at(run, event, r, applied);
                }
            }
            Action::KeyStep => {
                let adding = published.len() < all_kids.len();
                let (next, field, kid) = if adding {
                    let kid = *all_kids
                        .iter()
                        .find(|k| !published.contains(k))
                        .expect("a kid to add");
                    let mut next = published.clone();
                    next.push(kid);
                    run.pool.lock().unwrap().forget_kid(kid);
                    (next, "added", kid)
                } else {
                    let kid = published[0];
                    (published[1..].to_vec(), "removed", kid)
                };
                let since = std::time::SystemTime::now() - Duration::from_millis(5);
                let event = record(run, Change::Keys(next.clone()));
                fleet.publish_keys(&next);
                for (r, replica) in fleet.replicas.iter().enumerate() {
                    let applied = replica.await_keys_changed(since, field, kid).await;
                    applied_at(run, event, r, applied);
                }
                published = next;
                run.pool.lock().unwrap().set_keys(&published);
            }
            Action::RedisRestart => {
                let fault = declare(run, FaultKind::RedisDown);
                fleet.redis.stop().await;
                for replica in &fleet.replicas {
                    replica
                        .await_metric("sessiongate_revocation_store_up", |up| up == 0.0)
                        .await;
                }
                // Refused (nothing acknowledged can be lost); if it were acknowledged, the model
                // holds sessiongate to it like any other.
                revocations += 1;
                revoke(
                    fleet,
                    run,
                    &mut rng,
                    Action::AdminRevoke,
                    revocations % REPLICAS,
                    &mut conducted,
                    true,
                )
                .await;
                tokio::time::sleep(settings.outage).await;
                fleet.redis.restart().await;
                for replica in &fleet.replicas {
                    replica
                        .await_metric("sessiongate_revocation_store_up", |up| up == 1.0)
                        .await;
                }
                end_fault(run, fault);
                // Redis is back and every replica says so: a revocation must be acknowledged.
                revocations += 1;
                revoke(
                    fleet,
                    run,
                    &mut rng,
                    Action::AdminRevoke,
                    revocations % REPLICAS,
                    &mut conducted,
                    false,
                )
                .await;
            }
            Action::KillReplica => {
                let r = KILLED_REPLICA;
                let fault = declare(run, FaultKind::ReplicaDown(r));
                let yaml = fleet.config(variant);
                fleet.replicas[r].kill_and_restart(&yaml).await;
                end_fault(run, fault);
            }
        }
        tokio::time::sleep(settings.action_every).await;
    }
    conducted
}

/// One revocation through `how` (admin API or SSF) at replica `origin`.
async fn revoke(
    fleet: &Fleet,
    run: &Run,
    rng: &mut Rng,
    how: Action,
    origin: usize,
    conducted: &mut Conducted,
    in_fault: bool,
) {
    let Some(sub) = run.pool.lock().unwrap().subject_to_revoke(rng) else {
        return;
    };
    let replica = &fleet.replicas[origin];
    let (event, result) = match how {
        Action::SsfRevoke => {
            let at_secs = unix_ms() / 1000;
            let event = record(
                run,
                Change::Revoke(Revocation {
                    sub: sub.clone(),
                    issued_before_ms: at_secs * 1000,
                }),
            );
            (
                event,
                fleet::push_session_revoked(replica, &sub, at_secs).await,
            )
        }
        _ => {
            let cutoff = unix_ms();
            let event = record(
                run,
                Change::Revoke(Revocation {
                    sub: sub.clone(),
                    issued_before_ms: cutoff,
                }),
            );
            (event, fleet::revoke_subject(replica, &sub, cutoff).await)
        }
    };
    match result {
        Ok(()) => {
            let acked = Instant::now();
            for r in 0..REPLICAS {
                applied_at(
                    run,
                    event,
                    r,
                    if r == origin {
                        acked
                    } else {
                        acked + PROPAGATION_BOUND
                    },
                );
            }
            run.pool.lock().unwrap().mark_revoked(&sub);
        }
        Err(error) => {
            let at = run.started.elapsed().as_secs_f64();
            let name = REPLICA_NAMES[origin];
            eprintln!(
                "soak: {how:?} of {sub} at replica {name} refused at {at:.3}s (fault declared: {in_fault}): {error}"
            );
            conducted.refused.push((
                at,
                format!("{how:?} {sub} at replica {name}: {error}"),
                in_fault,
            ));
        }
    }
}

/// Records a change as started now; returns its index.
fn record(run: &Run, change: Change) -> usize {
    let mut timeline = run.timeline.lock().unwrap();
    timeline.events.push(Event {
        change,
        started: Instant::now(),
        applied: [None; REPLICAS],
    });
    timeline.events.len() - 1
}

fn applied_at(run: &Run, event: usize, replica: usize, at: Instant) {
    run.timeline.lock().unwrap().events[event].applied[replica] = Some(at);
}

fn declare(run: &Run, kind: FaultKind) -> usize {
    let mut timeline = run.timeline.lock().unwrap();
    timeline.faults.push(Fault {
        kind,
        started: Instant::now(),
        ended: None,
    });
    timeline.faults.len() - 1
}

fn end_fault(run: &Run, fault: usize) {
    run.timeline.lock().unwrap().faults[fault].ended = Some(Instant::now());
}
