//! `aegis sim make-image`: build an ESP32 app image with aegis-image's builder (for the
//! simulator and for tests), optionally broken on purpose, and write it atomically.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use aegis_image::{Chip, ImageBuilder, SimBehavior};
use sha2::{Digest, Sha256};

use crate::cli::MakeImageArgs;
use crate::exit::{CodedError, Exit};

/// What the image does when a simulated device boots it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Behavior {
    /// Boots and confirms itself.
    Boots,
    /// Crashes before confirming; the bootloader rolls back.
    CrashesAtBoot,
    /// Runs but never confirms.
    NeverConfirms,
}

impl From<Behavior> for SimBehavior {
    fn from(b: Behavior) -> Self {
        match b {
            Behavior::Boots => SimBehavior::Boots,
            Behavior::CrashesAtBoot => SimBehavior::CrashesAtBoot,
            Behavior::NeverConfirms => SimBehavior::NeverConfirms,
        }
    }
}

/// How to break the image.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Corruption {
    /// Wrong XOR checksum byte.
    BadChecksum,
    /// Wrong appended SHA-256 digest.
    BadDigest,
    /// File cut in half.
    Truncated,
    /// Header names a different chip.
    WrongChip,
}

impl From<Corruption> for aegis_image::Corruption {
    fn from(c: Corruption) -> Self {
        match c {
            Corruption::BadChecksum => aegis_image::Corruption::BadChecksum,
            Corruption::BadDigest => aegis_image::Corruption::BadDigest,
            Corruption::Truncated => aegis_image::Corruption::Truncated,
            Corruption::WrongChip => aegis_image::Corruption::WrongChip,
        }
    }
}

pub fn run(args: &MakeImageArgs) -> anyhow::Result<Exit> {
    let bad = |msg: String| CodedError::new(Exit::BadInput, msg);
    let chip: Chip = args
        .chip
        .parse()
        .map_err(|e: aegis_image::UnknownChip| bad(e.to_string()))?;
    let size = parse_size(&args.size).map_err(bad)?;
    let mut builder = ImageBuilder::new(chip)
        .version(&args.version)
        .project(&args.project)
        .secure_version(args.secure_version)
        .size(size)
        .behavior(args.behavior.into());
    if let Some(c) = args.corrupt {
        builder = builder.corrupt(c.into());
    }
    let image = builder.build().map_err(|e| bad(e.to_string()))?;
    write_atomically(&args.output, &image)
        .map_err(|e| bad(format!("cannot write {}: {e}", args.output.display())))?;
    let broken = match args.corrupt {
        Some(c) => format!(", deliberately broken ({})", clap_name(c)),
        None => String::new(),
    };
    println!(
        "wrote {}: {} app \"{}\" version {} ({} bytes, sha256 {}){broken}",
        args.output.display(),
        chip,
        args.project,
        args.version,
        image.len(),
        hex::encode(Sha256::digest(&image)),
    );
    Ok(Exit::Success)
}

fn clap_name(c: Corruption) -> String {
    clap::ValueEnum::to_possible_value(&c)
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// Parse a size: a number of bytes with an optional unit. KiB/MiB/GiB (and the shorthands
/// K/M/G) are powers of 1024, KB/MB/GB powers of 1000; case and a space before the unit do
/// not matter. Decimals are allowed ("1.5MiB") and rounded up to a whole byte.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let err = || {
        format!(
            "invalid size `{s}`: use a number of bytes with an optional unit, e.g. 1500000, 200KiB or 1MiB"
        )
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(err()),
    };
    if num.is_empty() {
        return Err(err());
    }
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or_else(err);
    }
    let f: f64 = num.parse().map_err(|_| err())?;
    let bytes = (f * mult as f64).ceil();
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes as u64)
}

/// Write via a temporary file in the same directory and rename it into place, so a reader
/// never sees half an image and a failure leaves no partial file behind.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the output path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1500000"), Ok(1_500_000));
        assert_eq!(parse_size("200KiB"), Ok(200 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1 mib"), Ok(1 << 20));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("1.5MiB"), Ok(3 << 19));
        for bad in [
            "",
            "MiB",
            "abc",
            "1XB",
            "-1",
            "1..5M",
            "99999999999999999999G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
