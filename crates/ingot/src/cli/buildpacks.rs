//! `create-buildpack`, `update-buildpack`, `rename-buildpack` and
//! `delete-buildpack`: managing the admin buildpacks with cf's names and
//! flags (`buildpacks`, the listing, lives in `stacks`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use ingot_client::buildpacks::BuildpackUpdate;
use ingot_client::platform::BuildpackInfo;
use ingot_client::{Client, Progress};

use super::{ui, OrExplain as _, Session};

/// How long an uploaded buildpack may take to become `READY`.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a delete's job may take.
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);

/// Flags of `create-buildpack`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The buildpack's name.
    name: String,
    /// A directory (zipped as it is) or a `.zip` file.
    path: PathBuf,
    /// Its place in detection order, from 1 (1 is asked first).
    #[arg(value_parser = clap::value_parser!(u32).range(1..))]
    position: u32,
    /// Create it disabled: detection skips it until `update-buildpack --enable`.
    #[arg(long)]
    disable: bool,
}

/// Flags of `update-buildpack`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The buildpack's name.
    name: String,
    /// Replace its bits with a directory or a `.zip` file.
    #[arg(short = 'p', long = "path")]
    path: Option<PathBuf>,
    /// Move it to this place in detection order, from 1.
    #[arg(short = 'i', long = "position", value_parser = clap::value_parser!(u32).range(1..))]
    position: Option<u32>,
    /// Let detection use it.
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    /// Make detection skip it.
    #[arg(long)]
    disable: bool,
    /// Forbid changes to its bits.
    #[arg(long, conflicts_with = "unlock")]
    lock: bool,
    /// Allow changes to its bits again.
    #[arg(long)]
    unlock: bool,
    /// Give it a new name.
    #[arg(long, value_name = "NEW_NAME")]
    rename: Option<String>,
}

impl UpdateArgs {
    /// The fields the flags change.
    fn update(&self) -> BuildpackUpdate {
        let flag = |on: bool, off: bool| match (on, off) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        BuildpackUpdate {
            name: self.rename.clone(),
            position: self.position,
            enabled: flag(self.enable, self.disable),
            locked: flag(self.lock, self.unlock),
        }
    }
}

/// Flags of `rename-buildpack`.
#[derive(Args, Debug)]
pub struct RenameArgs {
    /// The buildpack's current name.
    name: String,
    /// Its new name.
    new_name: String,
}

/// Flags of `delete-buildpack`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The buildpack's name.
    name: String,
    /// Do not ask for confirmation.
    #[arg(short = 'f')]
    force: bool,
}

/// A buildpack's bits ready to upload: the zip and the file name it goes as.
struct Bits {
    file_name: String,
    zip: Vec<u8>,
}

/// Reads `path`: a directory is zipped with everything in it (as `NAME.zip`),
/// a `.zip` file is sent as it is.
fn read_bits(path: &Path) -> anyhow::Result<Bits> {
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "buildpack".to_string());
    if path.is_dir() {
        let zip = ingot_client::bits::zip_dir(path)
            .with_context(|| format!("cannot zip the buildpack directory {}", path.display()))?;
        return Ok(Bits {
            file_name: format!("{base}.zip"),
            zip,
        });
    }
    if !path.exists() {
        bail!(
            "{} does not exist: give a buildpack directory or a .zip file",
            path.display()
        );
    }
    if !base.to_ascii_lowercase().ends_with(".zip") {
        bail!(
            "{} is neither a directory nor a .zip file: give a buildpack directory or a .zip file",
            path.display()
        );
    }
    let zip = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Bits {
        file_name: base,
        zip,
    })
}

/// Finds an admin buildpack by name, or says how to see them.
async fn find(client: &Client, name: &str) -> anyhow::Result<BuildpackInfo> {
    client
        .buildpack_named(name)
        .await
        .or_explain(format!("cannot look up buildpack {name}"))?
        .ok_or_else(|| anyhow!("buildpack {name} not found: run `ingot buildpacks` to see them"))
}

