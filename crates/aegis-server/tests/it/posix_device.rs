//! Conformance of the C device library (firmware/core + firmware/posix): real `aegis-device`
//! processes on 127.0.2.x, in a private network namespace, are discovered by the real server
//! and by python zeroconf, updated by a real rollout, roll back a crashing image, and refuse a
//! bad signature (401) and a stale nonce (412) — the same checks the simulator passes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aegis_image::{Chip, ImageBuilder, SimBehavior};
use aegis_protocol::{DeviceId, Nonce, Sha256Hex, SigningKey, Trigger};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::rollout_e2e::{create, online_devices, rollout, settled, wait_until};
use crate::serve::{Running, runtime, start};

/// Builds firmware/posix with make once per test binary; panics with what to install.
fn device_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = aegis_testkit::paths::workspace_root().join("firmware/posix");
            // Tests run in parallel processes (one per namespace): one make at a time.
            let lock = std::fs::File::create(std::env::temp_dir().join("aegis-firmware-make.lock"))
                .and_then(|f| f.lock().map(|()| f))
                .map_err(|e| format!("cannot lock the firmware build: {e}"))?;
            let out = Command::new("make")
                .arg("-C")
                .arg(&dir)
                .output()
                .map_err(|e| {
                    format!("cannot run make ({e}): install make, gcc and libmbedtls-dev")
                })?;
            if !out.status.success() {
                return Err(format!(
                    "make -C firmware/posix failed (needs make, gcc and libmbedtls-dev):\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            drop(lock);
            Ok(dir.join("build/aegis-device"))
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn release(version: &str, behavior: SimBehavior) -> Vec<u8> {
    ImageBuilder::new(Chip::Esp32)
        .version(version)
        .project("demo")
        .size(96 * 1024)
        .behavior(behavior)
        .build()
        .unwrap()
}

/// One `aegis-device` process; killed (SIGKILL) when dropped.
struct Device {
    child: Child,
    ip: String,
    port: u16,
    id: String,
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_device(dir: &Path, n: u8, key_hex: Option<&str>, factory: &Path) -> Device {
    let ip = format!("127.0.2.{n}");
    let port = 18080;
    let id = format!("0000000002{n:02x}");
    let mut cmd = Command::new(device_binary());
    cmd.arg("--state-dir")
        .arg(dir.join(format!("dev{n}")))
        .args(["--ip", &ip, "--port", &port.to_string()])
        .args(["--hostname", &format!("posix-dev-{n}"), "--id", &id])
        .arg("--factory-image")
        .arg(factory)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(k) = key_hex {
        cmd.args(["--trusted-key", k]);
    }
    let child = cmd.spawn().expect("aegis-device starts");
    Device {
        child,
        ip,
        port,
        id,
    }
}

impl Device {
    fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.port)
    }
}

async fn info(http: &reqwest::Client, d: &Device) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = http.get(d.url("/aegis/v1/info")).send().await
            && let Ok(v) = r.json::<Value>().await
        {
            return v;
        }
        assert!(Instant::now() < deadline, "{} never answered /info", d.ip);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_rollout(server: &Running, body: Value) -> String {
    create(server, body).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits on the server's event stream until the rollout settles, then reads it.
async fn settled_rollout(server: &Running, id: &str) -> Value {
    wait_until(
        server,
        "the rollout to settle",
        Duration::from_secs(90),
        || settled(server, id),
    )
    .await;
    rollout(server, id).await
}

const BROWSER: &str = r#"
import json, time
from zeroconf import IPVersion, ServiceBrowser, Zeroconf
T = "_aegis-ota._tcp.local."
zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
names = set()
class L:
    def add_service(self, zc, t, name): names.add(name)
    def update_service(self, zc, t, name): names.add(name)
    def remove_service(self, zc, t, name): pass
ServiceBrowser(zc, T, L())
time.sleep(4)
out = []
for name in sorted(names):
    info = zc.get_service_info(T, name, timeout=3000)
    if info is None:
        continue
    txt = {k.decode(): (v.decode() if v is not None else None) for k, v in info.properties.items()}
    out.append({"name": name, "addresses": info.parsed_addresses(), "port": info.port, "txt": txt})
print(json.dumps(out))
zc.close()
"#;

aegis_testkit::netns_test! {
    /// Three C devices: discovered by python zeroconf and the server, updated by a rollout
    /// (all succeed, each reports the new image itself), then a crashing image rolls back.
    fn posix_devices_are_discovered_updated_and_roll_back() {
        let bin = device_binary();
        assert!(bin.is_file());
        runtime().block_on(async {
            let server = start(|c| c.discovery = true).await;
            let key = aegis_server::keys::load_or_create_signing_key(server.dir.path())
                .unwrap()
                .value
                .public_key();
            let work = tempfile::tempdir().unwrap();
            let factory = work.path().join("factory.bin");
            std::fs::write(&factory, release("1.0.0", SimBehavior::Boots)).unwrap();
            let devices: Vec<Device> = (1..=3)
                .map(|n| spawn_device(work.path(), n, Some(&key.to_hex()), &factory))
                .collect();
            for d in &devices {
                let i = info(&server.http, d).await;
                assert_eq!(i["ver"], "1.0.0");
                assert_eq!(i["state"], "idle");
                assert_eq!(i["slot"], "factory");
                assert_eq!(i["chip"], "esp32");
            }

            // python zeroconf sees every device with the protocol's TXT keys.
            let out = Command::new(aegis_testkit::paths::python())
                .args(["-c", BROWSER])
                .output()
                .expect("python with zeroconf (scripts/test installs it into .venv)");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let seen: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(seen.len(), 3, "{seen:?}");
            for d in &devices {
                let s = seen
                    .iter()
                    .find(|s| s["txt"]["id"] == d.id.as_str())
                    .unwrap_or_else(|| panic!("zeroconf did not see {}: {seen:?}", d.id));
                assert_eq!(s["addresses"], json!([d.ip]));
                assert_eq!(s["port"], d.port);
                assert_eq!(s["txt"]["proto"], "1");
                assert_eq!(s["txt"]["ver"], "1.0.0");
                assert_eq!(s["txt"]["state"], "idle");
                assert_eq!(s["txt"]["key"], &key.fingerprint().to_string()[..16]);
            }

            wait_until(&server, "3 devices online", Duration::from_secs(30), || async {
                online_devices(&server).await == 3
            })
            .await;

            // A full rollout.
            let (status, entry) = server.upload(release("2.0.0", SimBehavior::Boots), "?filename=v2.bin").await;
            assert!(status == 201 || status == 200, "{entry}");
            let v2 = entry["sha256"].as_str().unwrap().to_string();
            let id = create_rollout(&server, json!({
                "firmware": v2, "targets": {"selector": "all"},
                "strategy": {"max_parallel": 3, "canary": 0, "timeout_s": 60},
            }))
            .await;
            let r = settled_rollout(&server, &id).await;
            assert_eq!(r["state"], "completed", "{r}");
            assert_eq!(r["counts"], json!({"succeeded": 3}), "{r}");
            for d in &devices {
                let i = info(&server.http, d).await;
                assert_eq!(i["ver"], "2.0.0");
                assert_eq!(i["sha256"], v2.as_str());
                assert_eq!(i["slot"], "ota_0");
                assert_eq!(i["state"], "idle");
                assert_eq!(i["last"]["result"], "booted", "{i}");
            }

            // A crashing image: the bootloader rolls back, the device says so.
            let (_, entry) = server.upload(release("2.1.0", SimBehavior::CrashesAtBoot), "?filename=bad.bin").await;
            let bad = entry["sha256"].as_str().unwrap().to_string();
            let id = create_rollout(&server, json!({
                "firmware": bad, "targets": {"ids": [devices[0].id]},
                "strategy": {"max_parallel": 1, "canary": 0, "retries": 0, "timeout_s": 60,
                             "max_failure_pct": 100},
            }))
            .await;
            let r = settled_rollout(&server, &id).await;
            assert_eq!(r["targets"][0]["state"], "rolled_back", "{r}");
            let i = info(&server.http, &devices[0]).await;
            assert_eq!(i["ver"], "2.0.0");
            assert_eq!(i["sha256"], v2.as_str());
            assert_eq!(i["last"]["result"], "rolled_back", "{i}");
            drop(devices);
            server.stop().await;
        });
    }
}

fn trigger(nonce: &str, size: u64) -> Trigger {
    Trigger {
        url: "http://127.0.0.1:9/fw/x.bin".into(),
        hash: Sha256Hex::digest(b"x"),
        version: "2.0.0".into(),
        size,
        deployment: "conformance".into(),
        report: None,
        nonce: Some(Nonce::parse(nonce).unwrap()),
        allow_downgrade: false,
        sig: None,
    }
}

aegis_testkit::netns_test! {
    /// The 400 → 409 → 401 → 412 → 413 → 422 decisions of a device that trusts a key.
    fn posix_device_refuses_bad_signature_and_stale_nonce() {
        runtime().block_on(async {
            let work = tempfile::tempdir().unwrap();
            let factory = work.path().join("factory.bin");
            std::fs::write(&factory, release("1.0.0", SimBehavior::Boots)).unwrap();
            let key = SigningKey::generate();
            let d = spawn_device(work.path(), 9, Some(&key.public_key().to_hex()), &factory);
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            let device_id = DeviceId::parse(&d.id).unwrap();
            let post = async |body: String| -> (u16, Value) {
                let r = http.post(d.url("/aegis/v1/ota")).body(body).send().await.unwrap();
                let s = r.status().as_u16();
                (s, r.json().await.unwrap())
            };
            let nonce = |i: &Value| i["nonce"].as_str().unwrap().to_string();

            let i = info(&http, &d).await;
            let (s, b) = post("{not json".into()).await;
            assert_eq!((s, b["error"]["code"].as_str()), (400, Some("malformed_json")));

            // Unsigned: 401 signature_missing.
            let n = nonce(&info(&http, &d).await);
            let (s, b) = post(trigger(&n, 1000).to_body().unwrap()).await;
            assert_eq!((s, b["error"]["code"].as_str()), (401, Some("signature_missing")));

            // Signed with another key: 401 signature_invalid.
            let n = nonce(&info(&http, &d).await);
            let mut t = trigger(&n, 1000);
            t.sign(&device_id, &SigningKey::generate()).unwrap();
            let (s, b) = post(t.to_body().unwrap()).await;
            assert_eq!((s, b["error"]["code"].as_str()), (401, Some("signature_invalid")));

            // Signed for another device: 401 too (the device uses its own id).
            let n = nonce(&info(&http, &d).await);
            let mut t = trigger(&n, 1000);
            t.sign(&DeviceId::parse("240ac4123456").unwrap(), &key).unwrap();
            let (s, b) = post(t.to_body().unwrap()).await;
            assert_eq!((s, b["error"]["code"].as_str()), (401, Some("signature_invalid")));

            // A valid signature over a nonce that was already replaced: 412.
            let stale = nonce(&info(&http, &d).await);
            let (s, _) = post("{}".into()).await; // any answered trigger rotates the nonce
            assert_eq!(s, 400);
            let mut t = trigger(&stale, 1000);
            t.sign(&device_id, &key).unwrap();
            let (s, b) = post(t.to_body().unwrap()).await;
            assert_eq!((s, b["error"]["code"].as_str()), (412, Some("nonce_unknown")));

            // Fresh nonce, too large: 413; older version: 422.
            let slot = i["slot_size"].as_u64().unwrap();
            let n = nonce(&info(&http, &d).await);
            let mut t = trigger(&n, slot + 1);
            t.sign(&device_id, &key).unwrap();
            let (s, b) = post(t.to_body().unwrap()).await;
            assert_eq!((s, b["error"]["code"].as_str()), (413, Some("too_large")));
            let n = nonce(&info(&http, &d).await);
            let mut t = trigger(&n, 1000);
            t.version = "0.9.0".into();
            t.sign(&device_id, &key).unwrap();
            let (s, b) = post(t.to_body().unwrap()).await;
            assert_eq!((s, b["error"]["code"].as_str()), (422, Some("downgrade")));
            assert_ne!(nonce(&info(&http, &d).await), n, "every answered trigger replaces the nonce");
        });
    }
}

/// The core's C unit tests (`make -C firmware/posix test`) run with the Rust suite, so CI runs them.
#[test]
fn c_unit_tests_pass() {
    device_binary(); // same prerequisites, same clear message when they are missing
    let dir = aegis_testkit::paths::workspace_root().join("firmware/posix");
    let _lock = std::fs::File::create(std::env::temp_dir().join("aegis-firmware-make.lock"))
        .and_then(|f| f.lock().map(|()| f))
        .unwrap();
    let out = Command::new("make")
        .arg("-C")
        .arg(&dir)
        .arg("test")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "C unit tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" checks, 0 failed"), "{stdout}");
}
