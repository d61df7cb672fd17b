//! A real server (in-process, on 127.0.0.1 port 0) and a simulated fleet (aegis-sim in fast
//! mode) that it discovers over mDNS, for tests that run the `aegis` binary against them. Only
//! inside `netns_test!`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aegis_server::server::{ServerConfig, serve};
use aegis_sim::fleet::{Fleet, FleetConfig, StateDir};
use aegis_sim::timing::Timing;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    pub url: String,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
    fleet: Option<Fleet>,
    pub device_ids: Vec<String>,
}

impl Harness {
    /// A server with `devices` simulated devices running demo 1.0.0 on esp32.
    pub fn start(devices: u32) -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();

        let fleet = (devices > 0).then(|| {
            let mut cfg = FleetConfig::new(devices);
            cfg.ip_base = Ipv4Addr::new(127, 0, 1, 1);
            cfg.port_base = 18080;
            cfg.timing = Timing::fast();
            cfg.state_dir = StateDir::Persistent(dir.path().join("sim"));
            rt.block_on(Fleet::start(cfg)).unwrap()
        });
        let device_ids: Vec<String> = fleet
            .iter()
            .flat_map(|f| f.devices().iter().map(|d| d.plan.id.clone()))
            .collect();

        let shutdown = CancellationToken::new();
        let (operator, device) = rt.block_on(async {
            (
                TcpListener::bind("127.0.0.1:0").await.unwrap(),
                TcpListener::bind("127.0.0.1:0").await.unwrap(),
            )
        });
        let url = format!("http://{}", operator.local_addr().unwrap());
        let config = ServerConfig::new(&data_dir);
        let stop = shutdown.clone();
        let server = rt.spawn(async move {
            serve(config, operator, device, stop).await.unwrap();
        });
        let h = Harness {
            rt,
            url,
            dir,
            shutdown,
            server: Some(server),
            fleet,
            device_ids,
        };
        h.wait_healthy();
        h.wait_discovered();
        h
    }

    /// Waits (on the server's event stream) until every simulated device is online.
    fn wait_discovered(&self) {
        use futures_util::StreamExt;
        let want = self.device_ids.len();
        let base = format!("{}/api/v1", self.url);
        self.rt.block_on(async {
            let http = reqwest::Client::new();
            let mut events = http
                .get(format!("{base}/events"))
                .send()
                .await
                .unwrap()
                .bytes_stream();
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let devices: serde_json::Value = http
                    .get(format!("{base}/devices"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let online = devices
                    .as_array()
                    .map_or(0, |d| d.iter().filter(|d| d["online"] == true).count());
                if online >= want {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "only {online} of {want} simulated devices were discovered"
                );
                let _ = tokio::time::timeout(std::time::Duration::from_millis(500), events.next())
                    .await;
            }
        });
    }

    fn wait_healthy(&self) {
        let url = format!("{}/api/v1/health", self.url);
        self.rt.block_on(async {
            for _ in 0..200 {
                if let Ok(r) = reqwest::get(&url).await
                    && r.status().is_success()
                {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            panic!("the server did not become healthy");
        });
    }

    /// Runs `aegis ARGS --server URL` with a clean environment (no config file, not CI).
    pub fn aegis(&self, args: &[&str]) -> Output {
        let mut cmd = aegis_cmd(self.dir.path());
        cmd.args(args).env("AEGIS_SERVER", &self.url);
        cmd.output().unwrap()
    }

    /// GET a JSON document from the API.
    pub fn get(&self, path: &str) -> serde_json::Value {
        let url = format!("{}/api/v1/{path}", self.url);
        self.rt.block_on(async {
            reqwest::get(&url)
                .await
                .unwrap()
                .error_for_status()
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    }

    /// Makes a firmware image with `aegis sim make-image ARGS -o <tmp>/NAME`.
    pub fn image(&self, name: &str, args: &[&str]) -> PathBuf {
        make_image(self.dir.path(), name, args)
    }

    /// The running version of every simulated device, by id.
    pub fn sim_versions(&self) -> Vec<(String, String)> {
        self.fleet
            .as_ref()
            .map(|f| {
                f.devices()
                    .iter()
                    .map(|d| (d.plan.id.clone(), d.node.status().version.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = self.rt.block_on(server);
        }
        if let Some(fleet) = self.fleet.take() {
            self.rt.block_on(fleet.shutdown());
        }
    }
}

/// The `aegis` binary with an environment that cannot leak the developer's settings in:
/// no config file, no server or token variables, not CI, a fixed width for help texts.
pub fn aegis_cmd(tmp: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aegis"));
    cmd.env("AEGIS_CONFIG", tmp.join("no-config.toml"))
        .env_remove("AEGIS_SERVER")
        .env_remove("AEGIS_TOKEN")
        .env_remove("CI")
        .env("HOME", tmp)
        .env("XDG_DATA_HOME", tmp.join("xdg-data"))
        .env("XDG_CONFIG_HOME", tmp.join("xdg-config"))
        .env("COLUMNS", "100");
    cmd
}

/// Makes a firmware image with `aegis sim make-image ARGS -o DIR/NAME`.
pub fn make_image(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let status = aegis_cmd(dir)
        .args(["sim", "make-image"])
        .args(args)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "make-image failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}
