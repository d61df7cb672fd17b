//! `MemStore`: a complete in-memory [`Store`], for tests of modules above the storage layer
//! (registry, rollouts) that should not depend on SQLite. It follows the trait's documented
//! orderings and rules; the SQLite store's own conformance tests are the reference.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use aegis_server::Result;
use aegis_server::audit::AuditRecord;
use aegis_server::devices::{Device, RejectedSighting};
use aegis_server::firmware::FirmwareEntry;
use aegis_server::rollout::{RolloutState, RolloutSummary, Target, TargetState};
use aegis_server::store::{AuditQuery, Store};

#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    devices: HashMap<String, Device>,
    rejected: Vec<RejectedSighting>,
    firmware: HashMap<String, FirmwareEntry>,
    rollouts: HashMap<String, RolloutSummary>,
    /// rollout → device → target
    targets: HashMap<String, BTreeMap<String, Target>>,
    audit: Vec<AuditRecord>,
    settings: HashMap<String, String>,
    /// How many `put_device` calls were made (tests check write-through).
    device_writes: usize,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of `put_device` calls so far.
    pub fn device_writes(&self) -> usize {
        self.lock().device_writes
    }
}

fn counted(
    mut summary: RolloutSummary,
    targets: Option<&BTreeMap<String, Target>>,
) -> RolloutSummary {
    summary.counts.clear();
    for t in targets.into_iter().flat_map(BTreeMap::values) {
        *summary
            .counts
            .entry(t.state.as_str().to_owned())
            .or_default() += 1;
    }
    summary
}

fn finished(state: RolloutState) -> bool {
    matches!(state, RolloutState::Completed | RolloutState::Aborted)
}

impl Store for MemStore {
    fn put_device(&self, device: &Device) -> Result<()> {
        let mut s = self.lock();
        s.device_writes += 1;
        s.devices.insert(device.id.clone(), device.clone());
        Ok(())
    }

    fn device(&self, id: &str) -> Result<Option<Device>> {
        Ok(self.lock().devices.get(id).cloned())
    }

    fn devices(&self) -> Result<Vec<Device>> {
        let mut all: Vec<Device> = self.lock().devices.values().cloned().collect();
        all.sort_by(|a, b| (&a.hostname, &a.id).cmp(&(&b.hostname, &b.id)));
        Ok(all)
    }

    fn put_rejected(&self, sighting: &RejectedSighting) -> Result<()> {
        self.lock().rejected.push(sighting.clone());
        Ok(())
    }

    fn rejected(&self, limit: usize) -> Result<Vec<RejectedSighting>> {
        Ok(self
            .lock()
            .rejected
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }

    fn put_firmware(&self, entry: &FirmwareEntry) -> Result<bool> {
        let mut s = self.lock();
        if s.firmware.contains_key(&entry.sha256) {
            return Ok(false);
        }
        s.firmware.insert(entry.sha256.clone(), entry.clone());
        Ok(true)
    }

    fn firmware(&self, sha256: &str) -> Result<Option<FirmwareEntry>> {
        Ok(self.lock().firmware.get(sha256).cloned())
    }

    fn firmware_list(&self) -> Result<Vec<FirmwareEntry>> {
        let mut all: Vec<FirmwareEntry> = self.lock().firmware.values().cloned().collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.uploaded_at));
        Ok(all)
    }

    fn delete_firmware(&self, sha256: &str) -> Result<bool> {
        Ok(self.lock().firmware.remove(sha256).is_some())
    }

    fn put_rollout(&self, rollout: &RolloutSummary) -> Result<()> {
        self.lock()
            .rollouts
            .insert(rollout.id.clone(), rollout.clone());
        Ok(())
    }

    fn put_target(&self, rollout: &str, target: &Target) -> Result<()> {
        self.put_targets(rollout, std::slice::from_ref(target))
    }

    fn put_targets(&self, rollout: &str, targets: &[Target]) -> Result<()> {
        let mut s = self.lock();
        let map = s.targets.entry(rollout.to_owned()).or_default();
        for t in targets {
            map.insert(t.device.clone(), t.clone());
        }
        Ok(())
    }

    fn rollout(&self, id: &str) -> Result<Option<(RolloutSummary, Vec<Target>)>> {
        let s = self.lock();
        Ok(s.rollouts.get(id).map(|r| {
            let targets = s.targets.get(id);
            (
                counted(r.clone(), targets),
                targets
                    .into_iter()
                    .flat_map(|m| m.values().cloned())
                    .collect(),
            )
        }))
    }

    fn rollouts(&self) -> Result<Vec<RolloutSummary>> {
        let s = self.lock();
        let mut all: Vec<RolloutSummary> = s
            .rollouts
            .values()
            .map(|r| counted(r.clone(), s.targets.get(&r.id)))
            .collect();
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    fn active_rollouts_using(&self, sha256: &str) -> Result<Vec<String>> {
        let s = self.lock();
        let mut ids: Vec<String> = s
            .rollouts
            .values()
            .filter(|r| r.firmware == sha256 && !finished(r.state))
            .map(|r| r.id.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn targets_in_states(&self, states: &[TargetState]) -> Result<Vec<(String, Target)>> {
        let s = self.lock();
        let mut out = Vec::new();
        for (id, r) in &s.rollouts {
            if finished(r.state) {
                continue;
            }
            for t in s.targets.get(id).into_iter().flat_map(BTreeMap::values) {
                if states.contains(&t.state) {
                    out.push((id.clone(), t.clone()));
                }
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1.device).cmp(&(&b.0, &b.1.device)));
        Ok(out)
    }

    fn append_audit(&self, records: &[AuditRecord]) -> Result<()> {
        let mut s = self.lock();
        let first = s.audit.last().map_or(0, |r| r.seq + 1);
        for (next, r) in (first..).zip(records) {
            if r.seq != next {
                return Err(aegis_server::Error::conflict(
                    "audit_seq",
                    format!("audit record {} does not follow {}", r.seq, next),
                ));
            }
        }
        s.audit.extend_from_slice(records);
        Ok(())
    }

    fn last_audit(&self) -> Result<Option<AuditRecord>> {
        Ok(self.lock().audit.last().cloned())
    }

    fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let s = self.lock();
        let mut hits: Vec<AuditRecord> = s
            .audit
            .iter()
            .filter(|r| {
                q.device
                    .as_ref()
                    .is_none_or(|d| r.device.as_ref() == Some(d))
            })
            .filter(|r| {
                q.rollout
                    .as_ref()
                    .is_none_or(|x| r.rollout.as_ref() == Some(x))
            })
            .filter(|r| {
                q.outcome
                    .as_ref()
                    .is_none_or(|x| r.outcome.as_ref() == Some(x))
            })
            .filter(|r| q.kind.as_ref().is_none_or(|k| &r.kind == k))
            .filter(|r| q.since.is_none_or(|t| r.at >= t))
            .filter(|r| q.until.is_none_or(|t| r.at <= t))
            .cloned()
            .collect();
        if let Some(limit) = q.limit {
            let skip = hits.len().saturating_sub(limit);
            hits.drain(..skip);
        }
        Ok(hits)
    }

    fn audit_range(&self, from: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        Ok(self
            .lock()
            .audit
            .iter()
            .filter(|r| r.seq >= from)
            .take(limit)
            .cloned()
            .collect())
    }

    fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self.lock().settings.get(key).cloned())
    }

    fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        self.lock()
            .settings
            .insert(key.to_owned(), value.to_owned());
        Ok(())
    }
}
