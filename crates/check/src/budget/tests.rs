use super::*;

const T0: u64 = 1_700_000_000_000;

fn at(ms: u64) -> UnixTime {
    UnixTime::from_millis(T0 + ms)
}

fn limits(per_caller: (u32, u32), total: (u32, u32), callers: usize) -> BudgetLimits {
    BudgetLimits {
        per_caller: Rate {
            per_second: per_caller.0,
            burst: per_caller.1,
        },
        total: Rate {
            per_second: total.0,
            burst: total.1,
        },
        callers,
    }
}

fn spiffe(name: &str) -> CallerKey {
    CallerKey::Spiffe(format!("spiffe://cluster.local/ns/shop/sa/{name}").into())
}

#[test]
fn a_caller_gets_its_burst_then_its_rate() {
    let budget = VerificationBudget::new(limits((10, 3), (1000, 1000), 100));
    let caller = spiffe("frontend");
    for _ in 0..3 {
        assert_eq!(budget.try_spend(&caller, at(0)), Ok(()));
    }
    let refused = budget.try_spend(&caller, at(0)).unwrap_err();
    assert!(refused.per_caller);
    assert_eq!(
        refused.retry_after,
        Duration::from_millis(100),
        "10/s: one per 100 ms"
    );
    assert!(budget.try_spend(&caller, at(99)).is_err());
    assert_eq!(budget.try_spend(&caller, at(100)), Ok(()));
    assert!(budget.try_spend(&caller, at(100)).is_err());
}

#[test]
fn one_caller_spending_its_budget_leaves_others_theirs() {
    let budget = VerificationBudget::new(limits((10, 2), (1000, 1000), 100));
    let (attacker, victim) = (CallerKey::Address("10.0.0.9".into()), spiffe("a"));
    while budget.try_spend(&attacker, at(0)).is_ok() {}
    assert_eq!(budget.try_spend(&victim, at(0)), Ok(()));
}

#[test]
fn the_total_caps_all_callers_together() {
    let budget = VerificationBudget::new(limits((100, 100), (10, 4), 100));
    for n in 0..4 {
        assert_eq!(budget.try_spend(&spiffe(&format!("w{n}")), at(0)), Ok(()));
    }
    let refused = budget.try_spend(&spiffe("w9"), at(0)).unwrap_err();
    assert!(!refused.per_caller);
    assert_eq!(refused.retry_after, Duration::from_millis(100));
}

#[test]
fn a_refusal_by_the_total_takes_nothing_from_the_caller() {
    let budget = VerificationBudget::new(limits((10, 2), (10, 1), 100));
    let (first, second) = (spiffe("a"), spiffe("b"));
    assert_eq!(budget.try_spend(&first, at(0)), Ok(()));
    assert!(budget.try_spend(&second, at(0)).is_err(), "total empty");
    // 100 ms later the total has one token again; `second` still has its full burst of 2.
    assert_eq!(budget.try_spend(&second, at(100)), Ok(()));
    assert_eq!(budget.try_spend(&second, at(200)), Ok(()));
}

#[test]
fn the_caller_map_is_bounded_and_quiet_callers_make_room() {
    let budget = VerificationBudget::new(limits((10, 1), (100_000, 100_000), 3));
    for n in 0..3 {
        assert_eq!(budget.try_spend(&spiffe(&format!("w{n}")), at(0)), Ok(()));
    }
    assert_eq!(budget.tracked_callers(), 3);
    // The map is full of busy callers: newcomers share the overflow bucket (burst 1).
    assert_eq!(budget.try_spend(&spiffe("new1"), at(0)), Ok(()));
    assert!(budget.try_spend(&spiffe("new2"), at(0)).is_err());
    assert_eq!(budget.tracked_callers(), 3, "never more than the bound");
    // A second later everyone's bucket is full again: the sweep makes room.
    assert_eq!(budget.try_spend(&spiffe("new2"), at(1000)), Ok(()));
    assert_eq!(budget.tracked_callers(), 1);
}

#[test]
fn a_clock_that_goes_backwards_earns_nothing() {
    let budget = VerificationBudget::new(limits((10, 1), (1000, 1000), 100));
    let caller = spiffe("a");
    assert_eq!(budget.try_spend(&caller, at(5000)), Ok(()));
    assert!(budget.try_spend(&caller, at(0)).is_err());
    assert!(budget.try_spend(&caller, at(5050)).is_err());
    assert_eq!(budget.try_spend(&caller, at(5100)), Ok(()));
}
