//! `aegis keys export`: prints the server's public key in the forms device firmware needs
//! (SEC1 hex, a C array, PEM) with its fingerprint and the TXT `key` value devices announce.
//! Creates the key on first use, exactly as `aegis serve` would.

use aegis_server::keys;

use crate::cli::{KeyFormat, KeysAction, KeysArgs};
use crate::commands::serve::data_dir;
use crate::exit::{CodedError, Exit};

pub fn run(args: &KeysArgs) -> anyhow::Result<Exit> {
    match &args.action {
        KeysAction::Export(export) => {
            let dir = data_dir(export.data_dir.clone())?;
            let key = keys::load_or_create_signing_key(&dir)
                .map_err(|e| CodedError::new(Exit::Failure, e.message))?;
            if key.created {
                eprintln!(
                    "created a new signing key at {} (keep it safe: devices built with it trust only it)",
                    key.path.display()
                );
            }
            let public = key.value.public_key();
            let pem = public
                .to_public_key_pem()
                .map_err(|e| CodedError::new(Exit::Failure, e.to_string()))?;
            let out = match export.format {
                KeyFormat::Hex => format!("{}\n", public.to_hex()),
                KeyFormat::C => public.to_c_array("aegis_server_public_key"),
                KeyFormat::Pem => pem,
                KeyFormat::All => format!(
                    "fingerprint (SHA-256): {}\nkey id (TXT `key`): {}\n\n\
                     public key (65-byte SEC1, hex):\n{}\n\n\
                     C array:\n{}\n\
                     PEM:\n{}",
                    public.fingerprint(),
                    public.key_id(),
                    public.to_hex(),
                    public.to_c_array("aegis_server_public_key"),
                    pem
                ),
            };
            print!("{out}");
            Ok(Exit::Success)
        }
    }
}
