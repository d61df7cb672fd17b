//! Run a test inside a fresh private network namespace.
//!
//! [`run_isolated`] (used through the [`netns_test!`](crate::netns_test) macro) re-executes the
//! current test binary, filtered to the one test, under `unshare --net` (adding
//! `--map-root-user` when not root, so an unprivileged user namespace provides the rights). In
//! the child only loopback exists; it is brought up with multicast enabled and a route for
//! 224.0.0.0/4, so mDNS works between processes of the test and every `127.x.y.z` address is
//! local. Nothing can leave the machine.
//!
//! Where a namespace cannot be created the test fails and says why; it is never skipped.

use std::path::Path;
use std::process::Command;

/// Environment variable that tells the re-executed child which test it is isolated for.
const CHILD_ENV: &str = "AEGIS_NETNS_CHILD";

/// Brings loopback up with multicast, as `../shared/lab` does.
const SETUP: &str = "ip link set lo up && ip link set lo multicast on && \
                     (ip route add 224.0.0.0/4 dev lo 2>/dev/null || true)";

/// Define a `#[test]` whose body runs in a private network namespace.
///
/// ```ignore
/// aegis_testkit::netns_test! {
///     fn sees_only_loopback() {
///         assert_eq!(aegis_testkit::netns::interfaces(), vec!["lo"]);
///     }
/// }
/// ```
#[macro_export]
macro_rules! netns_test {
    ($(#[$meta:meta])* fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            $crate::netns::run_isolated(
                concat!(module_path!(), "::", stringify!($name)),
                || $body,
            )
        }
    };
}

/// Runs `body` in a private network namespace: directly when this process is the isolated child
/// for `test_path`, otherwise by re-executing this test binary for that one test under
/// `unshare`. `test_path` is `module_path!()::name`; its first segment (the crate) is dropped to
/// get the name libtest knows the test by.
pub fn run_isolated(test_path: &str, body: impl FnOnce()) {
    let test_name = test_path
        .split_once("::")
        .map_or(test_path, |(_, rest)| rest);
    if std::env::var(CHILD_ENV).as_deref() == Ok(test_name) {
        let ifaces = interfaces();
        assert_eq!(
            ifaces,
            vec!["lo".to_string()],
            "refusing to run: this test must see only loopback, but sees {ifaces:?}"
        );
        body();
        return;
    }
    run_child(test_name);
}

fn run_child(test_name: &str) {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let unshare = find_in_path("unshare").unwrap_or_else(|| {
        panic!(
            "this test needs a private network namespace, but `unshare` (util-linux) is not \
             installed: install util-linux, or run the tests inside ../shared/lab"
        )
    });
    if find_in_path("ip").is_none() {
        panic!(
            "this test needs a private network namespace, but `ip` (iproute2) is not installed \
             to bring its loopback up: install iproute2"
        );
    }
    let mut cmd = Command::new(unshare);
    cmd.arg("--net");
    if !is_root() {
        cmd.arg("--map-root-user");
    }
    cmd.args([
        "--",
        "sh",
        "-c",
        &format!("{SETUP} && exec \"$@\""),
        "netns",
    ])
    .arg(&exe)
    .args([
        test_name,
        "--exact",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, test_name);
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("could not start `unshare` to create a private network namespace: {e}")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Show the child's output as this test's own (libtest captures it unless it fails).
    print!("{stdout}");
    eprint!("{stderr}");
    if !out.status.success() && !stdout.contains("running 1 test") {
        panic!(
            "could not create a private network namespace for this test ({}): {}. Run as root, \
             enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and \
             user.max_user_namespaces > 0), or run the suite inside ../shared/lab",
            out.status,
            stderr.trim()
        );
    }
    assert!(
        out.status.success(),
        "test `{test_name}` failed inside its network namespace ({})",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "the isolated child did not run test `{test_name}` (filter matched nothing?):\n{stdout}"
    );
}

/// Names of the network interfaces this process's namespace has, from `/proc/self/net/dev`
/// (which, unlike `/sys/class/net`, always reflects the caller's own namespace).
pub fn interfaces() -> Vec<String> {
    let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    let mut names: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_string()))
        .collect();
    names.sort();
    names
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(Into::into))
        .map(|dir: std::path::PathBuf| dir.join(name))
        .find(|p| Path::new(p).is_file())
}
