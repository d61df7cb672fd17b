//! `aegis keys export`: creates the signing key once (mode 0600) and prints it in every form,
//! all describing the same key.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use aegis_protocol::PublicKey;

fn export(dir: &std::path::Path, format: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aegis"))
        .args(["keys", "export", "--data-dir"])
        .arg(dir)
        .args(["--format", format])
        .output()
        .unwrap()
}

#[test]
fn keys_export_prints_one_key_whose_fingerprint_matches() {
    let dir = tempfile::tempdir().unwrap();
    let all = export(dir.path(), "all");
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    let path = dir.path().join("keys/signing.pem");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = String::from_utf8(all.stdout).unwrap();

    let hex_out = export(dir.path(), "hex");
    let hex = String::from_utf8(hex_out.stdout)
        .unwrap()
        .trim()
        .to_string();
    let key = PublicKey::from_hex(&hex).unwrap();
    assert!(
        text.contains(&format!("fingerprint (SHA-256): {}", key.fingerprint())),
        "{text}"
    );
    assert!(
        text.contains(&format!("key id (TXT `key`): {}", key.key_id())),
        "{text}"
    );
    assert!(text.contains(&hex));

    let pem = String::from_utf8(export(dir.path(), "pem").stdout).unwrap();
    assert_eq!(PublicKey::from_public_key_pem(&pem).unwrap().to_hex(), hex);
    let c = String::from_utf8(export(dir.path(), "c").stdout).unwrap();
    assert!(c.contains("[65]") && c.contains("0x04,"), "{c}");

    // A key file others can read is refused, with the fix.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = export(dir.path(), "hex");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("chmod 600"));
}
