//! `aegis deploy` end to end: the real binary against a real server and a simulated fleet,
//! each test in its own network namespace.

use aegis_testkit::netns_test;
use serde_json::Value;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use crate::harness::{Harness, aegis_cmd, stderr, stdout};

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            stdout(out),
            stderr(out)
        )
    })
}

netns_test! {
    /// A good image reaches every outdated device: exit 0, a JSON summary whose counts match
    /// the audit log, devices really run it; the CSV export says the same as the JSON one.
    fn deploy_wait_succeeds_and_matches_the_audit() {
        let h = Harness::start(3);
        let fw = h.image("fw-2.0.0.bin", &["--version", "2.0.0"]);
        // In the library, not yet deployed: every device is outdated.
        let added = h.aegis(&["firmware", "add", fw.to_str().unwrap()]);
        assert_eq!(added.status.code(), Some(0), "{}", stderr(&added));
        let outdated = h.aegis(&["devices", "--outdated", "--json"]);
        assert_eq!(json(&outdated).as_array().unwrap().len(), 3, "{}", stderr(&outdated));
        let out = h.aegis(&[
            "deploy", fw.to_str().unwrap(), "--to", "outdated", "--wait", "--json", "--yes",
            "--parallel", "3",
        ]);
        assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
        let summary = json(&out);
        assert_eq!(summary["result"], "succeeded");
        assert_eq!(summary["exit_code"], 0);
        assert_eq!(summary["state"], "completed");
        assert_eq!(summary["counts"], serde_json::json!({ "succeeded": 3 }));
        let id = summary["id"].as_str().unwrap().to_string();
        assert!(id.starts_with("r-"), "{id}");
        for (dev, version) in h.sim_versions() {
            assert_eq!(version, "2.0.0", "device {dev}");
        }

        // The audit log agrees with the summary: one successful attempt per device.
        let audit = h.get(&format!("audit?rollout={id}"));
        let mut succeeded: Vec<&str> = audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "attempt" && r["outcome"] == "succeeded")
            .map(|r| r["device"].as_str().unwrap())
            .collect();
        succeeded.sort_unstable();
        let mut ids: Vec<&str> = h.device_ids.iter().map(String::as_str).collect();
        ids.sort_unstable();
        assert_eq!(succeeded, ids);

        // `aegis audit` as JSON and as CSV: the same records.
        let as_json = h.aegis(&["audit", "--rollout", &id, "--json"]);
        assert_eq!(as_json.status.code(), Some(0), "{}", stderr(&as_json));
        let records = json(&as_json);
        let records = records.as_array().unwrap();
        assert_eq!(records.len(), audit.as_array().unwrap().len());
        let as_csv = h.aegis(&["audit", "--rollout", &id, "--format", "csv"]);
        assert_eq!(as_csv.status.code(), Some(0), "{}", stderr(&as_csv));
        let mut reader = csv::Reader::from_reader(as_csv.stdout.as_slice());
        let headers = reader.headers().unwrap().clone();
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), records.len());
        for (row, rec) in rows.iter().zip(records) {
            assert_eq!(row[col("seq")], rec["seq"].to_string());
            assert_eq!(&row[col("kind")], rec["kind"].as_str().unwrap());
            assert_eq!(&row[col("hash")], rec["hash"].as_str().unwrap());
            assert_eq!(&row[col("device")], rec["device"].as_str().unwrap_or(""));
            assert_eq!(&row[col("outcome")], rec["outcome"].as_str().unwrap_or(""));
        }

        // The table views work on the same data.
        let table = h.aegis(&["rollouts", &id]);
        assert_eq!(table.status.code(), Some(0), "{}", stderr(&table));
        let text = stdout(&table);
        assert!(text.contains(&format!("Rollout:   {id}")), "{text}");
        assert_eq!(text.matches("succeeded").count(), 3, "{text}");
        let list = h.aegis(&["rollouts", "--json"]);
        assert_eq!(json(&list)[0]["id"], id.as_str());
        let devices = h.aegis(&["devices", "--json"]);
        assert_eq!(json(&devices).as_array().unwrap().len(), 3);
        // Watching a finished rollout ends at once with its outcome.
        let watch = h.aegis(&["rollouts", &id, "--watch", "--json"]);
        assert_eq!(watch.status.code(), Some(0), "{}", stderr(&watch));
        assert_eq!(json(&watch)["result"], "succeeded");
        // The audit chain holds.
        let verify = h.aegis(&["audit", "verify"]);
        assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
        assert!(stdout(&verify).contains("intact"));
    }
}

