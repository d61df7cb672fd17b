//! Fault injection: what can go wrong on a simulated device, and which devices it happens to.
//!
//! - [`Fault`] is one misbehaviour (drop the download connection at a point, flip a byte in
//!   transit, lose power during download / write / reboot, never come back, answer 409, ignore
//!   triggers, a slow or stalled link).
//! - [`FaultSpec`] is the `--faults` text: a list of rules, each a fault plus the devices it
//!   applies to (by number, id, hostname, or a seeded fraction of the fleet). [`GRAMMAR`] is its
//!   reference; parse errors name the rule and the exact problem.
//! - [`FaultPlan`] is what one device's runtime consults: the faults assigned to it, each with
//!   the number of times it may still fire.
//!
//! # One-shot and persistent faults
//!
//! Events fire a limited number of times (`times=N` in the spec), conditions hold for ever:
//!
//! | fault | default | the runtime asks | and, when it happens, calls |
//! | --- | --- | --- | --- |
//! | `drop@P` | once | [`FaultPlan::drop_at`] | `fire(FaultKind::Drop)` |
//! | `corrupt@P` | once | [`FaultPlan::corrupt_at`] / [`FaultPlan::corrupt_chunk`] | (`corrupt_chunk` fires itself) |
//! | `stall@P` | once | [`FaultPlan::stall_at`] | `fire(FaultKind::Stall)` |
//! | `power-loss=download@P` | once | [`FaultPlan::power_loss_during_download`] | `fire(FaultKind::PowerLossDownload)` |
//! | `power-loss=write` | once | `fire(FaultKind::PowerLossWrite)` | |
//! | `power-loss=reboot` | once | `fire(FaultKind::PowerLossReboot)` | |
//! | `never-return` | once | `fire(FaultKind::NeverReturn)` | |
//! | `busy` | always | `fire(FaultKind::Busy)` | |
//! | `unreachable` | always | `fire(FaultKind::Unreachable)` | |
//! | `slow=R` | always (a property of the link) | [`FaultPlan::slow_link`] | |
//!
//! So by default a dropped download is dropped once and the device's Range resume then
//! completes it, and a corrupted transfer fails once and a retried deployment succeeds;
//! `times=always` makes a fault permanent, `times=3` makes `busy` answer 409 three times and
//! then accept. The counts live in memory: restarting the simulator re-arms every fault.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// The grammar text, as a literal (so [`HELP`] can be built from it at compile time).
macro_rules! grammar {
    () => {
        "\
SPEC      = RULE { ';' RULE }
RULE      = FAULT { ':' QUALIFIER }            (no qualifier: every device)
FAULT     = drop@POINT                 close the download connection at POINT
          | corrupt@POINT              flip the byte at POINT in transit (hash mismatch)
          | stall@POINT                stop sending at POINT, keep the connection open
          | power-loss=download@POINT  power cut while the download reaches POINT
          | power-loss=write           power cut while committing the new slot (otadata)
          | power-loss=reboot          power cut while the new image boots (before it confirms)
          | never-return               go silent for good after the next reboot
          | busy                       answer triggers with 409 busy
          | unreachable                never answer triggers (connection left hanging)
          | slow=RATE                  cap the download bandwidth
QUALIFIER = dev=DEVICES | frac=FRACTION | times=(N|always)
POINT     = a byte offset (1000, 64KiB, 1MiB) or a percentage of the image (50%)
RATE      = bytes per second (20KiB/s, 1MB/s, 5000)
DEVICES   = comma list of device numbers (3), ranges (1-10), ids (a1b2c3d4e5f6) or
            hostnames (esp-sim-007); device 1 is the first one (esp-sim-001)
FRACTION  = 0.1 or 10%: exactly round(FRACTION x fleet size) devices, chosen by --seed
times     = how often the fault fires: default once, except busy and unreachable (always)

Example: 'drop@50%:dev=3;corrupt@1000:frac=0.1;power-loss=write:dev=esp-sim-007;
          busy:frac=0.05:times=2;slow=20KiB/s:frac=0.2;stall@30%;never-return:dev=9'"
    };
}

/// The `--faults` grammar, shown with every parse error.
pub const GRAMMAR: &str = grammar!();

