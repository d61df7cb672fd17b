//! The `--faults` grammar (examples, errors, a parse/print round trip) and how plans are
//! assigned to devices and used up.

use aegis_sim::faults::{
    DeviceRef, DeviceSelector, Fault, FaultKind, FaultPlan, FaultRule, FaultSpec, Point, Target,
    Times,
};
use proptest::prelude::*;

fn fleet(n: usize) -> (Vec<String>, Vec<String>) {
    let ids = (0..n)
        .map(|i| format!("0200000000{:02x}", i % 256))
        .collect();
    let hosts = (0..n).map(|i| format!("esp-sim-{:03}", i + 1)).collect();
    (ids, hosts)
}

fn refs<'a>(ids: &'a [String], hosts: &'a [String]) -> Vec<DeviceRef<'a>> {
    ids.iter()
        .zip(hosts)
        .enumerate()
        .map(|(index, (id, hostname))| DeviceRef {
            index,
            id,
            hostname,
        })
        .collect()
}

#[test]
fn the_documented_example_parses() {
    let spec: FaultSpec = "drop@50%:dev=3;corrupt@1000:frac=0.1;power-loss=write:dev=esp-sim-007;\
                           busy:frac=0.05;unreachable:dev=2;slow=20KiB/s:frac=0.2;stall@30%;\
                           never-return"
        .parse()
        .unwrap();
    let r = spec.rules();
    assert_eq!(r.len(), 8);
    assert_eq!(r[0].fault, Fault::DropAt(Point::Percent(50)));
    assert_eq!(
        r[0].target,
        Target::Devices(vec![DeviceSelector::Number(3)])
    );
    assert_eq!(r[0].times, Times::Count(1));
    assert_eq!(r[1].fault, Fault::CorruptAt(Point::Byte(1000)));
    assert_eq!(r[1].target, Target::Fraction(0.1));
    assert_eq!(r[2].fault, Fault::PowerLossDuringWrite);
    assert_eq!(
        r[2].target,
        Target::Devices(vec![DeviceSelector::Name("esp-sim-007".into())])
    );
    assert_eq!(r[3].fault, Fault::Busy);
    assert_eq!(r[3].times, Times::Always);
    assert_eq!(r[4].fault, Fault::Unreachable);
    assert_eq!(r[5].fault, Fault::SlowLink(20 * 1024));
    assert_eq!(r[6].fault, Fault::StallAt(Point::Percent(30)));
    assert_eq!(r[6].target, Target::All);
    assert_eq!(r[7].fault, Fault::NeverReturn);
}

#[test]
fn every_fault_and_qualifier_form_parses() {
    let cases: &[(&str, FaultRule)] = &[
        (
            "power-loss=download@64KiB:dev=1-3,9,A1B2C3D4E5F6",
            FaultRule {
                fault: Fault::PowerLossDuringDownload(Point::Byte(65536)),
                target: Target::Devices(vec![
                    DeviceSelector::Range(1, 3),
                    DeviceSelector::Number(9),
                    DeviceSelector::Name("a1b2c3d4e5f6".into()),
                ]),
                times: Times::Count(1),
            },
        ),
        (
            "power-loss=reboot:frac=25%:times=always",
            FaultRule {
                fault: Fault::PowerLossDuringReboot,
                target: Target::Fraction(0.25),
                times: Times::Always,
            },
        ),
        (
            " busy : times=3 ",
            FaultRule {
                fault: Fault::Busy,
                target: Target::All,
                times: Times::Count(3),
            },
        ),
        (
            "slow=1MB/s",
            FaultRule {
                fault: Fault::SlowLink(1_000_000),
                target: Target::All,
                times: Times::Always,
            },
        ),
        (
            "drop@0",
            FaultRule {
                fault: Fault::DropAt(Point::Byte(0)),
                target: Target::All,
                times: Times::Count(1),
            },
        ),
    ];
    for (text, want) in cases {
        let spec: FaultSpec = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(spec.rules(), std::slice::from_ref(want), "{text}");
    }
    assert!("".parse::<FaultSpec>().unwrap().is_empty());
    assert_eq!(";busy;;".parse::<FaultSpec>().unwrap().rules().len(), 1);
}