/// Uploads `bits` with a progress bar, then waits until the buildpack is
/// `READY`.
async fn upload(
    client: &Client,
    buildpack: &BuildpackInfo,
    bits: Bits,
    user: &str,
) -> anyhow::Result<()> {
    println!(
        "Uploading buildpack {} as {user} ({})...",
        buildpack.name,
        ui::human_bytes(bits.zip.len() as u64)
    );
    let bar = ui::upload_bar(bits.zip.len() as u64);
    let progress: Option<Progress> = bar.clone().map(|b| {
        let p: Progress = Arc::new(move |sent, _total| b.set_position(sent));
        p
    });
    let uploaded = client
        .upload_buildpack_zip(&buildpack.guid, &bits.file_name, bits.zip.into(), progress)
        .await;
    // A finished bar stays on screen, a failed one goes: the error says why.
    if let Some(b) = bar {
        if uploaded.is_ok() {
            b.finish();
        } else {
            b.finish_and_clear();
        }
    }
    uploaded.or_explain(format!("cannot upload buildpack {}", buildpack.name))?;
    println!("Processing uploaded buildpack {}...", buildpack.name);
    client
        .wait_buildpack_ready(&buildpack.guid, READY_TIMEOUT)
        .await
        .or_explain(format!("buildpack {} did not become ready", buildpack.name))?;
    println!("OK");
    Ok(())
}

/// `ingot create-buildpack NAME PATH POSITION [--disable]`.
pub(crate) async fn create(args: CreateArgs) -> anyhow::Result<()> {
    // Read the bits first: a bad path should leave no empty buildpack behind.
    let bits = read_bits(&args.path)?;
    let mut session = Session::open()?;
    let user = session.user();
    println!("Creating buildpack {} as {user}...", args.name);
    let client = session.client();
    let created = client
        .create_admin_buildpack(&args.name, args.position, !args.disable)
        .await
        .or_explain(format!("cannot create buildpack {}", args.name))?;
    println!("OK\n");
    if let Err(err) = upload(client, &created, bits, &user).await {
        // A buildpack without bits would only fail staging and block a retry
        // of this command with "already exists"; take it away again.
        let _ = client.delete_buildpack(&created.guid, DELETE_TIMEOUT).await;
        return Err(err);
    }
    session.keep_tokens();
    Ok(())
}

/// `ingot update-buildpack NAME [-p PATH] [-i POSITION] [--enable|--disable]
/// [--lock|--unlock] [--rename NEW]`.
pub(crate) async fn update(args: UpdateArgs) -> anyhow::Result<()> {
    let update = args.update();
    if update.is_empty() && args.path.is_none() {
        bail!(
            "nothing to change: give -p, -i, --enable, --disable, --lock, --unlock or --rename (see `ingot help update-buildpack`)"
        );
    }
    let bits = args.path.as_deref().map(read_bits).transpose()?;
    let mut session = Session::open()?;
    let user = session.user();
    let client = session.client();
    let mut buildpack = find(client, &args.name).await?;
    // Locking comes after new bits (a locked buildpack refuses them);
    // everything else, unlocking included, before.
    let lock_last = update.locked == Some(true);
    if !update.is_empty() && !lock_last {
        buildpack = patch(client, &buildpack, &update, &user).await?;
    }
    if let Some(bits) = bits {
        upload(client, &buildpack, bits, &user).await?;
    }
    if lock_last {
        patch(client, &buildpack, &update, &user).await?;
    }
    session.keep_tokens();
    Ok(())
}

/// Sends `update`, saying so as cf does.
async fn patch(
    client: &Client,
    buildpack: &BuildpackInfo,
    update: &BuildpackUpdate,
    user: &str,
) -> anyhow::Result<BuildpackInfo> {
    match &update.name {
        Some(new) => println!(
            "Renaming buildpack {} to {new} as {user}...",
            buildpack.name
        ),
        None => println!("Updating buildpack {} as {user}...", buildpack.name),
    }
    let updated = client
        .update_buildpack(&buildpack.guid, update)
        .await
        .or_explain(format!("cannot update buildpack {}", buildpack.name))?;
    println!("OK");
    Ok(updated)
}

/// `ingot rename-buildpack OLD NEW`.
pub(crate) async fn rename(args: RenameArgs) -> anyhow::Result<()> {
    update(UpdateArgs {
        name: args.name,
        path: None,
        position: None,
        enable: false,
        disable: false,
        lock: false,
        unlock: false,
        rename: Some(args.new_name),
    })
    .await
}