/// The long help of `aegis sim --faults`: what the option does, then the grammar.
pub const HELP: &str = concat!(
    "Fault injection: what goes wrong on which devices. Rules are separated by ';'; each is a \
     fault, then optional qualifiers saying which devices (default: all) and how often it \
     fires (default: once, except busy and unreachable). For one device, a later rule of the \
     same kind replaces an earlier one; fleet-file rules come first, --faults rules after.\n\n",
    grammar!()
);

/// A place in a transfer: a byte offset or a percentage of the image size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Offset in bytes from the start of the image.
    Byte(u64),
    /// Percentage (0-100) of the image size.
    Percent(u8),
}

impl Point {
    /// The byte offset this point names in an image of `total` bytes, at most `total` (a
    /// point at the very end never fires mid-transfer).
    pub fn resolve(&self, total: u64) -> u64 {
        match *self {
            Point::Byte(b) => b.min(total),
            Point::Percent(p) => {
                let off = u128::from(total) * u128::from(p.min(100)) / 100;
                u64::try_from(off).unwrap_or(total)
            }
        }
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Point::Byte(b) => write!(f, "{b}"),
            Point::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for Point {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(pct) = s.strip_suffix('%') {
            return match pct.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(Point::Percent(p)),
                _ => Err(format!(
                    "`{s}` is not a percentage: use a whole number from 0% to 100%"
                )),
            };
        }
        parse_bytes(s).map(Point::Byte).map_err(|_| {
            format!("`{s}` is not a point: use a byte offset (1000, 64KiB) or a percentage (50%)")
        })
    }
}

/// One misbehaviour of a simulated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Close the download connection when the transfer reaches the point.
    DropAt(Point),
    /// Flip the byte at the point while it is in transit, so the hash check fails.
    CorruptAt(Point),
    /// Lose power while the download reaches the point (the slot is half written).
    PowerLossDuringDownload(Point),
    /// Lose power while committing the downloaded image (after the slot is written, while
    /// otadata is being updated).
    PowerLossDuringWrite,
    /// Lose power while the new image boots, before it marks itself valid.
    PowerLossDuringReboot,
    /// Never come back after the next reboot.
    NeverReturn,
    /// Answer triggers with 409 busy.
    Busy,
    /// Never answer triggers (accept the connection, send nothing).
    Unreachable,
    /// Cap the download bandwidth, in bytes per second.
    SlowLink(u64),
    /// Stop receiving when the transfer reaches the point, keeping the connection open.
    StallAt(Point),
}

/// The kind of a [`Fault`], without its parameter: what [`FaultPlan::fire`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    Drop,
    Corrupt,
    PowerLossDownload,
    PowerLossWrite,
    PowerLossReboot,
    NeverReturn,
    Busy,
    Unreachable,
    SlowLink,
    Stall,
}