#[test]
fn errors_name_the_rule_and_the_problem_and_show_the_grammar() {
    let cases = [
        ("busy;drop@50x", 2, "`50x` is not a point"),
        ("drop", 1, "`drop` needs a point"),
        ("drop@101%", 1, "from 0% to 100%"),
        ("explode", 1, "`explode` is not a fault"),
        ("power-loss=sometimes", 1, "not a power-loss fault"),
        ("slow=0", 1, "is not a rate"),
        ("slow", 1, "needs a rate"),
        ("busy:dev=0", 1, "numbered from 1"),
        ("busy:dev=5-2", 1, "runs backwards"),
        ("busy:dev=", 1, "lists no device"),
        ("busy:dev=1,,2", 1, "empty item"),
        ("busy:dev=a b", 1, "is not a device"),
        ("busy:frac=1.5", 1, "is not a fraction"),
        ("busy:frac=0", 1, "is not a fraction"),
        ("busy:frac=0.1:dev=2", 1, "second device choice"),
        ("busy:times=0", 1, "is not a count"),
        ("busy:times=1:times=2", 1, "given twice"),
        ("slow=1KiB/s:times=2", 1, "takes no times="),
        ("busy:when=now", 1, "`when` is not a qualifier"),
        ("busy:now", 1, "`now` is not a qualifier"),
    ];
    for (text, number, needle) in cases {
        let err = text.parse::<FaultSpec>().unwrap_err();
        assert_eq!(err.number, number, "{text}");
        let msg = err.to_string();
        assert!(msg.contains(needle), "{text}: {msg}");
        assert!(msg.starts_with(&format!("fault rule {number} `")), "{msg}");
        assert!(
            msg.contains("RULE      = FAULT"),
            "the grammar is shown: {msg}"
        );
    }
}

#[test]
fn device_selectors_match_numbers_ids_and_hostnames() {
    let (ids, hosts) = fleet(10);
    let devs = refs(&ids, &hosts);
    let spec: FaultSpec = format!("busy:dev=1,3-4,esp-sim-007,{}", ids[9].to_uppercase())
        .parse()
        .unwrap();
    let plans = spec.assign(&devs, 0);
    let busy: Vec<usize> = (0..10).filter(|&i| plans[i].busy()).collect();
    assert_eq!(busy, vec![0, 2, 3, 6, 9]);
}

#[test]
fn fractions_choose_exactly_round_f_n_devices_deterministically() {
    let (ids, hosts) = fleet(200);
    let devs = refs(&ids, &hosts);
    let spec: FaultSpec = "busy:frac=0.1;slow=10KiB/s:frac=0.25".parse().unwrap();
    let a = spec.assign(&devs, 7);
    assert_eq!(a.iter().filter(|p| p.busy()).count(), 20);
    assert_eq!(a.iter().filter(|p| p.slow_link().is_some()).count(), 50);
    // Same seed, same choice; per-device plan_for agrees with assign.
    let b = spec.assign(&devs, 7);
    for (i, d) in devs.iter().enumerate() {
        assert_eq!(a[i].busy(), b[i].busy());
        assert_eq!(spec.plan_for(*d, devs.len(), 7).busy(), a[i].busy());
    }
    // Another seed, another choice.
    let c = spec.assign(&devs, 8);
    assert!((0..200).any(|i| a[i].busy() != c[i].busy()));
    // Rounding: 5% of 10 devices rounds to 1 (0.5 rounds away from zero), 1% to none.
    let (ids, hosts) = fleet(10);
    let small = refs(&ids, &hosts);
    let one: FaultSpec = "busy:frac=5%".parse().unwrap();
    assert_eq!(one.assign(&small, 0).iter().filter(|p| p.busy()).count(), 1);
    let none: FaultSpec = "busy:frac=1%".parse().unwrap();
    assert_eq!(
        none.assign(&small, 0).iter().filter(|p| p.busy()).count(),
        0
    );
}

#[test]
fn a_later_rule_replaces_an_earlier_one_of_the_same_kind() {
    let (ids, hosts) = fleet(3);
    let devs = refs(&ids, &hosts);
    let spec: FaultSpec = "drop@10%;drop@90%:dev=2;busy".parse().unwrap();
    let plans = spec.assign(&devs, 0);
    assert_eq!(plans[0].drop_at(1000), Some(100));
    assert_eq!(plans[1].drop_at(1000), Some(900));
    assert_eq!(plans[1].faults().count(), 2);
    assert_eq!(plans[1].to_string(), "drop@90%, busy");
    assert_eq!(FaultPlan::none().to_string(), "none");
}

#[test]
fn one_shot_faults_fire_once_and_persistent_ones_always() {
    let plan = FaultPlan::of([
        Fault::DropAt(Point::Percent(50)),
        Fault::Busy,
        Fault::SlowLink(1000),
        Fault::PowerLossDuringWrite,
    ]);
    let clone = plan.clone();
    assert_eq!(plan.drop_at(200), Some(100));
    assert!(clone.fire(FaultKind::Drop), "the first drop fires");
    assert_eq!(plan.drop_at(200), None, "clones share the count: used up");
    assert!(!plan.fire(FaultKind::Drop));
    for _ in 0..100 {
        assert!(plan.fire(FaultKind::Busy));
    }
    assert!(plan.busy());
    assert_eq!(plan.slow_link(), Some(1000));
    assert!(plan.power_loss_during_write());
    assert!(plan.fire(FaultKind::PowerLossWrite));
    assert!(!plan.power_loss_during_write());
    assert!(
        !plan.fire(FaultKind::Stall),
        "a fault the plan lacks never fires"
    );

    let three = FaultPlan::with_times([(Fault::Busy, Times::Count(3))]);
    let fired = (0..10).filter(|_| three.fire(FaultKind::Busy)).count();
    assert_eq!(fired, 3);
}

