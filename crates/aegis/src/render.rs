//! Tables for people: `kubectl get`-style columns (left-aligned, three spaces apart, no
//! borders, `-` for nothing), one function per view. Pure functions of their data and `now`,
//! so the snapshot tests render fixed data through exactly the code the commands use.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use aegis_server::audit::AuditRecord;
use aegis_server::devices::Device;
use aegis_server::firmware::FirmwareEntry;
use aegis_server::rollout::{
    Decision, Phase, Plan, Rollout, RolloutState, RolloutSummary, Target, TargetState,
};
use aegis_server::time::Timestamp;

/// Columns left-aligned, separated by three spaces, trailing blanks trimmed.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("   ");
            }
            let w = widths.get(i).copied().unwrap_or(0);
            let _ = write!(line, "{cell:<w$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `kubectl`-style age: `42s`, `5m`, `3h`, `12d`; `-` for the future or nothing.
pub fn ago(now: Timestamp, then: Option<Timestamp>) -> String {
    let Some(then) = then else {
        return "-".into();
    };
    let s = now.since(then).as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `512 B`, `200.0 KiB`, `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    #[allow(clippy::cast_precision_loss)]
    let f = n as f64;
    if f < KIB {
        format!("{n} B")
    } else if f < KIB * KIB {
        format!("{:.1} KiB", f / KIB)
    } else {
        format!("{:.1} MiB", f / (KIB * KIB))
    }
}

/// The first 12 hex digits of a SHA-256, as `docker` shows image ids.
pub fn short_sha(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn or_dash(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".into(),
    }
}

/// Devices sorted by hostname, then id.
pub fn devices(devices: &[Device], now: Timestamp) -> String {
    let mut sorted: Vec<&Device> = devices.iter().collect();
    sorted.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.hostname.clone(),
                format!("{}:{}", d.ip, d.port),
                or_dash(d.project.as_deref()),
                or_dash(d.chip.as_deref()),
                or_dash(Some(&d.version)),
                or_dash(d.state.as_deref()),
                if d.online { "online" } else { "offline" }.into(),
                ago(now, Some(d.last_seen)),
            ]
        })
        .collect();
    table(
        &[
            "ID", "HOSTNAME", "ADDRESS", "PROJECT", "CHIP", "VERSION", "STATE", "STATUS", "SEEN",
        ],
        &rows,
    )
}

/// The firmware library, newest first.
pub fn firmware(entries: &[FirmwareEntry], now: Timestamp) -> String {
    let mut sorted: Vec<&FirmwareEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        b.uploaded_at
            .cmp(&a.uploaded_at)
            .then(a.sha256.cmp(&b.sha256))
    });
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|f| {
            vec![
                short_sha(&f.sha256).to_string(),
                f.project.clone(),
                f.version.clone(),
                f.chip.clone(),
                bytes(f.size),
                ago(now, Some(f.uploaded_at)),
                or_dash(f.filename.as_deref()),
                or_dash(f.notes.as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "SHA256", "PROJECT", "VERSION", "CHIP", "SIZE", "UPLOADED", "FILENAME", "NOTES",
        ],
        &rows,
    )
}

fn count(counts: &BTreeMap<String, u32>, state: TargetState) -> u32 {
    counts.get(state.as_str()).copied().unwrap_or(0)
}

/// Targets in an end state, of all targets: `7/10`.
fn done_of(counts: &BTreeMap<String, u32>) -> String {
    let total: u32 = counts.values().sum();
    let open = count(counts, TargetState::Pending) + count(counts, TargetState::InProgress);
    format!("{}/{total}", total.saturating_sub(open))
}

fn failures(counts: &BTreeMap<String, u32>) -> u32 {
    count(counts, TargetState::Failed)
        + count(counts, TargetState::RolledBack)
        + count(counts, TargetState::TimedOut)
}

/// Rollouts, newest first.
pub fn rollouts(list: &[RolloutSummary], now: Timestamp) -> String {
    let mut sorted: Vec<&RolloutSummary> = list.iter().collect();
    sorted.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                state_name(r),
                short_sha(&r.firmware).to_string(),
                done_of(&r.counts),
                count(&r.counts, TargetState::Succeeded).to_string(),
                failures(&r.counts).to_string(),
                count(&r.counts, TargetState::Skipped).to_string(),
                ago(now, Some(r.created_at)),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "STATE",
            "FIRMWARE",
            "DONE",
            "SUCCEEDED",
            "FAILED",
            "SKIPPED",
            "CREATED",
        ],
        &rows,
    )
}

fn state_name(r: &RolloutSummary) -> String {
    rollout_state(r.state)
}

/// `running`, `paused`, ... as the API spells it.
pub fn rollout_state(state: RolloutState) -> String {
    snake(&state)
}

/// `downloading`, `rebooting`, ... as the API spells it.
pub fn phase(phase: Phase) -> String {
    snake(&phase)
}

fn snake<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "-".into())
}

fn phase_name(t: &Target) -> String {
    if t.state.is_final() {
        return "-".into();
    }
    phase(t.phase)
}

fn progress(t: &Target) -> String {
    if t.total == 0 || (t.bytes == 0 && t.state != TargetState::InProgress) {
        return "-".into();
    }
    let pct = (u128::from(t.bytes.min(t.total)) * 100) / u128::from(t.total);
    format!("{pct}%")
}

/// One rollout: a header and its targets.
pub fn rollout(r: &Rollout, now: Timestamp) -> String {
    let s = &r.summary;
    let mut out = String::new();
    let _ = writeln!(out, "Rollout:   {}", s.id);
    let _ = writeln!(out, "State:     {}", state_name(s));
    if let Some(reason) = &s.reason {
        let _ = writeln!(out, "Reason:    {reason}");
    }
    let _ = writeln!(out, "Firmware:  {}", s.firmware);
    let st = &s.strategy;
    let _ = writeln!(
        out,
        "Strategy:  parallel {}, canary {}, max failures {}%, retries {}, timeout {}s{}",
        st.max_parallel,
        st.canary,
        st.max_failure_pct,
        st.retries,
        st.timeout_s,
        if st.allow_downgrade {
            ", downgrade allowed"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "Created:   {} ago    Done: {}",
        ago(now, Some(s.created_at)),
        done_of(&s.counts)
    );
    out.push('\n');
    out.push_str(&targets(&r.targets));
    out
}

/// Targets in rollout order.
pub fn targets(targets: &[Target]) -> String {
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|t| {
            vec![
                t.device.clone(),
                t.state.to_string(),
                phase_name(t),
                progress(t),
                or_dash(t.from_version.as_deref()),
                or_dash(t.to_version.as_deref()),
                t.attempts.to_string(),
                or_dash(t.error.as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "DEVICE", "STATE", "PHASE", "PROGRESS", "FROM", "TO", "ATTEMPTS", "ERROR",
        ],
        &rows,
    )
}

/// A dry run: what would happen to each device, and a one-line total.
pub fn plan(p: &Plan) -> String {
    let rows: Vec<Vec<String>> = p
        .targets
        .iter()
        .map(|t| {
            vec![
                t.device.clone(),
                t.hostname.clone(),
                or_dash(Some(&t.from_version)),
                or_dash(Some(&t.to_version)),
                match t.decision {
                    Decision::Deploy => "deploy".into(),
                    Decision::Skip => "skip".into(),
                },
                or_dash(t.reason.as_deref()),
            ]
        })
        .collect();
    let mut out = table(
        &["DEVICE", "HOSTNAME", "FROM", "TO", "DECISION", "REASON"],
        &rows,
    );
    let _ = writeln!(
        out,
        "\n{} to deploy, {} skipped; about {} with parallel {}, canary {}.",
        p.deploy,
        p.skip,
        duration(p.estimated_s),
        p.strategy.max_parallel,
        p.strategy.canary
    );
    out
}

/// `45s`, `3m 20s`, `1h 5m`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// The end of a followed rollout: targets per outcome, then every target that did not
/// succeed, with its reason.
pub fn summary(r: &Rollout) -> String {
    let order = [
        TargetState::Succeeded,
        TargetState::Skipped,
        TargetState::Failed,
        TargetState::RolledBack,
        TargetState::TimedOut,
        TargetState::Cancelled,
        TargetState::InProgress,
        TargetState::Pending,
    ];
    let rows: Vec<Vec<String>> = order
        .iter()
        .filter_map(|s| {
            let n = r.targets.iter().filter(|t| t.state == *s).count();
            (n > 0).then(|| vec![s.to_string(), n.to_string()])
        })
        .collect();
    let mut out = table(&["OUTCOME", "DEVICES"], &rows);
    let unhappy: Vec<Target> = r
        .targets
        .iter()
        .filter(|t| !matches!(t.state, TargetState::Succeeded | TargetState::Skipped))
        .cloned()
        .collect();
    if !unhappy.is_empty() {
        out.push('\n');
        out.push_str(&targets(&unhappy));
    }
    out
}

/// Audit records in log order.
pub fn audit(records: &[AuditRecord]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|a| {
            vec![
                a.seq.to_string(),
                a.at.to_string(),
                a.kind.clone(),
                or_dash(a.rollout.as_deref()),
                or_dash(a.device.as_deref()),
                or_dash(a.outcome.as_deref()),
                or_dash(a.from_version.as_deref()),
                or_dash(a.to_version.as_deref()),
                or_dash(a.error.as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "SEQ", "AT", "KIND", "ROLLOUT", "DEVICE", "OUTCOME", "FROM", "TO", "ERROR",
        ],
        &rows,
    )
}
