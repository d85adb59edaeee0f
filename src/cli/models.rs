//! `reelay models list|verify`: what models reelay runs, and whether the
//! files on disk are the ones the manifest's sha256 names.

use clap::Subcommand;

use crate::models::{self, Manifest};

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// The manifest's models: task, scale, precisions, licence, file.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Checks every model file against its sha256; fails if any differs.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(which: ModelsCommand) -> anyhow::Result<()> {
    let manifest = Manifest::load_default()?;
    match which {
        ModelsCommand::List { json } => {
            let rows = models::list(&manifest);
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            println!("models in {}", manifest.dir.display());
            for m in rows {
                let precisions: Vec<String> = m.precisions.iter().map(|p| p.to_string()).collect();
                println!(
                    "{:<22} {:<10} x{:<2} {:<10} {:<14} {}",
                    m.name,
                    format!("{:?}", m.task).to_lowercase(),
                    m.scale.map_or("-".into(), |s| s.to_string()),
                    precisions.join(","),
                    m.licence,
                    m.file
                );
            }
            Ok(())
        }
        ModelsCommand::Verify { json } => {
            let rows = models::verify(&manifest);
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in &rows {
                    let status = match &r.status {
                        models::VerifyStatus::Ok => "ok".to_string(),
                        models::VerifyStatus::Missing => "MISSING".to_string(),
                        models::VerifyStatus::Mismatch { actual } => {
                            format!("MISMATCH (sha256 {actual}, manifest says {})", r.expected)
                        }
                        models::VerifyStatus::Unreadable { error } => {
                            format!("UNREADABLE: {error}")
                        }
                    };
                    println!(
                        "{:<22} {:<5} {status}  {}",
                        r.name,
                        r.precision.to_string(),
                        r.path.display()
                    );
                }
            }
            let bad = rows.iter().filter(|r| !r.ok()).count();
            if bad > 0 {
                anyhow::bail!(
                    "{bad} model file(s) failed the sha256 check; restore them with `git checkout -- models/` (never load a file that differs)"
                );
            }
            Ok(())
        }
    }
}