impl Fault {
    /// The kind of this fault.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::DropAt(_) => FaultKind::Drop,
            Fault::CorruptAt(_) => FaultKind::Corrupt,
            Fault::PowerLossDuringDownload(_) => FaultKind::PowerLossDownload,
            Fault::PowerLossDuringWrite => FaultKind::PowerLossWrite,
            Fault::PowerLossDuringReboot => FaultKind::PowerLossReboot,
            Fault::NeverReturn => FaultKind::NeverReturn,
            Fault::Busy => FaultKind::Busy,
            Fault::Unreachable => FaultKind::Unreachable,
            Fault::SlowLink(_) => FaultKind::SlowLink,
            Fault::StallAt(_) => FaultKind::Stall,
        }
    }

    /// How often the fault fires when the spec does not say (`times=`).
    pub fn default_times(&self) -> Times {
        match self.kind() {
            FaultKind::Busy | FaultKind::Unreachable | FaultKind::SlowLink => Times::Always,
            _ => Times::Count(1),
        }
    }

    fn point(&self) -> Option<Point> {
        match self {
            Fault::DropAt(p)
            | Fault::CorruptAt(p)
            | Fault::PowerLossDuringDownload(p)
            | Fault::StallAt(p) => Some(*p),
            _ => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::DropAt(p) => write!(f, "drop@{p}"),
            Fault::CorruptAt(p) => write!(f, "corrupt@{p}"),
            Fault::StallAt(p) => write!(f, "stall@{p}"),
            Fault::PowerLossDuringDownload(p) => write!(f, "power-loss=download@{p}"),
            Fault::PowerLossDuringWrite => f.write_str("power-loss=write"),
            Fault::PowerLossDuringReboot => f.write_str("power-loss=reboot"),
            Fault::NeverReturn => f.write_str("never-return"),
            Fault::Busy => f.write_str("busy"),
            Fault::Unreachable => f.write_str("unreachable"),
            Fault::SlowLink(r) => write!(f, "slow={r}/s"),
        }
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let at = |rest: &str, make: fn(Point) -> Fault| -> Result<Fault, String> {
            rest.parse::<Point>().map(make)
        };
        if let Some(rest) = s.strip_prefix("drop@") {
            return at(rest, Fault::DropAt);
        }
        if let Some(rest) = s.strip_prefix("corrupt@") {
            return at(rest, Fault::CorruptAt);
        }
        if let Some(rest) = s.strip_prefix("stall@") {
            return at(rest, Fault::StallAt);
        }
        if let Some(rest) = s.strip_prefix("power-loss=download@") {
            return at(rest, Fault::PowerLossDuringDownload);
        }
        if let Some(rest) = s.strip_prefix("slow=") {
            return parse_rate(rest).map(Fault::SlowLink);
        }
        match s {
            "power-loss=write" => Ok(Fault::PowerLossDuringWrite),
            "power-loss=reboot" => Ok(Fault::PowerLossDuringReboot),
            "never-return" => Ok(Fault::NeverReturn),
            "busy" => Ok(Fault::Busy),
            "unreachable" => Ok(Fault::Unreachable),
            "" => Err("the fault is missing".to_string()),
            _ if s.starts_with("power-loss") => Err(format!(
                "`{s}` is not a power-loss fault: use power-loss=download@POINT, \
                 power-loss=write or power-loss=reboot"
            )),
            _ if ["drop", "corrupt", "stall"].contains(&s) => Err(format!(
                "`{s}` needs a point: {s}@1000, {s}@64KiB or {s}@50%"
            )),
            "slow" => Err("`slow` needs a rate: slow=20KiB/s".to_string()),
            _ => Err(format!(
                "`{s}` is not a fault: use drop@, corrupt@, stall@, power-loss=..., \
                 never-return, busy, unreachable or slow="
            )),
        }
    }
}

/// How many times a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    /// Every time the situation arises.
    Always,
    /// At most this many times (at least 1).
    Count(u32),
}

impl fmt::Display for Times {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Times::Always => f.write_str("always"),
            Times::Count(n) => write!(f, "{n}"),
        }
    }
}

/// One item of a `dev=` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSelector {
    /// Device number, 1-based (device 1 is `esp-sim-001`).
    Number(u32),
    /// Device numbers `from..=to`, 1-based.
    Range(u32, u32),
    /// A device id (12 hex digits) or hostname.
    Name(String),
}

impl DeviceSelector {
    fn matches(&self, dev: &DeviceRef<'_>) -> bool {
        let number = dev.index.saturating_add(1);
        match self {
            DeviceSelector::Number(n) => usize::try_from(*n).is_ok_and(|n| n == number),
            DeviceSelector::Range(a, b) => {
                let (Ok(a), Ok(b)) = (usize::try_from(*a), usize::try_from(*b)) else {
                    return false;
                };
                (a..=b).contains(&number)
            }
            DeviceSelector::Name(name) => {
                name.eq_ignore_ascii_case(dev.id) || name.eq_ignore_ascii_case(dev.hostname)
            }
        }
    }
}

impl fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSelector::Number(n) => write!(f, "{n}"),
            DeviceSelector::Range(a, b) => write!(f, "{a}-{b}"),
            DeviceSelector::Name(s) => f.write_str(s),
        }
    }
}

/// Which devices a rule applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Every device.
    All,
    /// The listed devices.
    Devices(Vec<DeviceSelector>),
    /// Exactly `round(fraction x fleet size)` devices, chosen by the seed.
    Fraction(f64),
}

/// One rule of a spec: a fault, the devices it applies to, and how often it fires.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    pub fault: Fault,
    pub target: Target,
    pub times: Times,
}

impl fmt::Display for FaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.fault)?;
        match &self.target {
            Target::All => {}
            Target::Devices(list) => {
                f.write_str(":dev=")?;
                for (i, d) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{d}")?;
                }
            }
            Target::Fraction(x) => write!(f, ":frac={x}")?,
        }
        if self.times != self.fault.default_times() {
            write!(f, ":times={}", self.times)?;
        }
        Ok(())
    }
}