netns_test! {
    /// An image that crashes at boot: with no canary and no threshold every device rolls back
    /// and deploy exits 1 listing them; with the default canary the rollout pauses after the
    /// first device and deploy exits 3.
    fn crashing_image_fails_or_pauses_with_distinct_codes() {
        let h = Harness::start(3);
        let fw = h.image("crash.bin", &["--version", "2.0.1", "--behavior", "crashes-at-boot"]);
        let fw = fw.to_str().unwrap();
        let out = h.aegis(&[
            "deploy", fw, "--to", "all", "--wait", "--json", "--yes", "--canary", "0",
            "--max-failures", "100", "--retries", "0", "--parallel", "3",
        ]);
        assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
        let summary = json(&out);
        assert_eq!(summary["result"], "failed");
        assert_eq!(summary["counts"], serde_json::json!({ "rolled_back": 3 }));
        let rolled_back: Vec<&str> = summary["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["state"] == "rolled_back")
            .map(|t| t["device"].as_str().unwrap())
            .collect();
        assert_eq!(rolled_back.len(), 3);
        for (dev, version) in h.sim_versions() {
            assert_eq!(version, "1.0.0", "device {dev} kept its old image");
        }
        assert!(stderr(&out).contains("aegis rollouts retry"), "{}", stderr(&out));

        // Human output: the summary table lists the rolled-back devices.
        let out = h.aegis(&[
            "deploy", fw, "--to", "all", "--wait", "--yes", "--retries", "0",
        ]);
        assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("OUTCOME"), "{text}");
        assert!(text.contains("rolled_back"), "{text}");
        let err = stderr(&out);
        assert!(err.contains("is paused") && err.contains("canary"), "{err}");
        let rollouts = h.get("rollouts");
        let paused: Vec<&Value> = rollouts
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "paused")
            .collect();
        assert_eq!(paused.len(), 1, "{rollouts}");
        let id = paused[0]["id"].as_str().unwrap();
        let watch = h.aegis(&["rollouts", id, "--watch"]);
        assert_eq!(watch.status.code(), Some(3), "{}", stderr(&watch));
    }
}

netns_test! {
    /// --dry-run shows the plan and changes nothing; without --yes nothing happens when
    /// nobody can be asked; the library commands round-trip.
    fn dry_run_changes_nothing_and_confirmation_is_required() {
        let h = Harness::start(2);
        let fw = h.image("fw.bin", &["--version", "3.0.0"]);
        let fw = fw.to_str().unwrap();

        let out = h.aegis(&["deploy", fw, "--to", "project:demo", "--dry-run", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let plan = json(&out);
        assert_eq!(plan["deploy"], 2);
        assert_eq!(plan["skip"], 0);
        assert_eq!(h.get("rollouts"), serde_json::json!([]));
        for (_, version) in h.sim_versions() {
            assert_eq!(version, "1.0.0");
        }
        let table = h.aegis(&["deploy", fw, "--to", "all", "--dry-run"]);
        assert_eq!(table.status.code(), Some(0));
        assert!(stdout(&table).contains("2 to deploy, 0 skipped"), "{}", stdout(&table));

        // Not a terminal, no --yes: refused before anything is created.
        let out = h.aegis(&["deploy", fw, "--to", "all"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
        assert_eq!(h.get("rollouts"), serde_json::json!([]));

        // Without --wait: started, id printed, exit 0.
        let out = h.aegis(&["deploy", fw, "--to", &h.device_ids[0], "--yes", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let started = json(&out);
        assert_eq!(started["targets"].as_array().unwrap().len(), 1);

        // firmware list / add (duplicate) / rm.
        let list = h.aegis(&["firmware", "list", "--json"]);
        let entries = json(&list);
        assert_eq!(entries.as_array().unwrap().len(), 1);
        let sha = entries[0]["sha256"].as_str().unwrap().to_string();
        let again = h.aegis(&["firmware", "add", fw]);
        assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
        assert!(stdout(&again).contains("already in the library"), "{}", stdout(&again));
        let other = h.image("other.bin", &["--version", "3.1.0"]);
        let added = h.aegis(&["firmware", "add", other.to_str().unwrap(), "--notes", "n", "--json"]);
        let other_sha = json(&added)["sha256"].as_str().unwrap().to_string();
        assert_ne!(other_sha, sha);
        let rm = h.aegis(&["firmware", "rm", &other_sha[..10]]);
        assert_eq!(rm.status.code(), Some(0), "{}", stderr(&rm));
        let list = h.aegis(&["firmware", "list", "--json"]);
        assert_eq!(json(&list).as_array().unwrap().len(), 1);
    }
}

netns_test! {
    /// Ctrl-C while waiting detaches: exit 130, a sentence saying the rollout goes on and how
    /// to stop it, and the rollout is indeed still running on the server.
    fn ctrl_c_detaches_and_the_rollout_goes_on() {
        let h = Harness::start(1);
        let fw = h.image("hangs.bin", &["--version", "2.0.0", "--behavior", "never-confirms"]);
        let mut child = aegis_cmd(h.dir.path())
            .env("AEGIS_SERVER", &h.url)
            .args(["deploy", fw.to_str().unwrap(), "--to", "all", "--wait", "--yes"])
            .args(["--timeout", "10m"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let id = loop {
            let mut line = String::new();
            assert_ne!(err.read_line(&mut line).unwrap(), 0, "deploy ended early: {seen}");
            seen.push_str(&line);
            if let Some(rest) = line.strip_prefix("following rollout ") {
                break rest.split(';').next().unwrap().to_string();
            }
        };
        let killed = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        err.read_to_string(&mut seen).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "{seen}");
        assert!(seen.contains(&format!("detached from rollout {id}")), "{seen}");
        assert!(seen.contains(&format!("aegis rollouts abort {id}")), "{seen}");
        assert_eq!(h.get(&format!("rollouts/{id}"))["state"], "running");
    }
}
