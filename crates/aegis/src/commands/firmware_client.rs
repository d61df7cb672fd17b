//! `aegis firmware add FILE [--notes TEXT]`, `aegis firmware list`, `aegis firmware rm SHA`:
//! the server's firmware library from the command line. A file is inspected locally with
//! aegis-image before anything is sent, so a bad file is refused with the validator's reason
//! without an upload.

use std::path::Path;

use aegis_server::firmware::FirmwareEntry;
use reqwest::StatusCode;

use crate::cli::{FirmwareAddArgs, FirmwareListArgs, FirmwareRmArgs};
use crate::client::{self, Client};
use crate::exit::{CodedError, Exit};
use crate::output::{self, Ui};
use crate::render;

pub fn add(args: &FirmwareAddArgs) -> anyhow::Result<Exit> {
    let image = LocalImage::read(&args.file)?;
    let (client, _) = client::connect(&args.server)?;
    let ui = Ui::new(args.json);
    client::runtime()?.block_on(async {
        let (entry, created) = upload(&client, &image, args.notes.as_deref()).await?;
        if ui.json {
            output::print_json(&entry)?;
        } else {
            let what = if created {
                "added"
            } else {
                "already in the library:"
            };
            println!(
                "{what} {} {} for {} ({}), sha256 {}",
                entry.project,
                entry.version,
                entry.chip,
                render::bytes(entry.size),
                entry.sha256
            );
        }
        Ok(Exit::Success)
    })
}

pub fn list(args: &FirmwareListArgs) -> anyhow::Result<Exit> {
    let (client, _) = client::connect(&args.server)?;
    let ui = Ui::new(args.json);
    client::runtime()?.block_on(async {
        let entries: Vec<FirmwareEntry> = client.get("firmware").await?;
        if ui.json {
            output::print_json(&entries)?;
        } else if entries.is_empty() {
            eprintln!("the library is empty: add an image with `aegis firmware add FILE`");
        } else {
            print!("{}", render::firmware(&entries, output::now()));
        }
        Ok(Exit::Success)
    })
}

pub fn rm(args: &FirmwareRmArgs) -> anyhow::Result<Exit> {
    let (client, _) = client::connect(&args.server)?;
    let ui = Ui::new(args.json);
    client::runtime()?.block_on(async {
        let sha = resolve_sha(&client, &args.sha).await?;
        client.delete(&format!("firmware/{sha}")).await?;
        if ui.json {
            output::print_json(&serde_json::json!({ "deleted": sha }))?;
        } else {
            println!("removed {sha} from the library");
        }
        Ok(Exit::Success)
    })
}

/// A firmware file read and checked locally.
#[derive(Debug)]
pub struct LocalImage {
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub filename: Option<String>,
}

impl LocalImage {
    /// Reads `path` and refuses (exit 2, with the validator's reason) anything that is not a
    /// valid OTA app image.
    pub fn read(path: &Path) -> anyhow::Result<LocalImage> {
        let shown = path.display();
        let bad = |msg: String| CodedError::new(Exit::BadInput, msg);
        let bytes = super::inspect::read_firmware(path)?;
        let ins = aegis_image::inspect(&bytes);
        if !ins.valid {
            let reason = ins
                .reason
                .unwrap_or_else(|| "the validator refused it".to_string());
            return Err(bad(format!(
                "{shown} is not a valid OTA app image: {reason}; nothing was uploaded"
            ))
            .into());
        }
        Ok(LocalImage {
            sha256: hex::encode(ins.sha256),
            filename: path.file_name().map(|n| n.to_string_lossy().into_owned()),
            bytes,
        })
    }
}

/// Uploads the image unless the library has it; returns the entry and whether it is new.
pub async fn upload(
    client: &Client,
    image: &LocalImage,
    notes: Option<&str>,
) -> anyhow::Result<(FirmwareEntry, bool)> {
    let (status, entry): (StatusCode, FirmwareEntry) = client
        .post_bytes(
            "firmware",
            &[("filename", image.filename.as_deref()), ("notes", notes)],
            image.bytes.clone(),
        )
        .await?;
    Ok((entry, status == StatusCode::CREATED))
}

/// Whether the library already holds this SHA-256.
pub async fn lookup(client: &Client, sha: &str) -> anyhow::Result<Option<FirmwareEntry>> {
    let entries: Vec<FirmwareEntry> = client.get("firmware").await?;
    Ok(entries.into_iter().find(|e| e.sha256 == sha))
}

/// A full SHA-256, or a unique prefix of one in the library (at least 6 hex digits).
pub async fn resolve_sha(client: &Client, given: &str) -> anyhow::Result<String> {
    let given = given.trim().to_ascii_lowercase();
    let bad = |msg: String| CodedError::new(Exit::BadInput, msg);
    if given.len() < 6 || given.len() > 64 || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "`{given}` is not a firmware SHA-256: give the 64 hex digits, or a unique prefix of \
             at least 6 (see `aegis firmware list`)"
        ))
        .into());
    }
    let entries: Vec<FirmwareEntry> = client.get("firmware").await?;
    let matches: Vec<&FirmwareEntry> = entries
        .iter()
        .filter(|e| e.sha256.starts_with(&given))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.sha256.clone()),
        [] => Err(bad(format!(
            "no firmware in the library has a SHA-256 starting with {given}; see `aegis firmware list`"
        ))
        .into()),
        many => Err(bad(format!(
            "{} images have a SHA-256 starting with {given}; give more digits",
            many.len()
        ))
        .into()),
    }
}