/// A `--faults` rule that cannot be parsed: which one, and what exactly is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault rule {number} `{rule}` is invalid: {reason}.\n\nThe --faults grammar:\n{GRAMMAR}")]
pub struct FaultSpecError {
    /// 1-based position of the rule in the spec.
    pub number: usize,
    /// The rule's text.
    pub rule: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed `--faults` spec: rules applied in order (for one device, a later rule replaces an
/// earlier rule of the same fault kind).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultSpec {
    rules: Vec<FaultRule>,
}

/// A device as a fault spec sees it.
#[derive(Debug, Clone, Copy)]
pub struct DeviceRef<'a> {
    /// Position in the fleet, 0-based (`dev=1` is index 0).
    pub index: usize,
    /// The 12-hex-digit device id.
    pub id: &'a str,
    /// The hostname, e.g. `esp-sim-001`.
    pub hostname: &'a str,
}

impl FaultSpec {
    /// A spec with these rules.
    pub fn new(rules: Vec<FaultRule>) -> Self {
        Self { rules }
    }

    /// The rules, in spec order.
    pub fn rules(&self) -> &[FaultRule] {
        &self.rules
    }

    /// Whether the spec has no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// This spec followed by `other`'s rules (so `other` wins where both assign a kind).
    pub fn merged(mut self, other: &FaultSpec) -> Self {
        self.rules.extend(other.rules.iter().cloned());
        self
    }

    /// The plan of one device in a fleet of `fleet_size`. Deterministic: the same spec,
    /// device, fleet size and seed always give the same plan.
    pub fn plan_for(&self, device: DeviceRef<'_>, fleet_size: usize, seed: u64) -> FaultPlan {
        self.plan(device, |rule_no, frac| {
            let k = fraction_count(frac, fleet_size);
            let mine = rank_key(seed, rule_no, device.index);
            let ahead = (0..fleet_size)
                .filter(|&j| rank_key(seed, rule_no, j) < mine)
                .count();
            device.index < fleet_size && ahead < k
        })
    }

