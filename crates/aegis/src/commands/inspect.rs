//! `aegis firmware inspect FILE [--json]`: read a firmware file, run aegis-image's
//! `inspect()` on it, and print the result for a person or (with `--json`) for a script.
//! Exit 0 for a valid OTA app image, 1 for anything else (reason on stderr in text mode),
//! 2 when the file cannot be read.

use std::fmt::Write as _;
use std::path::Path;

use aegis_image::{Inspection, format_revision};
use serde::Serialize;

use crate::cli::InspectArgs;
use crate::exit::{CodedError, Exit};

/// Largest file we read. ESP32-family flash chips are at most 32 MiB (the header can say up to
/// 128 MB, but no app partition comes near that); twice that leaves room for merged images of
/// the largest parts while refusing to load, say, a disk image by mistake.
pub const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// The JSON document: the inspection plus the path it is about.
#[derive(Serialize)]
struct Report<'a> {
    file: &'a str,
    #[serde(flatten)]
    inspection: &'a Inspection,
}

pub fn run(args: &InspectArgs) -> anyhow::Result<Exit> {
    let bytes = read_firmware(&args.file)?;
    let ins = aegis_image::inspect(&bytes);
    let file = args.file.display().to_string();
    if args.json {
        let report = Report {
            file: &file,
            inspection: &ins,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&file, &ins));
        if let Some(reason) = &ins.reason {
            eprintln!("error: {file} is not a valid OTA app image: {reason}");
        }
    }
    Ok(if ins.valid {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// Read the file, refusing directories and files too large to be firmware, with one sentence
/// per failure.
pub fn read_firmware(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bad = |msg: String| CodedError::new(Exit::BadInput, msg);
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| bad(format!("cannot read {shown}: {}", io_reason(&e))))?;
    if meta.is_dir() {
        return Err(bad(format!("{shown} is a directory, not a firmware file")).into());
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(bad(format!(
            "{shown} is {} bytes, larger than any ESP32 flash (at most 32 MiB); refusing to read \
             files over {} MiB",
            meta.len(),
            MAX_FILE_SIZE >> 20
        ))
        .into());
    }
    std::fs::read(path).map_err(|e| bad(format!("cannot read {shown}: {}", io_reason(&e))).into())
}

/// The OS error without Rust's " (os error 2)" suffix.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// The human-readable report.
fn render(file: &str, ins: &Inspection) -> String {
    let mut o = String::new();
    let yes_no = |v: Option<bool>, absent: &str| match v {
        Some(true) => "valid".to_owned(),
        Some(false) => "INVALID".to_owned(),
        None => absent.to_owned(),
    };
    let _ = writeln!(o, "File:      {file} ({} bytes)", ins.size);
    let _ = writeln!(o, "SHA-256:   {}", hex::encode(ins.sha256));
    let _ = writeln!(o, "Kind:      {}", ins.kind.name());
    match (ins.chip, ins.chip_id) {
        (Some(c), _) => {
            let _ = writeln!(
                o,
                "Chip:      {} ({}, chip id {})",
                c.name(),
                c.display_name(),
                c.id()
            );
        }
        (None, Some(id)) => {
            let _ = writeln!(o, "Chip:      unknown (chip id {id})");
        }
        (None, None) => {}
    }
    if let Some(h) = &ins.header {
        let _ = writeln!(
            o,
            "Header:    {} segments, entry 0x{:08x}, flash {} {} {}",
            h.segment_count,
            h.entry_point,
            h.flash_mode.name(),
            h.flash_size.unwrap_or("size ?"),
            h.flash_freq.unwrap_or("freq ?"),
        );
        if let Some(e) = &h.extended {
            let max = if e.max_chip_rev_full == u16::MAX {
                "no limit".to_owned()
            } else {
                format_revision(e.max_chip_rev_full)
            };
            let _ = writeln!(
                o,
                "Chip rev:  min {}, max {}",
                format_revision(e.min_chip_rev_full),
                max
            );
        }
    }
    if ins.header.is_some() {
        let _ = writeln!(
            o,
            "Checksum:  {}",
            yes_no(ins.checksum_valid, "not reached")
        );
        let _ = writeln!(o, "Digest:    {}", yes_no(ins.digest_valid, "not appended"));
    }
    if !ins.segments.is_empty() {
        let _ = writeln!(o, "Segments:");
        let _ = writeln!(o, "    #  load addr    length      file offset  memory");
        for s in &ins.segments {
            let _ = writeln!(
                o,
                "  {:>3}  0x{:08x}   0x{:08x}  0x{:08x}   {}",
                s.index, s.load_address, s.length, s.file_offset, s.memory
            );
        }
    }
    match &ins.app {
        Some(a) => {
            let _ = writeln!(o, "App descriptor (at 0x{:x}):", a.offset);
            let show = |s: &str| {
                if s.is_empty() {
                    "(empty)".to_owned()
                } else {
                    s.to_owned()
                }
            };
            let _ = writeln!(o, "  project:        {}", show(&a.project));
            let _ = writeln!(o, "  version:        {}", show(&a.version));
            let _ = writeln!(o, "  ESP-IDF:        {}", show(&a.idf_version));
            let _ = writeln!(o, "  compiled:       {} {}", a.date, a.time);
            let _ = writeln!(o, "  secure_version: {}", a.secure_version);
            let _ = writeln!(o, "  ELF SHA-256:    {}", hex::encode(a.elf_sha256));
        }
        None if ins.header.is_some() => {
            let _ = writeln!(o, "App descriptor: none");
        }
        None => {}
    }
    if let Some(s) = &ins.signatures {
        let kinds: Vec<&str> = s.blocks.iter().map(|b| b.kind).collect();
        let _ = writeln!(
            o,
            "Signatures: {} valid Secure Boot v2 block(s) at 0x{:x} ({}), not verified",
            s.count,
            s.offset,
            kinds.join(", ")
        );
    }
    if let Some(b) = ins.sim_behavior {
        let _ = writeln!(o, "Simulator: {b}");
    }
    if !ins.notes.is_empty() {
        let _ = writeln!(o, "Notes:");
        for n in &ins.notes {
            let _ = writeln!(o, "  - {n}");
        }
    }
    let verdict = if ins.valid {
        let chip = ins.chip.map(|c| c.name()).unwrap_or("?");
        match ins.version() {
            Some(v) if !v.is_empty() => format!("valid OTA app image for {chip}, version {v}"),
            _ => format!("valid OTA app image for {chip} (version unknown)"),
        }
    } else {
        format!("NOT a valid OTA app image ({})", ins.kind.name())
    };
    let _ = writeln!(o, "Verdict:   {verdict}");
    o
}