#[test]
fn corruption_flips_exactly_one_byte_in_the_right_chunk_once() {
    let plan = FaultPlan::of([Fault::CorruptAt(Point::Byte(5000))]);
    let total = 10_000;
    let mut first = vec![0u8; 4096];
    assert!(!plan.corrupt_chunk(0, &mut first, total));
    assert!(first.iter().all(|&b| b == 0));
    let mut second = vec![0u8; 4096];
    assert!(plan.corrupt_chunk(4096, &mut second, total));
    assert_eq!(second.iter().filter(|&&b| b != 0).count(), 1);
    assert_eq!(second[5000 - 4096], 0xFF);
    // A resumed or retried transfer of the same chunk goes through clean.
    let mut again = vec![0u8; 4096];
    assert!(!plan.corrupt_chunk(4096, &mut again, total));
    assert!(again.iter().all(|&b| b == 0));
}

fn arb_point() -> impl Strategy<Value = Point> {
    prop_oneof![
        any::<u64>().prop_map(Point::Byte),
        (0u8..=100).prop_map(Point::Percent)
    ]
}

fn arb_fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        arb_point().prop_map(Fault::DropAt),
        arb_point().prop_map(Fault::CorruptAt),
        arb_point().prop_map(Fault::StallAt),
        arb_point().prop_map(Fault::PowerLossDuringDownload),
        Just(Fault::PowerLossDuringWrite),
        Just(Fault::PowerLossDuringReboot),
        Just(Fault::NeverReturn),
        Just(Fault::Busy),
        Just(Fault::Unreachable),
        (1u64..u64::MAX).prop_map(Fault::SlowLink),
    ]
}

fn arb_selector() -> impl Strategy<Value = DeviceSelector> {
    prop_oneof![
        (1u32..100_000).prop_map(DeviceSelector::Number),
        (1u32..1000, 0u32..1000).prop_map(|(a, d)| DeviceSelector::Range(a, a + d)),
        "[0-9a-f]{12}".prop_map(DeviceSelector::Name),
        "esp-[a-z]{1,8}-[0-9]{1,4}".prop_map(DeviceSelector::Name),
    ]
}

fn arb_rule() -> impl Strategy<Value = FaultRule> {
    let target = prop_oneof![
        Just(Target::All),
        prop::collection::vec(arb_selector(), 1..5).prop_map(Target::Devices),
        (1u32..=1000).prop_map(|m| Target::Fraction(f64::from(m) / 1000.0)),
    ];
    let times = prop_oneof![
        Just(None),
        Just(Some(Times::Always)),
        (1u32..50).prop_map(|n| Some(Times::Count(n)))
    ];
    (arb_fault(), target, times).prop_map(|(fault, target, times)| {
        let times = match (&fault, times) {
            (Fault::SlowLink(_), _) | (_, None) => fault.default_times(),
            (_, Some(t)) => t,
        };
        FaultRule {
            fault,
            target,
            times,
        }
    })
}

proptest! {
    #[test]
    fn printing_and_parsing_round_trip(rules in prop::collection::vec(arb_rule(), 0..6)) {
        let spec = FaultSpec::new(rules);
        let text = spec.to_string();
        let back: FaultSpec = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(back, spec);
    }

    #[test]
    fn the_parser_never_panics(text in "[ -~]{0,80}") {
        let _ = text.parse::<FaultSpec>();
    }

    #[test]
    fn grammar_shaped_noise_never_panics(
        parts in prop::collection::vec(
            prop_oneof![
                Just("drop@"), Just("corrupt@"), Just("power-loss="), Just("download@"),
                Just("slow="), Just(":dev="), Just(":frac="), Just(":times="), Just(";"),
                Just("%"), Just("KiB"), Just("/s"), Just(","), Just("-"), Just("1"), Just("99999999999999999999"),
                Just("0.5"), Just("busy"), Just("esp-sim-001"),
            ],
            0..12,
        )
    ) {
        let text: String = parts.concat();
        let _ = text.parse::<FaultSpec>();
    }

    #[test]
    fn points_resolve_within_the_image(p in arb_point(), total in any::<u64>()) {
        prop_assert!(p.resolve(total) <= total);
    }
}