    /// The plans of a whole fleet, in the order of `devices` (the same result as calling
    /// [`plan_for`](Self::plan_for) for each, faster).
    pub fn assign(&self, devices: &[DeviceRef<'_>], seed: u64) -> Vec<FaultPlan> {
        let n = devices.len();
        // For each fraction rule, the set of chosen indices.
        let chosen: Vec<Option<Vec<bool>>> = self
            .rules
            .iter()
            .enumerate()
            .map(|(rule_no, rule)| match rule.target {
                Target::Fraction(frac) => {
                    let mut order: Vec<usize> = (0..n).collect();
                    order.sort_by_key(|&i| rank_key(seed, rule_no, i));
                    let mut set = vec![false; n];
                    for &i in order.iter().take(fraction_count(frac, n)) {
                        set[i] = true;
                    }
                    Some(set)
                }
                _ => None,
            })
            .collect();
        devices
            .iter()
            .map(|d| {
                self.plan(*d, |rule_no, _| {
                    chosen[rule_no]
                        .as_ref()
                        .and_then(|set| set.get(d.index).copied())
                        .unwrap_or(false)
                })
            })
            .collect()
    }

    fn plan(&self, device: DeviceRef<'_>, in_fraction: impl Fn(usize, f64) -> bool) -> FaultPlan {
        let mut armed: Vec<Armed> = Vec::new();
        for (rule_no, rule) in self.rules.iter().enumerate() {
            let applies = match &rule.target {
                Target::All => true,
                Target::Devices(list) => list.iter().any(|s| s.matches(&device)),
                Target::Fraction(frac) => in_fraction(rule_no, *frac),
            };
            if !applies {
                continue;
            }
            armed.retain(|a| a.fault.kind() != rule.fault.kind());
            armed.push(Armed::new(rule.fault.clone(), rule.times));
        }
        FaultPlan {
            armed: armed.into(),
        }
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(s: &str) -> Result<Self, FaultSpecError> {
        let mut rules = Vec::new();
        for (i, text) in s.split(';').enumerate() {
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let rule = parse_rule(text).map_err(|reason| FaultSpecError {
                number: i + 1,
                rule: text.to_string(),
                reason,
            })?;
            rules.push(rule);
        }
        Ok(Self { rules })
    }
}

fn parse_rule(text: &str) -> Result<FaultRule, String> {
    let mut parts = text.split(':');
    let fault: Fault = parts.next().unwrap_or_default().parse()?;
    let mut target: Option<Target> = None;
    let mut times: Option<Times> = None;
    for q in parts {
        let q = q.trim();
        let (key, value) = q
            .split_once('=')
            .ok_or_else(|| format!("`{q}` is not a qualifier: use dev=, frac= or times="))?;
        let (key, value) = (key.trim(), value.trim());
        match key {
            "dev" | "frac" if target.is_some() => {
                return Err(format!(
                    "`{q}` is a second device choice: give one dev= or one frac= per rule"
                ));
            }
            "dev" => target = Some(Target::Devices(parse_devices(value)?)),
            "frac" => target = Some(Target::Fraction(parse_fraction(value)?)),
            "times" if times.is_some() => return Err("times= is given twice".to_string()),
            "times" => {
                if fault.kind() == FaultKind::SlowLink {
                    return Err(
                        "slow= is a property of the link and takes no times= qualifier".to_string(),
                    );
                }
                times = Some(parse_times(value)?);
            }
            _ => {
                return Err(format!(
                    "`{key}` is not a qualifier: use dev=, frac= or times="
                ));
            }
        }
    }
    let times = times.unwrap_or_else(|| fault.default_times());
    Ok(FaultRule {
        fault,
        target: target.unwrap_or(Target::All),
        times,
    })
}

fn parse_devices(value: &str) -> Result<Vec<DeviceSelector>, String> {
    if value.is_empty() {
        return Err("dev= lists no device: use dev=3, dev=1-10 or dev=esp-sim-007".to_string());
    }
    value
        .split(',')
        .map(|item| {
            let item = item.trim();
            let number = |s: &str| -> Result<u32, String> {
                match s.trim().parse::<u32>() {
                    Ok(n) if n >= 1 => Ok(n),
                    _ => Err(format!(
                        "`{s}` is not a device number: devices are numbered from 1"
                    )),
                }
            };
            let is_id = item.len() == 12 && item.bytes().all(|b| b.is_ascii_hexdigit());
            if item.is_empty() {
                Err("dev= has an empty item: separate devices with single commas".to_string())
            } else if is_id {
                Ok(DeviceSelector::Name(item.to_ascii_lowercase()))
            } else if item.bytes().all(|b| b.is_ascii_digit()) {
                number(item).map(DeviceSelector::Number)
            } else if let Some((a, b)) = item
                .split_once('-')
                .filter(|(a, b)| [a, b].iter().all(|s| s.bytes().all(|c| c.is_ascii_digit())))
            {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("the range `{item}` runs backwards: write {b}-{a}"));
                }
                Ok(DeviceSelector::Range(a, b))
            } else if item
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                Ok(DeviceSelector::Name(item.to_string()))
            } else {
                Err(format!(
                    "`{item}` is not a device: use a number (3), a range (1-10), an id \
                     (12 hex digits) or a hostname (esp-sim-007)"
                ))
            }
        })
        .collect()
}

fn parse_fraction(value: &str) -> Result<f64, String> {
    let (num, scale) = match value.strip_suffix('%') {
        Some(p) => (p.trim(), 100.0),
        None => (value, 1.0),
    };
    match num.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x / scale <= 1.0 => Ok(x / scale),
        _ => Err(format!(
            "`{value}` is not a fraction of the fleet: use a number above 0 and at most 1 \
             (0.1) or a percentage (10%)"
        )),
    }
}

fn parse_times(value: &str) -> Result<Times, String> {
    if value == "always" {
        return Ok(Times::Always);
    }
    match value.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(Times::Count(n)),
        _ => Err(format!(
            "`{value}` is not a count: use times=1 or more, or times=always"
        )),
    }
}

/// Parses `5000`, `64KiB`, `1.5MiB`, `1MB` (units: B, KB, KiB, MB, MiB, GB, GiB, any case).
fn parse_bytes(s: &str) -> Result<u64, ()> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "kib" => 1 << 10,
        "mb" | "m" => 1_000_000,
        "mib" => 1 << 20,
        "gb" | "g" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(()),
    };
    if num.is_empty() {
        return Err(());
    }
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or(());
    }
    match num.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 && x * (mult as f64) < u64::MAX as f64 => {
            Ok((x * mult as f64) as u64)
        }
        _ => Err(()),
    }
}