/// `ingot delete-buildpack NAME [-f]`.
pub(crate) async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.force && !ui::confirm(&format!("Really delete the buildpack {}?", args.name))? {
        println!("Delete cancelled");
        return Ok(());
    }
    println!("Deleting buildpack {} as {}...", args.name, session.user());
    let client = session.client();
    let found = client
        .buildpack_named(&args.name)
        .await
        .or_explain(format!("cannot look up buildpack {}", args.name))?;
    match found {
        // cf treats deleting what is not there as done.
        None => println!("Buildpack {} does not exist.\nOK", args.name),
        Some(b) => {
            client
                .delete_buildpack(&b.guid, DELETE_TIMEOUT)
                .await
                .or_explain(format!("cannot delete buildpack {}", args.name))?;
            println!("OK");
        }
    }
    session.keep_tokens();
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::super::Action;
    use super::*;

    fn action(argv: &[&str]) -> Result<Action, clap::Error> {
        let mut full = vec!["ingot"];
        full.extend_from_slice(argv);
        match crate::Args::try_parse_from(full)?.command {
            crate::Command::Cli(super::super::Command(a)) => Ok(a),
            _ => panic!("not a CLI command"),
        }
    }

    #[test]
    fn create_takes_name_path_position_and_disable() {
        match action(&["create-buildpack", "my-bp", "./dir", "2", "--disable"]).expect("parses") {
            Action::CreateBuildpack(a) => {
                assert_eq!(a.name, "my-bp");
                assert_eq!(a.path, PathBuf::from("./dir"));
                assert_eq!(a.position, 2);
                assert!(a.disable);
            }
            _ => panic!("not create-buildpack"),
        }
        // cf's positions start at 1, and all three arguments are required.
        assert!(action(&["create-buildpack", "my-bp", "./dir", "0"]).is_err());
        assert!(action(&["create-buildpack", "my-bp", "./dir", "first"]).is_err());
        assert!(action(&["create-buildpack", "my-bp", "./dir"]).is_err());
    }

    #[test]
    fn update_flags_become_the_fields_to_change() {
        let update = |argv: &[&str]| match action(argv).expect("parses") {
            Action::UpdateBuildpack(a) => a,
            _ => panic!("not update-buildpack"),
        };
        let a = update(&["update-buildpack", "bp", "-i", "3", "--disable", "--lock"]);
        assert_eq!(
            a.update(),
            BuildpackUpdate {
                name: None,
                position: Some(3),
                enabled: Some(false),
                locked: Some(true),
            }
        );
        let a = update(&[
            "update-buildpack",
            "bp",
            "--enable",
            "--unlock",
            "--rename",
            "new",
        ]);
        assert_eq!(
            a.update(),
            BuildpackUpdate {
                name: Some("new".into()),
                position: None,
                enabled: Some(true),
                locked: Some(false),
            }
        );
        let a = update(&["update-buildpack", "bp", "-p", "bp.zip"]);
        assert!(a.update().is_empty());
        assert_eq!(a.path, Some(PathBuf::from("bp.zip")));
        // Contradictions are refused before anything is sent.
        assert!(action(&["update-buildpack", "bp", "--enable", "--disable"]).is_err());
        assert!(action(&["update-buildpack", "bp", "--lock", "--unlock"]).is_err());
        assert!(action(&["update-buildpack", "bp", "-i", "0"]).is_err());
    }

    #[test]
    fn rename_and_delete_parse_like_cf() {
        match action(&["rename-buildpack", "old", "new"]).expect("parses") {
            Action::RenameBuildpack(a) => {
                assert_eq!((a.name.as_str(), a.new_name.as_str()), ("old", "new"))
            }
            _ => panic!("not rename-buildpack"),
        }
        match action(&["delete-buildpack", "bp", "-f"]).expect("parses") {
            Action::DeleteBuildpack(a) => assert!(a.force && a.name == "bp"),
            _ => panic!("not delete-buildpack"),
        }
        match action(&["delete-buildpack", "bp"]).expect("parses") {
            Action::DeleteBuildpack(a) => assert!(!a.force),
            _ => panic!("not delete-buildpack"),
        }
    }

    #[test]
    fn bits_come_from_a_directory_or_a_zip_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("my-bp");
        std::fs::create_dir_all(dir.join("bin")).expect("mkdir");
        std::fs::write(dir.join("bin/detect"), "#!/bin/sh\n").expect("write");
        let bits = read_bits(&dir).expect("a directory zips");
        assert_eq!(bits.file_name, "my-bp.zip");
        let archive = zip::ZipArchive::new(std::io::Cursor::new(bits.zip.clone())).expect("a zip");
        assert!(archive.file_names().any(|n| n == "bin/detect"));

        let file = tmp.path().join("given.zip");
        std::fs::write(&file, &bits.zip).expect("write");
        let again = read_bits(&file).expect("a zip is sent as it is");
        assert_eq!(again.file_name, "given.zip");
        assert_eq!(again.zip, bits.zip);

        let text = tmp.path().join("notes.txt");
        std::fs::write(&text, "hi").expect("write");
        let err = read_bits(&text).err().expect("a non-zip file is refused");
        assert!(
            err.to_string().contains("neither a directory nor a .zip"),
            "{err}"
        );
        let err = read_bits(&tmp.path().join("missing"))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