/// Parses a size in bytes: `5000`, `64KiB`, `1.5MiB`, `1MB` (units B, KB, KiB, MB, MiB, GB,
/// GiB, in any case); `None` when it is not one.
pub fn parse_size(s: &str) -> Option<u64> {
    parse_bytes(s).ok()
}

/// Parses a rate in bytes per second above 0: `20KiB/s`, `1MB/s`, `5000`; the error says
/// what is wrong.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let bytes = s.trim();
    let bytes = bytes.strip_suffix("/s").unwrap_or(bytes);
    match parse_bytes(bytes) {
        Ok(r) if r > 0 => Ok(r),
        _ => Err(format!(
            "`{s}` is not a rate: use bytes per second above 0, like 20KiB/s, 1MB/s or 5000"
        )),
    }
}

fn fraction_count(frac: f64, n: usize) -> usize {
    let k = (frac * n as f64).round();
    if k <= 0.0 { 0 } else { (k as usize).min(n) }
}

/// A stable pseudo-random key per (seed, rule, device) to pick fractions of the fleet.
fn rank_key(seed: u64, rule_no: usize, index: usize) -> u64 {
    let mut x = seed
        ^ (rule_no as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[derive(Debug)]
struct Armed {
    fault: Fault,
    /// Occurrences left; `u32::MAX` is "always".
    remaining: AtomicU32,
}

impl Armed {
    fn new(fault: Fault, times: Times) -> Self {
        let n = match times {
            Times::Always => u32::MAX,
            Times::Count(n) => n.min(u32::MAX - 1),
        };
        Self {
            fault,
            remaining: AtomicU32::new(n),
        }
    }

    fn snapshot(&self) -> Self {
        Self {
            fault: self.fault.clone(),
            remaining: AtomicU32::new(self.remaining.load(Ordering::Acquire)),
        }
    }

    fn is_armed(&self) -> bool {
        self.remaining.load(Ordering::Acquire) > 0
    }

    fn fire(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match n {
                0 => None,
                u32::MAX => Some(u32::MAX),
                n => Some(n - 1),
            })
            .is_ok()
    }
}

/// The faults of one device, each with the times it may still fire. Cheap to clone; clones
/// share the counts.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    armed: Arc<[Armed]>,
}

impl FaultPlan {
    /// A plan without faults: the device behaves.
    pub fn none() -> Self {
        Self::default()
    }

    /// A plan with these faults, each with its default count (for tests and embedders).
    pub fn of(faults: impl IntoIterator<Item = Fault>) -> Self {
        Self::with_times(faults.into_iter().map(|f| {
            let t = f.default_times();
            (f, t)
        }))
    }

    /// A plan with these faults and counts; a later fault replaces an earlier one of its kind.
    pub fn with_times(faults: impl IntoIterator<Item = (Fault, Times)>) -> Self {
        let mut armed: Vec<Armed> = Vec::new();
        for (f, t) in faults {
            armed.retain(|a| a.fault.kind() != f.kind());
            armed.push(Armed::new(f, t));
        }
        Self {
            armed: armed.into(),
        }
    }

    /// This plan with `later`'s faults added (each with the count it has left); where both
    /// have a fault of a kind, `later`'s replaces this one's.
    pub fn merged(&self, later: &FaultPlan) -> FaultPlan {
        let armed: Vec<Armed> = self
            .armed
            .iter()
            .filter(|a| !later.armed.iter().any(|b| b.fault.kind() == a.fault.kind()))
            .chain(later.armed.iter())
            .map(Armed::snapshot)
            .collect();
        FaultPlan {
            armed: armed.into(),
        }
    }

    /// Whether the plan has no fault at all (fired or not).
    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    /// All faults of the plan, fired or not.
    pub fn faults(&self) -> impl Iterator<Item = &Fault> {
        self.armed.iter().map(|a| &a.fault)
    }

    /// Whether a fault of `kind` is assigned and may still fire.
    pub fn has(&self, kind: FaultKind) -> bool {
        self.get(kind).is_some()
    }

    /// Uses one occurrence of the fault of `kind`: true when it was armed (the runtime must
    /// now misbehave), false when there is none or it is used up.
    pub fn fire(&self, kind: FaultKind) -> bool {
        self.armed
            .iter()
            .find(|a| a.fault.kind() == kind)
            .is_some_and(Armed::fire)
    }

    /// Byte offset at which to close the download connection, while armed.
    pub fn drop_at(&self, total: u64) -> Option<u64> {
        self.point(FaultKind::Drop, total)
    }

    /// Byte offset whose value to flip in transit, while armed.
    pub fn corrupt_at(&self, total: u64) -> Option<u64> {
        self.point(FaultKind::Corrupt, total)
    }

    /// Byte offset at which to stop receiving (the link stalls), while armed.
    pub fn stall_at(&self, total: u64) -> Option<u64> {
        self.point(FaultKind::Stall, total)
    }

    /// Byte offset at which the power fails during the download, while armed.
    pub fn power_loss_during_download(&self, total: u64) -> Option<u64> {
        self.point(FaultKind::PowerLossDownload, total)
    }

    /// Whether the power fails while committing the new slot (does not use the fault up).
    pub fn power_loss_during_write(&self) -> bool {
        self.has(FaultKind::PowerLossWrite)
    }

    /// Whether the power fails while the new image boots (does not use the fault up).
    pub fn power_loss_during_reboot(&self) -> bool {
        self.has(FaultKind::PowerLossReboot)
    }

    /// Whether the device stays away after its next reboot (does not use the fault up).
    pub fn never_return(&self) -> bool {
        self.has(FaultKind::NeverReturn)
    }

    /// Whether the device answers triggers with 409 (does not use the fault up).
    pub fn busy(&self) -> bool {
        self.has(FaultKind::Busy)
    }

    /// Whether the device ignores triggers (does not use the fault up).
    pub fn unreachable(&self) -> bool {
        self.has(FaultKind::Unreachable)
    }

    /// The capped bandwidth in bytes per second, if the link is slow.
    pub fn slow_link(&self) -> Option<u64> {
        self.armed.iter().find_map(|a| match a.fault {
            Fault::SlowLink(r) => Some(r),
            _ => None,
        })
    }

    /// Flips the byte at the corrupt point if it lies in `chunk` (which starts at byte
    /// `chunk_start` of an image of `total` bytes) and the fault is armed; uses the fault up
    /// and returns true when it did.
    pub fn corrupt_chunk(&self, chunk_start: u64, chunk: &mut [u8], total: u64) -> bool {
        let Some(at) = self.corrupt_at(total) else {
            return false;
        };
        let Some(rel) = at.checked_sub(chunk_start) else {
            return false;
        };
        let Ok(rel) = usize::try_from(rel) else {
            return false;
        };
        if rel >= chunk.len() || !self.fire(FaultKind::Corrupt) {
            return false;
        }
        chunk[rel] ^= 0xFF;
        true
    }

    fn get(&self, kind: FaultKind) -> Option<&Armed> {
        self.armed
            .iter()
            .find(|a| a.fault.kind() == kind && a.is_armed())
    }

    fn point(&self, kind: FaultKind, total: u64) -> Option<u64> {
        self.get(kind)
            .and_then(|a| a.fault.point())
            .map(|p| p.resolve(total))
    }
}

impl fmt::Display for FaultPlan {
    /// The faults, comma separated (`none` for an empty plan), as in a spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.armed.is_empty() {
            return f.write_str("none");
        }
        for (i, a) in self.armed.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", a.fault)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_resolve() {
        assert_eq!(Point::Percent(50).resolve(1000), 500);
        assert_eq!(Point::Percent(100).resolve(1000), 1000);
        assert_eq!(Point::Byte(5000).resolve(1000), 1000);
        assert_eq!(Point::Byte(10).resolve(1000), 10);
        assert_eq!(
            Point::Percent(33).resolve(u64::MAX),
            6_087_425_544_324_152_032
        );
    }

    #[test]
    fn byte_units() {
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_bytes("1mib"), Ok(1 << 20));
        assert_eq!(parse_bytes("1.5MiB"), Ok(1_572_864));
        assert_eq!(parse_bytes("2KB"), Ok(2000));
        assert_eq!(parse_bytes("12"), Ok(12));
        assert!(parse_bytes("KiB").is_err());
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("99999999999999999999GiB").is_err());
    }
}
